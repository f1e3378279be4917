/**
 * Sessions (PROTOCOL.md §8, §9): the seed's procedures, request/response correlated by id, chunking,
 * streams with credit, close versus cut, and interruption. Mostly on the in-memory pair; the
 * procedures also run over real loopback TCP through `connect`/`serve`.
 */
import { describe, expect, it } from "@effect/vitest"
import { NodeSocket } from "@effect/platform-node"
import * as Socket from "@effect/platform/Socket"
import { Cause, Chunk, Deferred, Effect, Either, Exit, Fiber, Option, Ref, Stream, Supervisor } from "effect"
import { createHash } from "node:crypto"
import * as Client from "../src/client/Client.js"
import { connectScoped } from "../src/client/Client.js"
import * as NodeCrypto from "../src/crypto/NodeCrypto.js"
import { ConnectionClosed, ProtocolError, UnexpectedPacket } from "../src/errors.js"
import { PLAINTEXT_SUITE, SUITE } from "../src/handshake/Handshake.js"
import type { Session } from "../src/session/Session.js"
import { DEFAULT_CHUNK_SIZE, INITIAL_STREAM_CREDIT } from "../src/session/Session.js"
import * as MemorySocket from "../src/transport/MemorySocket.js"
import { ChunkEndStatus, ChunkFlags, encodeChunkEnd, encodeChunkStart, encodeStreamHead, readStreamId } from "../src/wire/Chunks.js"
import { concatBytes } from "../src/internal/bytes.js"
import { encodeFrame, makeFrameDecoder } from "../src/wire/Frame.js"
import { MessageType } from "../src/wire/Messages.js"
import { Packet } from "../src/wire/Packet.js"
import { PacketType } from "../src/wire/PacketType.js"
import {
  bounded,
  expectSameBytes,
  memorySessions,
  type Mode,
  modes,
  packet,
  randomPayload,
  startServer,
  str
} from "./support/sessions.js"
import { makeTaggingCrypto } from "./support/tagging.js"

const MiB = 1024 * 1024

/** The error an effect failed with (the test fails if it succeeded or died). */
const failure = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<E, never, R> =>
  Effect.flatMap(Effect.exit(effect), (exit) =>
    Exit.isFailure(exit)
      ? Option.match(Cause.failureOption(exit.cause), {
        onNone: () => Effect.dieMessage(`expected a failure, got ${Cause.pretty(exit.cause)}`),
        onSome: Effect.succeed
      })
      : Effect.dieMessage("expected a failure, got a success"))

/** Echo server: answers each request with RESPONSE and the same payload. */
const echo = (session: Session) =>
  session.serve((p) => Effect.succeed(new Packet({ id: p.id, type: PacketType.RESPONSE, payload: p.payload }, true)))

describe("procedures", () => {
  it.scopedLive("send / receive, with and without a filter", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      yield* client.send(packet(1, PacketType.COMMAND, "one"))
      yield* client.send(packet(2, PacketType.EXCHANGE, "two"))
      const first = yield* server.receive()
      expect([first.id, first.type, str(first.payload)]).toEqual([1, PacketType.COMMAND, "one"])
      const second = yield* server.receive({ type: PacketType.EXCHANGE, id: 2 })
      expect([second.id, second.type, str(second.payload)]).toEqual([2, PacketType.EXCHANGE, "two"])
      // And the other way round.
      yield* server.send(packet(9, PacketType.GRANTED, "back"))
      const back = yield* client.receive({ type: PacketType.GRANTED })
      expect([back.id, str(back.payload)]).toEqual([9, "back"])
    }).pipe(bounded("send/receive")))

  it.scopedLive("receive fails with UnexpectedPacket, carrying what was expected and what came", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      yield* client.send(packet(5, PacketType.COMMAND, "x"))
      yield* client.send(packet(6, PacketType.COMMAND, "y"))
      yield* client.send(packet(7, PacketType.COMMAND, "z"))
      const byType = yield* failure(server.receive({ type: PacketType.RESPONSE }))
      expect(byType).toBeInstanceOf(UnexpectedPacket)
      expect(byType).toMatchObject({ expected: { type: PacketType.RESPONSE }, received: { type: PacketType.COMMAND, id: 5 } })
      const byId = yield* failure(server.receive({ type: PacketType.COMMAND, id: 1 }))
      expect(byId).toMatchObject({ expected: { type: PacketType.COMMAND, id: 1 }, received: { type: PacketType.COMMAND, id: 6 } })
      // The packets that did not match were consumed; the next one is still there.
      const next = yield* server.receive()
      expect(next.id).toBe(7)
    }).pipe(bounded("receive filter")))

  it.scopedLive("request with `expect` of another type fails with UnexpectedPacket", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      yield* server.serve((p) => Effect.succeed(packet(p.id, PacketType.ERROR, "nope"))).pipe(Effect.forkScoped)
      const error = yield* failure(client.request(packet(11, PacketType.COMMAND, "hi"), { expect: PacketType.RESPONSE }))
      expect(error).toBeInstanceOf(UnexpectedPacket)
      expect(error).toMatchObject({ expected: { type: PacketType.RESPONSE, id: 11 }, received: { type: PacketType.ERROR, id: 11 } })
      // Without `expect`, any type is accepted.
      const answer = yield* client.request(packet(12, PacketType.COMMAND, "hi"))
      expect([answer.id, answer.type]).toEqual([12, PacketType.ERROR])
    }).pipe(bounded("request expect")))

  it.scopedLive("receiveAndSend answers with the premade packet, under the request's id", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const served = yield* server.receiveAndSend(packet(0, PacketType.RESPONSE, "premade"), { type: PacketType.COMMAND })
        .pipe(Effect.fork)
      const answer = yield* client.request(packet(42, PacketType.COMMAND, "hello"), { expect: PacketType.RESPONSE })
      expect([answer.id, answer.type, str(answer.payload)]).toEqual([42, PacketType.RESPONSE, "premade"])
      const request = yield* Fiber.join(served)
      expect([request.id, str(request.payload)]).toEqual([42, "hello"])
    }).pipe(bounded("receiveAndSend")))

  it.scopedLive("respond runs the handler and replies under the request's id; RemoteError NoReply when it returns undefined", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const seen = yield* Ref.make<Array<string>>([])
      const handler = (p: Packet) =>
        Effect.gen(function*() {
          yield* Ref.update(seen, (xs) => [...xs, str(p.payload)])
          // The handler answers with id 0: the reply still carries the request's id.
          return str(p.payload).startsWith("hello") ? packet(0, PacketType.RESPONSE, "world") : undefined
        })
      const first = yield* server.respond({ type: PacketType.COMMAND }, handler).pipe(Effect.fork)
      const answer = yield* client.request(packet(77, PacketType.COMMAND, "hello"))
      expect([answer.id, answer.type, str(answer.payload)]).toEqual([77, PacketType.RESPONSE, "world"])
      expect((yield* Fiber.join(first)).id).toBe(77)

      // A handler that returns undefined leaves the request unanswered: the requester gets NoReply, not a hang.
      const unanswered = yield* client.request(packet(78, PacketType.COMMAND, "bye")).pipe(Effect.flip, Effect.fork)
      const second = yield* server.respond({ type: PacketType.COMMAND }, handler)
      expect(second.id).toBe(78)
      expect(yield* Fiber.join(unanswered)).toMatchObject({ _tag: "RemoteError", reason: "NoReply" })
      // A one-way packet is not a request: nothing is sent back for it.
      yield* client.send(packet(79, PacketType.COMMAND, "one-way"))
      expect((yield* server.respond({ type: PacketType.COMMAND }, handler)).id).toBe(79)
      // Anything the server sent before this marker has reached the client by the time it is received.
      yield* server.send(packet(1, PacketType.SUCCESS, "marker"))
      expect(str((yield* client.receive()).payload)).toBe("marker")
      expect(yield* Ref.get(seen)).toEqual(["hello", "bye", "one-way"])
    }).pipe(bounded("respond")))

  it.scopedLive("the procedures over real TCP through connect and serve", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({ ...modes.encrypted }, (session) =>
        Effect.gen(function*() {
          const hello = yield* session.receive({ type: PacketType.COMMAND })
          yield* session.send(packet(hello.id, PacketType.SUCCESS, `got ${str(hello.payload)}`))
          yield* session.receiveAndSend(packet(0, PacketType.RESPONSE, "premade"), { type: PacketType.COMMAND })
          yield* session.respond({ type: PacketType.COMMAND }, (p) => Effect.succeed(packet(p.id, PacketType.RESPONSE, `re ${str(p.payload)}`)))
          yield* echo(session)
        }))
      const client = yield* connectScoped({ port, ...modes.encrypted })
      yield* client.send(packet(1, PacketType.COMMAND, "hi"))
      expect(str((yield* client.receive({ type: PacketType.SUCCESS, id: 1 })).payload)).toBe("got hi")
      const a = yield* client.request(packet(2, PacketType.COMMAND, "a"), { expect: PacketType.RESPONSE })
      expect([a.id, str(a.payload)]).toEqual([2, "premade"])
      const b = yield* client.request(packet(3, PacketType.COMMAND, "b"), { expect: PacketType.RESPONSE })
      expect([b.id, str(b.payload)]).toEqual([3, "re b"])
      const many = yield* Effect.forEach(
        Array.from({ length: 100 }, (_, i) => i),
        (i) => client.request(packet(client.nextId(), PacketType.COMMAND, `n${i}`)),
        { concurrency: "unbounded" }
      )
      expect(many.map((p) => str(p.payload))).toEqual(Array.from({ length: 100 }, (_, i) => `n${i}`))
    }).pipe(bounded("procedures over TCP")))
})

describe("serve: handlers that answer at once, and handlers in fibers", () => {
  it.scopedLive("a handler is called once per packet, whether it answers at once, later, by failing, or by throwing", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const calls = new Map<string, number>()
      yield* Effect.forkScoped(server.serve((p) => {
        const what = str(p.payload)
        calls.set(what, (calls.get(what) ?? 0) + 1)
        switch (what) {
          case "now":
            return Effect.succeed(packet(p.id, PacketType.RESPONSE, "now"))
          case "later":
            return Effect.as(Effect.sleep("5 millis"), packet(p.id, PacketType.RESPONSE, "later"))
          case "fail":
            return Effect.fail("refused")
          case "throw":
            throw new Error("thrown while building the effect")
          default:
            return Effect.succeed(undefined)
        }
      }))
      const ask = (what: string) => client.request(packet(client.nextId(), PacketType.COMMAND, what)).pipe(Effect.either)
      const [now, later, fail, thrown, nothing] = yield* Effect.all(["now", "later", "fail", "throw", "nothing"].map(ask), { concurrency: "unbounded" })
      expect(Either.map(now!, (a) => str(a.payload))).toEqual(Either.right("now"))
      expect(Either.map(later!, (a) => str(a.payload))).toEqual(Either.right("later"))
      expect(Either.flip(fail!)).toMatchObject(Either.right({ _tag: "RemoteError", reason: "Failure" }))
      expect(Either.flip(thrown!)).toMatchObject(Either.right({ _tag: "RemoteError", reason: "Defect" }))
      expect(Either.flip(nothing!)).toMatchObject(Either.right({ _tag: "RemoteError", reason: "NoReply" }))
      expect(Object.fromEntries(calls)).toEqual({ now: 1, later: 1, fail: 1, throw: 1, nothing: 1 })
    }))

  it.scopedLive("after an orderly close, serve lets the handlers of one-way packets sent before it finish, then ends normally (PROTOCOL.md §7.1)", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const done: Array<number> = []
      const served = yield* Effect.fork(server.serve((p) =>
        Effect.sleep("30 millis").pipe(Effect.zipRight(Effect.sync(() => done.push(p.id))), Effect.as(undefined))
      ))
      yield* client.send(packet(1, PacketType.COMMAND, "a"))
      yield* client.send(packet(2, PacketType.COMMAND, "b"))
      yield* Effect.sleep("5 millis")
      yield* client.close
      expect(Exit.isSuccess(yield* Fiber.await(served))).toBe(true)
      expect(done).toEqual([1, 2])
    }))

  it.scopedLive("maxConcurrentHandlers bounds the handlers running; the rest wait and start in arrival order", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({
        client: modes.encrypted,
        server: { ...modes.encrypted, maxConcurrentHandlers: 2 }
      })
      const started: Array<number> = []
      let running = 0
      let most = 0
      const gate = yield* Deferred.make<void>()
      yield* Effect.forkScoped(server.serve((p) =>
        Effect.gen(function*() {
          started.push(p.id)
          running++
          most = Math.max(most, running)
          yield* Deferred.await(gate)
          running--
          return packet(p.id, PacketType.RESPONSE, "")
        })
      ))
      const ids = [11, 12, 13, 14, 15, 16]
      const answers = yield* Effect.fork(Effect.forEach(ids, (id) => client.request(packet(id, PacketType.COMMAND, "")), { concurrency: "unbounded" }))
      // Two handlers hold the slots; the other four requests wait in the inbox, unstarted.
      while (started.length < 2) yield* Effect.sleep("1 millis")
      yield* Effect.sleep("20 millis")
      expect(started.length).toBe(2)
      yield* Deferred.succeed(gate, undefined)
      expect((yield* Fiber.join(answers)).map((a) => a.id)).toEqual(ids)
      expect(most).toBe(2)
      expect(started.slice(2)).toEqual([...started.slice(2)].sort((a, b) => a - b))
      expect([...started].sort((a, b) => a - b)).toEqual(ids)
    }))
})

describe("many requests in flight", () => {
  it.scopedLive("1000 concurrent requests on one session, answered in reverse order, each reach their caller", () =>
    Effect.gen(function*() {
      const N = 1000
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      // The server holds every request until all have arrived, then releases them from the last to
      // arrive to the first, each only once the client has its previous answer: a strict reversal.
      const turns = new Map<number, Deferred.Deferred<void>>()
      const arrival: Array<number> = []
      const allArrived = yield* Deferred.make<void>()
      yield* server.serve((p) =>
        Effect.gen(function*() {
          const turn = yield* Deferred.make<void>()
          turns.set(p.id, turn)
          arrival.push(p.id)
          if (arrival.length === N) yield* Deferred.succeed(allArrived, undefined)
          yield* Deferred.await(turn)
          return packet(p.id, PacketType.RESPONSE, `answer to ${p.id}: ${str(p.payload)}`)
        })
      ).pipe(Effect.forkScoped)

      const received = new Map<number, Deferred.Deferred<void>>()
      const order: Array<number> = []
      const ids = Array.from({ length: N }, () => client.nextId())
      expect(new Set(ids).size).toBe(N)
      for (const id of ids) received.set(id, yield* Deferred.make<void>())
      const requests = yield* Effect.forEach(ids, (id) =>
        client.request(packet(id, PacketType.COMMAND, `question ${id}`), { expect: PacketType.RESPONSE }).pipe(
          Effect.tap((answer) =>
            Effect.suspend(() => {
              order.push(answer.id)
              return Deferred.succeed(received.get(id)!, undefined)
            })
          )
        ), { concurrency: "unbounded" }).pipe(Effect.fork)

      yield* Deferred.await(allArrived)
      for (const id of [...arrival].reverse()) {
        yield* Deferred.succeed(turns.get(id)!, undefined)
        yield* Deferred.await(received.get(id)!)
      }
      const answers = yield* Fiber.join(requests)
      answers.forEach((answer, i) => {
        expect(answer.id).toBe(ids[i])
        expect(str(answer.payload)).toBe(`answer to ${ids[i]}: question ${ids[i]}`)
      })
      expect(order).toEqual([...arrival].reverse())
      expect(order).not.toEqual([...order].sort((a, b) => a - b))
    }).pipe(bounded("1000 requests")))
})

describe("interrupting a request", () => {
  it.scopedLive("frees its id, and its late answer is dropped", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const got = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const slow = yield* server.respond({ id: 7 }, (p) =>
        Effect.gen(function*() {
          yield* Deferred.succeed(got, undefined)
          yield* Deferred.await(release)
          return packet(p.id, PacketType.RESPONSE, "late")
        })).pipe(Effect.fork)

      const first = yield* client.request(packet(7, PacketType.COMMAND, "first")).pipe(Effect.fork)
      yield* Deferred.await(got)
      yield* Fiber.interrupt(first)

      // The id is free again: a new request with the same id gets its own answer.
      const answerTwo = server.respond({ id: 7 }, () => Effect.succeed(packet(7, PacketType.RESPONSE, "second")))
      const [second] = yield* Effect.all([client.request(packet(7, PacketType.COMMAND, "second")), answerTwo], {
        concurrency: 2
      })
      expect(str(second.payload)).toBe("second")

      // Now the first request's answer goes out; the client has nobody waiting for it.
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(slow)
      yield* server.send(packet(99, PacketType.SUCCESS, "marker"))
      // The late answer was dispatched before the marker, and dropped: receive sees the marker.
      const next = yield* client.receive()
      expect([next.id, str(next.payload)]).toEqual([99, "marker"])

      // And a later request with the same id gets its own answer, not the late one.
      const [third] = yield* Effect.all([
        client.request(packet(7, PacketType.COMMAND, "third")),
        server.respond({ id: 7 }, () => Effect.succeed(packet(7, PacketType.RESPONSE, "third")))
      ], { concurrency: 2 })
      expect(str(third.payload)).toBe("third")
      yield* server.send(packet(100, PacketType.SUCCESS, "marker 2"))
      expect((yield* client.receive()).id).toBe(100)
    }).pipe(bounded("interrupted request")))

  it.scopedLive("interrupted mid-way through sending a chunked payload, it frees the receiver's buffer", () =>
    Effect.gen(function*() {
      // The receiver allows 2 unfinished chunked messages; 3 requests are interrupted mid-send.
      let written = 0
      const { client, server } = yield* memorySessions({
        client: { ...modes.encrypted, chunkSize: 16 * 1024, highWaterMark: 64 * 1024 },
        server: { ...modes.encrypted, maxIncomingStreams: 2 },
        faults: {
          highWaterMark: 64 * 1024,
          clientToServer: {
            delay: "1 millis",
            tap: (bytes) => {
              written += bytes.length
            }
          }
        }
      })
      yield* echo(server).pipe(Effect.forkScoped)
      for (let i = 0; i < 3; i++) {
        const start = written
        const sending = yield* client.request(new Packet({ id: 100 + i, type: PacketType.COMMAND, payload: randomPayload(4 * MiB) }))
          .pipe(Effect.fork)
        for (let j = 0; j < 2000 && written - start < 256 * 1024; j++) yield* Effect.sleep("1 millis")
        yield* Fiber.interrupt(sending)
      }
      // The receiver dropped the unfinished messages: the session still works both ways.
      const payload = randomPayload(100 * 1024)
      const answer = yield* client.request(new Packet({ id: 1, type: PacketType.COMMAND, payload }))
      expectSameBytes(answer.payload, payload)
      const ended = yield* server.closed.pipe(Effect.timeout("50 millis"), Effect.option)
      expect(Option.isNone(ended), String(Option.getOrUndefined(ended))).toBe(true)
    }).pipe(bounded("interrupted chunked send")))

  it.scopedLive("a request with an id already in flight is the caller's mistake: InvalidArgument, not ProtocolError", () =>
    Effect.gen(function*() {
      const { client } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const first = yield* client.request(packet(5, PacketType.COMMAND)).pipe(Effect.fork)
      yield* Effect.yieldNow()
      const error = yield* failure(client.request(packet(5, PacketType.COMMAND)))
      expect(error).toMatchObject({ _tag: "InvalidArgument", reason: "Packet", field: "packet.id" })
      expect(client.nextId()).not.toBe(5)
      yield* Fiber.interrupt(first)
    }).pipe(bounded("duplicate id")))
})

// ---------------------------------------------------------------------------------------------
// Sizes

const sizes = (chunkSize: number) => [0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 10 * MiB]

describe.each(["encrypted", "plaintext"] as const satisfies ReadonlyArray<Mode>)("sizes, %s", (mode) => {
  it.scopedLive(`payloads of ${sizes(DEFAULT_CHUNK_SIZE).join(", ")} bytes round-trip byte for byte`, () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes[mode], server: modes[mode] })
      expect(client.info.encrypted).toBe(mode === "encrypted")
      yield* echo(server).pipe(Effect.forkScoped)
      for (const size of sizes(DEFAULT_CHUNK_SIZE)) {
        const payload = randomPayload(size)
        // request: PACKET (or chunks) one way, REPLY (or chunks flagged as a reply) the other.
        const answer = yield* client.request(new Packet({ id: client.nextId(), type: PacketType.COMMAND, payload }))
        expect(answer.type).toBe(PacketType.RESPONSE)
        expectSameBytes(answer.payload, payload)
      }
    }).pipe(bounded(`sizes ${mode}`, "40 seconds")))

  it.scopedLive("a small chunk size, both directions, with send and receive", () =>
    Effect.gen(function*() {
      const chunkSize = 1000
      const { client, server } = yield* memorySessions({
        client: { ...modes[mode], chunkSize },
        server: { ...modes[mode], chunkSize },
        faults: { clientToServer: { split: { maxChunk: 4096 } }, serverToClient: { split: { maxChunk: 4096 } } }
      })
      for (const size of [...sizes(chunkSize).slice(0, 5), 300_000]) {
        const payload = randomPayload(size)
        yield* client.send(new Packet({ id: size, type: PacketType.STREAM_DATA, payload }))
        const there = yield* server.receive({ id: size })
        expectSameBytes(there.payload, payload)
        yield* server.send(new Packet({ id: size, type: PacketType.STREAM_DATA, payload }))
        const back = yield* client.receive({ id: size })
        expectSameBytes(back.payload, payload)
      }
    }).pipe(bounded(`small chunks ${mode}`)))
})

describe("large payloads interleave", () => {
  it.scopedLive("5 concurrent 3 MiB requests, their chunks interleaved on the wire", () =>
    Effect.gen(function*() {
      // Plaintext, so that the tap can see which stream each CHUNK_DATA belongs to; a small
      // high-water mark makes each sender yield between chunks.
      const dataFrames: Array<number> = []
      const decoder = makeFrameDecoder(16 * MiB)
      const tap = (bytes: Uint8Array) => {
        decoder.push(bytes, (type, _header, body) => {
          if (type === MessageType.CHUNK_DATA) dataFrames.push(readStreamId(body) ?? -1)
        })
      }
      const options = { ...modes.plaintext, chunkSize: 64 * 1024, highWaterMark: 128 * 1024 }
      const { client, server } = yield* memorySessions({
        client: options,
        server: options,
        faults: { clientToServer: { tap } }
      })
      yield* echo(server).pipe(Effect.forkScoped)
      const payloads = Array.from({ length: 5 }, () => randomPayload(3 * MiB))
      const answers = yield* Effect.forEach(
        payloads,
        (payload) => client.request(new Packet({ id: client.nextId(), type: PacketType.COMMAND, payload })),
        { concurrency: "unbounded" }
      )
      answers.forEach((answer, i) => expectSameBytes(answer.payload, payloads[i]!))
      // Interleaved: some stream's data is followed by another's and then continues.
      const switches = dataFrames.filter((id, i) => i > 0 && id !== dataFrames[i - 1]).length
      expect(new Set(dataFrames).size).toBe(5)
      expect(switches).toBeGreaterThan(4)
    }).pipe(bounded("interleaving")))
})

describe("maxMessageSize", () => {
  /**
   * A plaintext session pair where the test also writes raw frames from the client's socket, behind
   * the session's back: a peer that declares a huge message.
   */
  const declareHuge = (total: number, maxMessageSize?: number) =>
    Effect.gen(function*() {
      const tagging = yield* makeTaggingCrypto
      const { client, server, clientSocket } = yield* memorySessions({
        client: modes.plaintext,
        server: { ...modes.plaintext, ...(maxMessageSize === undefined ? {} : { maxMessageSize }) },
        clientCrypto: tagging.layer
      })
      // Make sure both sessions are established before writing behind their backs.
      yield* client.send(packet(1, PacketType.COMMAND, "before"))
      expect(str((yield* server.receive()).payload)).toBe("before")
      const write = yield* clientSocket.writer
      const before = process.memoryUsage()
      const receiving = yield* server.receive().pipe(Effect.fork)
      // Tagged under the client's keys (PROTOCOL.md §4.4), so that it reaches the session's limit.
      yield* write(tagging.tag(encodeFrame(
        MessageType.CHUNK_START,
        encodeChunkStart({ streamId: 1000, flags: 0, id: 2, type: PacketType.COMMAND, total })
      )))
      const error = yield* failure(Fiber.join(receiving))
      const after = process.memoryUsage()
      const closed = yield* server.closed
      return { error, closed, grew: after.arrayBuffers - before.arrayBuffers, client }
    })

  it.scopedLive("a declared size of 2^40 bytes is refused with MessageTooLarge, before anything is allocated", () =>
    Effect.gen(function*() {
      const { closed, error, grew } = yield* declareHuge(2 ** 40)
      expect(error).toBeInstanceOf(ProtocolError)
      expect(error).toMatchObject({ reason: "MessageTooLarge" })
      expect(closed).toMatchObject({ _tag: "ProtocolError", reason: "MessageTooLarge" })
      expect(grew).toBeLessThan(64 * MiB)
    }).pipe(bounded("2^40")))

  it.scopedLive("a declared size just over the limit is refused, and the allocation never happens", () =>
    Effect.gen(function*() {
      // 768 MiB would show in `arrayBuffers` at once if it were allocated, even untouched.
      const { client, error, grew } = yield* declareHuge(768 * MiB, 512 * MiB)
      expect(error).toMatchObject({ _tag: "ProtocolError", reason: "MessageTooLarge" })
      expect(grew).toBeLessThan(256 * MiB)
      // The peer is told with an alert and its session ends too.
      const peerEnd = yield* client.closed
      expect(peerEnd).toMatchObject({ _tag: "PeerAlert", reason: "LimitExceeded", phase: "Session" })
    }).pipe(bounded("over the limit")))

  it.scopedLive("a sender with a larger limit than the receiver: the receiver refuses the message", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({
        client: { ...modes.encrypted, maxMessageSize: 64 * MiB },
        server: { ...modes.encrypted, maxMessageSize: 1 * MiB }
      })
      const receiving = yield* server.receive().pipe(Effect.fork)
      yield* client.send(new Packet({ id: 1, type: PacketType.COMMAND, payload: new Uint8Array(1 * MiB + 1) })).pipe(Effect.ignore)
      const error = yield* failure(Fiber.join(receiving))
      expect(error).toMatchObject({ _tag: "ProtocolError", reason: "MessageTooLarge" })
    }).pipe(bounded("sender limit")))
})

// ---------------------------------------------------------------------------------------------
// Streams

/** Chunks of 1 B to 96 KiB cut from a deterministic sequence, `total` bytes in all. */
const randomSizedChunks = (total: number, seed: number, onPull?: (bytes: number) => void) => {
  let state = seed >>> 0
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state
  }
  const block = new Uint8Array(128 * 1024)
  for (let i = 0; i < block.length; i++) block[i] = next() >>> 24
  let sent = 0
  return Stream.repeatEffectOption(Effect.suspend(() => {
    if (sent >= total) return Effect.fail(Option.none())
    const size = Math.min(total - sent, 1 + (next() % (96 * 1024)))
    const offset = next() % (block.length - size + 1)
    sent += size
    onPull?.(size)
    return Effect.succeed(block.slice(offset, offset + size))
  }))
}

const hashStream = <E, R>(stream: Stream.Stream<Uint8Array, E, R>) =>
  Stream.runFold(stream, { hash: createHashHex(), bytes: 0 }, (acc, chunk) => {
    acc.hash.update(chunk)
    acc.bytes += chunk.length
    return acc
  }).pipe(Effect.map((acc) => ({ hash: acc.hash.digest("hex"), bytes: acc.bytes })))

const createHashHex = () => createHash("sha256")

describe("streams", () => {
  it.scopedLive("50 MiB in random-sized chunks round-trips, with bounded buffering (encrypted)", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const total = 50 * MiB
      let pulled = 0
      const source = randomSizedChunks(total, 1, (n) => {
        pulled += n
      })
      const expected = yield* hashStream(randomSizedChunks(total, 1))
      const sending = yield* client.sendStream({ id: 5, type: PacketType.STREAM_DATA }, source).pipe(Effect.fork)
      const incoming = yield* server.receiveStream({ type: PacketType.STREAM_DATA })
      expect([incoming.id, incoming.type]).toEqual([5, PacketType.STREAM_DATA])

      // Nobody consumes yet: the sender fills the credit window, then must stop there (holding at
      // most one more chunk of the source). Given extra time, it does not go further.
      for (let i = 0; i < 1000 && pulled < INITIAL_STREAM_CREDIT - 96 * 1024; i++) yield* Effect.sleep("2 millis")
      expect(pulled).toBeGreaterThanOrEqual(INITIAL_STREAM_CREDIT - 96 * 1024)
      yield* Effect.sleep("100 millis")
      expect(pulled).toBeLessThanOrEqual(INITIAL_STREAM_CREDIT + 96 * 1024)

      const got = yield* hashStream(incoming.data)
      yield* Fiber.join(sending)
      expect(got).toEqual(expected)
      expect(got.bytes).toBe(total)
    }).pipe(bounded("50 MiB stream", "40 seconds")))

  it.scopedLive("a slow consumer: the sender never runs more than the credit window ahead", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const total = 8 * MiB
      let pulled = 0
      let consumed = 0
      let maxAhead = 0
      const source = randomSizedChunks(total, 2, (n) => {
        pulled += n
        maxAhead = Math.max(maxAhead, pulled - consumed)
      })
      const sending = yield* client.sendStream({ id: 1, type: PacketType.STREAM_DATA }, source).pipe(Effect.fork)
      const incoming = yield* server.receiveStream()
      yield* incoming.data.pipe(
        Stream.tap((chunk) =>
          Effect.suspend(() => {
            consumed += chunk.length
            // Slow: let everything else run between chunks.
            return Effect.repeatN(Effect.yieldNow(), 20)
          })
        ),
        Stream.runDrain
      )
      yield* Fiber.join(sending)
      expect(consumed).toBe(total)
      // The window, one chunk the sender holds, and the credit granted at half the window.
      expect(maxAhead).toBeLessThanOrEqual(INITIAL_STREAM_CREDIT + 96 * 1024)
    }).pipe(bounded("slow consumer")))

  it.scopedLive("plaintext streams carry a SHA-256 digest that the receiver verifies", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.plaintext, server: modes.plaintext })
      expect(server.info.encrypted).toBe(false)
      const total = 5 * MiB
      const expected = yield* hashStream(randomSizedChunks(total, 3))
      const sending = yield* client.sendStream({ id: 1, type: PacketType.STREAM_DATA }, randomSizedChunks(total, 3)).pipe(Effect.fork)
      const got = yield* hashStream((yield* server.receiveStream()).data)
      yield* Fiber.join(sending)
      expect(got).toEqual(expected)
    }).pipe(bounded("plaintext stream")))

  it.scopedLive("a plaintext stream whose digest does not match what arrived fails with StreamIntegrity", () =>
    Effect.gen(function*() {
      // A peer that sends a wrong digest: its records are tagged correctly (PROTOCOL.md §4.4), so only
      // the end-to-end digest of §9.2 can catch it.
      const tagging = yield* makeTaggingCrypto
      const { client, clientSocket, server } = yield* memorySessions({
        client: modes.plaintext,
        server: modes.plaintext,
        clientCrypto: tagging.layer
      })
      yield* client.send(packet(1, PacketType.COMMAND, "before"))
      expect(str((yield* server.receive()).payload)).toBe("before")
      const write = yield* clientSocket.writer
      const payload = new Uint8Array(1000).fill(0xaa)
      const wrongDigest = createHash("sha256").update(payload).update("x").digest()
      for (
        const frame of [
          encodeFrame(MessageType.CHUNK_START, encodeChunkStart({ streamId: 1000, flags: ChunkFlags.STREAM, id: 2, type: PacketType.STREAM_DATA, total: 0 })),
          encodeFrame(MessageType.CHUNK_DATA, concatBytes([encodeStreamHead(1000), payload])),
          encodeFrame(MessageType.CHUNK_END, encodeChunkEnd(1000, ChunkEndStatus.OK, wrongDigest))
        ]
      ) yield* write(tagging.tag(frame))
      const incoming = yield* server.receiveStream()
      const error = yield* failure(Stream.runDrain(incoming.data))
      expect(error).toMatchObject({ _tag: "ProtocolError", reason: "StreamIntegrity" })
    }).pipe(bounded("wrong digest")))

  it.scopedLive("a plaintext stream altered on the wire fails its record tag with DecryptFailed (PROTOCOL.md §4.4)", () =>
    Effect.gen(function*() {
      let armed = false
      let flipped = false
      const transform = (bytes: Uint8Array) => {
        // Flip one byte in the middle of the first big write after the handshake: stream data.
        if (armed && !flipped) {
          // Inside a run of stream bytes (0xaa), far from any frame header.
          for (let i = 1024; i < bytes.length - 1024 && !flipped; i += 512) {
            if (bytes.subarray(i - 64, i + 64).every((b) => b === 0xaa)) {
              bytes[i] = 0x55
              flipped = true
            }
          }
        }
        return bytes
      }
      const { client, server } = yield* memorySessions({
        client: modes.plaintext,
        server: modes.plaintext,
        faults: { clientToServer: { transform } }
      })
      armed = true
      const data = Stream.make(new Uint8Array(200 * 1024).fill(0xaa), new Uint8Array(200 * 1024).fill(0xaa))
      yield* client.sendStream({ id: 1, type: PacketType.STREAM_DATA }, data).pipe(Effect.ignore, Effect.forkScoped)
      const incoming = yield* server.receiveStream()
      const error = yield* failure(Stream.runDrain(incoming.data))
      expect(flipped).toBe(true)
      expect(error).toMatchObject({ _tag: "ProtocolError", reason: "DecryptFailed" })
      expect(yield* server.closed).toMatchObject({ _tag: "ProtocolError", reason: "DecryptFailed" })
    }).pipe(bounded("tampered stream")))

  it.scopedLive("a sender stream that fails mid-way gives the receiver a typed error", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const data = Stream.concat(randomSizedChunks(3 * MiB, 4), Stream.fail("source broke" as const))
      const sending = yield* client.sendStream({ id: 1, type: PacketType.STREAM_DATA }, data).pipe(Effect.fork)
      const incoming = yield* server.receiveStream()
      const error = yield* failure(Stream.runDrain(incoming.data))
      expect(error).toBeInstanceOf(ProtocolError)
      expect(error).toMatchObject({ reason: "StreamIntegrity" })
      expect(yield* failure(Fiber.join(sending))).toBe("source broke")
      // The session survives a failed stream.
      yield* client.send(packet(2, PacketType.COMMAND, "still here"))
      expect(str((yield* server.receive()).payload)).toBe("still here")
    }).pipe(bounded("aborted stream")))

  it.scopedLive("a plain packet is received as a one-chunk stream, and a stream by receive as one packet", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      yield* client.send(packet(3, PacketType.COMMAND, "small"))
      const asStream = yield* server.receiveStream({ id: 3 })
      const chunks = yield* Stream.runCollect(asStream.data)
      expect(Chunk.toReadonlyArray(chunks).map(str)).toEqual(["small"])
      const payload = randomPayload(3 * MiB)
      yield* client.sendStream({ id: 4, type: PacketType.STREAM_DATA }, Stream.make(payload)).pipe(Effect.forkScoped)
      const whole = yield* server.receive({ id: 4, type: PacketType.STREAM_DATA })
      expectSameBytes(whole.payload, payload)
    }).pipe(bounded("stream/packet")))
})

// ---------------------------------------------------------------------------------------------
// Info, close and cut

describe("session info", () => {
  it.scopedLive("encrypted with a password", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({
        client: { ...modes.encrypted, peer: "server:1" },
        server: { ...modes.encrypted, peer: "client:2" }
      })
      expect(client.info).toMatchObject({ encrypted: true, passwordAuthenticated: true, suite: SUITE, localPolicy: "required" })
      expect(server.info).toMatchObject({ encrypted: true, passwordAuthenticated: true, suite: SUITE })
      expect(client.info.peer).toEqual(Option.some("server:1"))
      expect(server.info.peer).toEqual(Option.some("client:2"))
    }).pipe(bounded("info")))

  it.scopedLive("plaintext without a password, no peer known", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: { encryption: "preferred" }, server: { encryption: "disabled" } })
      expect(client.info).toMatchObject({ encrypted: false, passwordAuthenticated: false, suite: PLAINTEXT_SUITE, peerPolicy: "disabled" })
      expect(server.info).toMatchObject({ encrypted: false, passwordAuthenticated: false, suite: PLAINTEXT_SUITE, peerPolicy: "preferred" })
      expect(Option.isNone(client.info.peer)).toBe(true)
    }).pipe(bounded("plaintext info")))

  it.scopedLive("over TCP, both sides know the peer's address", () =>
    Effect.gen(function*() {
      const serverPeer = yield* Deferred.make<Option.Option<string>>()
      const { port } = yield* startServer(modes.encrypted, (session) =>
        Effect.zipRight(Deferred.succeed(serverPeer, session.info.peer), echo(session)))
      const client = yield* connectScoped({ port, ...modes.encrypted })
      expect(client.info).toMatchObject({ encrypted: true, passwordAuthenticated: true, suite: SUITE })
      expect(client.info.peer).toEqual(Option.some(`127.0.0.1:${port}`))
      const peer = yield* Deferred.await(serverPeer)
      expect(Option.getOrElse(peer, () => "")).toMatch(/^(::ffff:)?127\.0\.0\.1:\d+$/)
    }).pipe(bounded("TCP info")))
})

describe("close and cut", () => {
  it.scopedLive("after close, the peer's `closed` is ConnectionClosed(Closed), and so is ours", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const pending = yield* server.receive().pipe(Effect.fork)
      yield* client.close
      yield* client.close // idempotent
      const peerEnd = yield* server.closed
      expect(peerEnd).toBeInstanceOf(ConnectionClosed)
      expect(peerEnd).toMatchObject({ reason: "Closed" })
      expect(yield* client.closed).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
      // Whatever was waiting learns it too, and later calls fail at once.
      expect(yield* failure(Fiber.join(pending))).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
      expect(yield* failure(server.send(packet(1, PacketType.COMMAND)))).toMatchObject({ _tag: "ConnectionClosed" })
      expect(yield* failure(client.request(packet(1, PacketType.COMMAND)))).toMatchObject({ _tag: "ConnectionClosed" })
    }).pipe(bounded("close")))

  it.scopedLive("a cut connection is told apart from a closed one", () =>
    Effect.gen(function*() {
      const { client, clientSocket, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const pending = yield* client.request(packet(1, PacketType.COMMAND)).pipe(Effect.fork)
      yield* server.receive()
      yield* MemorySocket.cut(clientSocket)
      const isCut = (error: unknown) =>
        (error instanceof ConnectionClosed && error.reason === "Cut") ||
        (typeof error === "object" && error !== null && "_tag" in error && error._tag === "SocketError")
      const serverEnd = yield* server.closed
      const clientEnd = yield* client.closed
      expect(isCut(serverEnd), String(serverEnd)).toBe(true)
      expect(isCut(clientEnd), String(clientEnd)).toBe(true)
      expect(isCut(yield* failure(Fiber.join(pending)))).toBe(true)
    }).pipe(bounded("cut")))

  it.scopedLive("over TCP: close gives the server Closed", () =>
    Effect.gen(function*() {
      const ends = yield* Deferred.make<unknown>()
      const { port } = yield* startServer(modes.encrypted, (session) =>
        Effect.flatMap(session.closed, (end) => Deferred.succeed(ends, end)))
      const client = yield* connectScoped({ port, ...modes.encrypted })
      yield* client.close
      expect(yield* Deferred.await(ends)).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
    }).pipe(bounded("TCP close")))

  it.scopedLive("over TCP: a client socket destroyed without CLOSE gives the server Cut (or a SocketError)", () =>
    Effect.gen(function*() {
      const ends = yield* Deferred.make<unknown>()
      const { port } = yield* startServer(modes.encrypted, (session) =>
        Effect.flatMap(session.closed, (end) => Deferred.succeed(ends, end)))
      const socket = yield* NodeSocket.makeNet({ host: "127.0.0.1", port })
      const client = yield* Client.session(modes.encrypted).pipe(
        Effect.provideService(Socket.Socket, socket),
        Effect.provide(NodeCrypto.layer)
      )
      expect(client.info.encrypted).toBe(true)
      const write = yield* socket.writer
      // NodeSocket destroys the connection for a close event: no CLOSE message goes out.
      yield* write(new Socket.CloseEvent(4000, "gone"))
      const end = yield* Deferred.await(ends)
      const cut = (end instanceof ConnectionClosed && end.reason === "Cut") || Socket.isSocketError(end)
      expect(cut, String(end)).toBe(true)
    }).pipe(bounded("TCP cut")))
})

// ---------------------------------------------------------------------------------------------
// Interruption leaves nothing behind

/**
 * Runs `body` in its own scope under a supervisor that tracks every fiber it starts; once the scope
 * has closed, none may still be alive.
 */
const leavesNoFibers = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const supervisor = yield* Supervisor.track
    const result = yield* Effect.scoped(body).pipe(Effect.supervised(supervisor))
    // Fibers finishing their last step after the scope closed get a few turns to do so.
    let alive = (yield* supervisor.value)
    for (let i = 0; i < 100 && alive.length > 0; i++) {
      yield* Effect.sleep("10 millis")
      alive = (yield* supervisor.value)
    }
    expect(alive.map((fiber) => fiber.id().id)).toEqual([])
    return result
  })

describe("interruption leaves no fibers behind", () => {
  it.live("an interrupted request: the session still works, closes, and no fiber outlives it", () =>
    leavesNoFibers(Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const served = yield* server.serve((p) =>
        str(p.payload) === "hang" ? Effect.never : Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload))
      ).pipe(Effect.fork)
      const hanging = yield* client.request(packet(1, PacketType.COMMAND, "hang")).pipe(Effect.fork)
      // A timeout is an interruption too.
      const timedOut = yield* client.request(packet(2, PacketType.COMMAND, "hang")).pipe(Effect.timeout("20 millis"), Effect.either)
      expect(Either.isLeft(timedOut)).toBe(true)
      yield* Fiber.interrupt(hanging)
      const answer = yield* client.request(packet(1, PacketType.COMMAND, "ok"))
      expect(str(answer.payload)).toBe("ok")
      yield* client.close
      // The peer's serve ends normally on the orderly close, although a handler was still hanging.
      yield* Fiber.join(served)
    })).pipe(bounded("request interruption")))

  it.live("an interrupted respond (waiting, or in its handler) swallows nothing and leaves nothing", () =>
    leavesNoFibers(Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      // Interrupted while waiting for a packet: the next packet goes to the next receive.
      const waiting = yield* server.respond({}, (p) => Effect.succeed(p)).pipe(Effect.fork)
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiting)
      yield* client.send(packet(1, PacketType.COMMAND, "after"))
      expect(str((yield* server.receive()).payload)).toBe("after")

      // Interrupted in its handler: no reply is sent; the session goes on.
      const inHandler = yield* Deferred.make<void>()
      const stuck = yield* server.respond({}, () => Effect.zipRight(Deferred.succeed(inHandler, undefined), Effect.never))
        .pipe(Effect.fork)
      const unanswered = yield* client.request(packet(2, PacketType.COMMAND)).pipe(Effect.fork)
      yield* Deferred.await(inHandler)
      yield* Fiber.interrupt(stuck)
      yield* Fiber.interrupt(unanswered)
      const [answer] = yield* Effect.all([
        client.request(packet(3, PacketType.COMMAND, "next")),
        server.respond({}, (p) => Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload)))
      ], { concurrency: 2 })
      expect(str(answer.payload)).toBe("next")
      yield* server.close
      expect(yield* client.closed).toMatchObject({ reason: "Closed" })
    })).pipe(bounded("respond interruption")))

  it.live("an interrupted serve stops its handlers; the session still works and closes", () =>
    leavesNoFibers(Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const handlerInterrupted = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const serving = yield* server.serve((p) =>
        str(p.payload) === "hang"
          ? Effect.zipRight(Deferred.succeed(started, undefined), Effect.never).pipe(
            Effect.onInterrupt(() => Deferred.succeed(handlerInterrupted, undefined))
          )
          : Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload))
      ).pipe(Effect.fork)
      expect(str((yield* client.request(packet(1, PacketType.COMMAND, "a"))).payload)).toBe("a")
      const hanging = yield* client.request(packet(2, PacketType.COMMAND, "hang")).pipe(Effect.fork)
      yield* Deferred.await(started)
      yield* Fiber.interrupt(serving)
      yield* Deferred.await(handlerInterrupted)
      yield* Fiber.interrupt(hanging)
      // Nobody serves now: the next packet waits for whoever receives next.
      yield* client.send(packet(3, PacketType.COMMAND, "later"))
      expect(str((yield* server.receive()).payload)).toBe("later")
      yield* client.close
      expect(yield* server.closed).toMatchObject({ reason: "Closed" })
    })).pipe(bounded("serve interruption")))
})

describe("orderly close (PROTOCOL.md §7.1)", () => {
  for (const mode of ["encrypted", "plaintext"] as const) {
    it.scopedLive(`${mode}: packets sent right before CLOSE are all received, then ConnectionClosed`, () =>
      Effect.gen(function*() {
        const { client, server } = yield* memorySessions({ client: modes[mode], server: modes[mode] })
        for (let id = 1; id <= 5; id++) yield* client.send(packet(id, PacketType.COMMAND, `last words ${id}`))
        yield* client.close
        // The CLOSE may well arrive in the same read as the packets: none of them is lost.
        yield* server.closed
        const got: Array<string> = []
        for (let i = 0; i < 5; i++) got.push(str((yield* server.receive()).payload))
        expect(got).toEqual([1, 2, 3, 4, 5].map((id) => `last words ${id}`))
        expect(yield* Effect.flip(server.receive())).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
      }).pipe(bounded("last words")))
  }
})
