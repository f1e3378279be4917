/**
 * The resource model of PROTOCOL.md §10 after the handshake: what a session holds for its peer is
 * counted in bytes and bounded per connection and per server, reassembly grows with the data that
 * arrived, stream credit is counted against what was granted, and the time budgets end sessions
 * whose peer went silent or stopped reading. Also the session-level rules PROTOCOL.md §7 and §9
 * settle (CLOSE with a body, a stream with a total, digests in the wrong mode, a plaintext frame in
 * an encrypted session).
 *
 * Each case runs over the in-memory pair and over real loopback TCP. Misbehaving peers are built by
 * adding raw frames (from the wire codecs) to a real client's byte stream.
 */
import type * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, Option, Stream } from "effect"
import type { Scope } from "effect"
import * as Net from "node:net"
import { ClientSession, PacketType, type Session, type SessionError } from "../src/index.js"
import { ChunkEndStatus, ChunkFlags, encodeChunkEnd, encodeChunkStart, encodeStreamHead } from "../src/wire/Chunks.js"
import { encodeFrame } from "../src/wire/Frame.js"
import { AlertCode, MessageType } from "../src/wire/Messages.js"
import { encodePacket } from "../src/wire/Packet.js"
import { netTcp, type Options, runPair, succeeded, type Transport, transports } from "./support/pair.js"
import { bounded, modes, packet, randomPayload, startServer } from "./support/sessions.js"
import { makeTaggingCrypto } from "./support/tagging.js"
import { failOnUnhandledRejections } from "./support/unhandled.js"

failOnUnhandledRejections()

const KiB = 1024
const MiB = 1024 * KiB

/** A client socket to whose outgoing byte stream the test adds raw bytes, in order with the library's. */
const injecting = (transport: Transport) =>
  Effect.gen(function*() {
    const sockets = yield* transport
    let write: ((chunk: Uint8Array) => Effect.Effect<void, Socket.SocketError>) | undefined
    const client: Socket.Socket = {
      ...sockets.client,
      writer: Effect.map(sockets.client.writer, (w) => {
        write = w
        return w
      })
    }
    const inject = (...frames: ReadonlyArray<Uint8Array>) =>
      Effect.suspend(() => (write === undefined ? Effect.dieMessage("no writer yet") : Effect.forEach(frames, write, { discard: true })))
    return { transport: Effect.succeed({ ...sockets, client }), inject }
  })

/**
 * A connected pair whose client can also inject frames. In plaintext mode they are given valid tags
 * under the client's keys (PROTOCOL.md §4.4), so that they reach the server's session rules; in
 * encrypted mode they go as written.
 */
const sessions = (transport: Transport, client: Options, server: Options) =>
  Effect.gen(function*() {
    const { inject, transport: wrapped } = yield* injecting(transport)
    const tagging = yield* makeTaggingCrypto
    const plaintext = client.encryption === "disabled"
    const outcome = yield* runPair(wrapped, client, server, plaintext ? { client: tagging.layer } : {})
    const injectFrames = (...frames: ReadonlyArray<Uint8Array>) =>
      Effect.suspend(() => inject(...(plaintext ? frames.map(tagging.tag) : frames)))
    return { client: succeeded(outcome.client, "client"), server: succeeded(outcome.server, "server"), inject: injectFrames }
  })

/** How a session ended, as `tag/reason`. */
const endOf = (session: Session) =>
  Effect.map(session.closed, (error: SessionError) => `${error._tag}/${"reason" in error ? String(error.reason) : ""}`)

const chunkStart = (streamId: number, flags: number, total: number) =>
  encodeFrame(MessageType.CHUNK_START, encodeChunkStart({ streamId, flags, id: 1, type: PacketType.COMMAND, total }))
const chunkData = (streamId: number, data: Uint8Array) =>
  encodeFrame(MessageType.CHUNK_DATA, new Uint8Array([...encodeStreamHead(streamId), ...data]))
const chunkEnd = (streamId: number, status: number, digest?: Uint8Array) =>
  encodeFrame(MessageType.CHUNK_END, encodeChunkEnd(streamId, status, digest))

describe("byte budgets (tcp, the raw net.Socket transport of connect and serve)", () => {
  const netPair = (server: Options) =>
    Effect.map(runPair(netTcp, modes.encrypted, server), (outcome) => ({
      client: succeeded(outcome.client, "client"),
      server: succeeded(outcome.server, "server")
    }))
  const sendAll = (session: Session, count: number, size: number) =>
    Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => session.send(packet(i, PacketType.COMMAND, randomPayload(size))), {
      discard: true
    })

  it.scopedLive("packets a handler never takes stop at maxBufferedBytes: LimitExceeded here, the alert there", () =>
    Effect.gen(function*() {
      // Read pacing slows the peer once 1 MiB waits; the budget still ends a session that never takes.
      const { client, server } = yield* netPair({ ...modes.encrypted, maxBufferedBytes: 2 * MiB })
      yield* Effect.fork(server.receive())
      yield* Effect.ignore(sendAll(client, 32, 256 * KiB))
      expect(yield* endOf(server)).toBe("ProtocolError/LimitExceeded")
      expect(yield* endOf(client)).toBe("PeerAlert/LimitExceeded")
    }).pipe(bounded("maxBufferedBytes")))

  it.scopedLive("read pacing: a sender faster than the application is slowed, not cut off; 16 MiB pass a 4 MiB budget in order", () =>
    Effect.gen(function*() {
      const { client, server } = yield* netPair({ ...modes.encrypted, maxBufferedBytes: 4 * MiB })
      const sending = yield* Effect.fork(sendAll(client, 64, 256 * KiB))
      // Unpaced, the sender would have put all 16 MiB in the inbox within this pause.
      yield* Effect.sleep("500 millis")
      const ids: Array<number> = []
      for (let i = 0; i < 64; i++) ids.push((yield* server.receive()).id)
      yield* Fiber.join(sending)
      expect(ids).toEqual(Array.from({ length: 64 }, (_, i) => i))
      expect(Option.isNone(yield* Effect.option(Effect.timeout(server.closed, "10 millis")))).toBe(true)
    }).pipe(bounded("paced sender")))

  it.scopedLive("read pacing never stops reading: a reply arrives behind packets the application has not taken", () =>
    Effect.gen(function*() {
      const { client, server } = yield* netPair(modes.encrypted)
      // 1.5 MiB that the server does not take: reading is paced from the first MiB on.
      yield* sendAll(client, 6, 256 * KiB)
      yield* Effect.fork(client.serve((p) => Effect.succeed(p)))
      const answer = yield* server.request(packet(99, PacketType.COMMAND, "behind the rest"))
      expect(answer.id).toBe(99)
      for (let i = 0; i < 6; i++) expect((yield* server.receive()).id).toBe(i)
    }).pipe(bounded("reply behind untaken packets")))
})

for (const [name, transport] of transports) {
  describe(`byte budgets (${name})`, () => {
    it.scopedLive("packets a handler never takes stop at maxBufferedBytes: LimitExceeded here, the alert there", () =>
      Effect.gen(function*() {
        const { client, server } = yield* sessions(transport(), modes.encrypted, { ...modes.encrypted, maxBufferedBytes: 4 * MiB })
        // The server takes one packet and then nothing.
        yield* Effect.fork(server.receive())
        yield* Effect.ignore(
          Effect.forEach(Array.from({ length: 32 }, (_, i) => i), (i) => client.send(packet(i, PacketType.COMMAND, randomPayload(256 * KiB))), {
            discard: true
          })
        )
        expect(yield* endOf(server)).toBe("ProtocolError/LimitExceeded")
        expect(yield* endOf(client)).toBe("PeerAlert/LimitExceeded")
      }).pipe(bounded("maxBufferedBytes")))

    it.scopedLive("a declared 64 MiB message allocates only what arrives: 1 MiB then abort is fine, 3 MiB is over the budget", () =>
      Effect.gen(function*() {
        const { client, inject, server } = yield* sessions(transport(), modes.plaintext, { ...modes.plaintext, maxBufferedBytes: 2 * MiB })
        yield* inject(chunkStart(1, 0, 64 * MiB), chunkData(1, randomPayload(MiB)), chunkEnd(1, ChunkEndStatus.ABORTED))
        // The session is still up: a request goes through.
        const serving = yield* Effect.fork(server.serve((p) => Effect.succeed(p)))
        const answer = yield* client.request(packet(7, PacketType.COMMAND, "still here"))
        expect(answer.id).toBe(7)
        yield* inject(chunkStart(3, 0, 64 * MiB), chunkData(3, randomPayload(MiB)), chunkData(3, randomPayload(MiB)), chunkData(3, randomPayload(MiB)))
        expect(yield* endOf(server)).toBe("ProtocolError/LimitExceeded")
        yield* Fiber.interrupt(serving)
      }).pipe(bounded("reassembly budget")))

    it.scopedLive("an endless stream into serve ends at maxMessageSize with MessageTooLarge; the sender hears LimitExceeded", () =>
      Effect.gen(function*() {
        const { client, server } = yield* sessions(transport(), modes.encrypted, { ...modes.encrypted, maxMessageSize: 2 * MiB })
        const serving = yield* Effect.fork(Effect.exit(server.serve((p) => Effect.succeed(p))))
        const endless = Stream.repeatValue(randomPayload(64 * KiB))
        const sent = yield* Effect.exit(client.sendStream({ id: 1, type: PacketType.COMMAND }, endless))
        expect(Exit.isFailure(sent)).toBe(true)
        const served = yield* Fiber.join(serving)
        expect(Exit.isFailure(served) && Exit.causeOption(served).pipe(Option.map(String), Option.getOrElse(() => ""))).toContain(
          "MessageTooLarge"
        )
        expect(yield* endOf(client)).toBe("PeerAlert/LimitExceeded")
      }).pipe(bounded("endless stream")))

    it.scopedLive("stream credit is counted against what was granted, not what was consumed (PROTOCOL.md §9.3)", () =>
      Effect.gen(function*() {
        const { inject, server } = yield* sessions(transport(), modes.plaintext, modes.plaintext)
        // 1 MiB, the initial credit, in 100 KiB pieces (and the rest).
        const pieces = [...Array.from({ length: 10 }, () => randomPayload(100 * KiB)), randomPayload(24 * KiB)]
        yield* inject(chunkStart(5, ChunkFlags.STREAM, 0), ...pieces.map((p) => chunkData(5, p)))
        const incoming = yield* server.receiveStream()
        // Consuming 400 KiB returns no credit yet (credit goes back per 512 KiB consumed) …
        const taken = yield* Stream.runCollect(Stream.take(incoming.data, 4))
        expect(Chunk.reduce(taken, 0, (n, c) => n + c.length)).toBe(400 * KiB)
        // … so one byte past the granted megabyte is over the credit, however much was consumed.
        yield* inject(chunkData(5, new Uint8Array(1)))
        expect(yield* endOf(server)).toBe("ProtocolError/LimitExceeded")
      }).pipe(bounded("stream credit")))

    it.scopedLive("a frame over maxFrameSize after the handshake is alerted: the sender hears LimitExceeded (PROTOCOL.md §2.1)", () =>
      Effect.gen(function*() {
        const { client, server } = yield* sessions(transport(), modes.encrypted, { ...modes.encrypted, maxFrameSize: 4 * KiB })
        yield* client.send(packet(1, PacketType.COMMAND, randomPayload(8 * KiB)))
        expect(yield* endOf(server)).toBe("ProtocolError/FrameTooLarge")
        expect(yield* endOf(client)).toBe("PeerAlert/LimitExceeded")
      }).pipe(bounded("frame too large")))
  })

  describe(`session rules of PROTOCOL.md §7 and §9 (${name})`, () => {
    const cases: ReadonlyArray<readonly [string, ReadonlyArray<Uint8Array>]> = [
      ["a CLOSE with a body", [encodeFrame(MessageType.CLOSE, Uint8Array.of(1))]],
      ["a stream that declares a total", [chunkStart(2, ChunkFlags.STREAM, 10)]],
      ["a plaintext CHUNK_END without its digest", [chunkStart(2, 0, 300 * KiB), chunkData(2, randomPayload(300 * KiB)), chunkEnd(2, ChunkEndStatus.OK)]],
      ["an aborted CHUNK_END with a digest", [chunkStart(2, 0, 300 * KiB), chunkEnd(2, ChunkEndStatus.ABORTED, new Uint8Array(32))]],
      ["a CHUNK_END with an unknown status", [chunkStart(2, 0, 300 * KiB), chunkEnd(2, 7)]]
    ]
    for (const [what, frames] of cases) {
      it.scopedLive(`${what} is Malformed, and the sender hears so`, () =>
        Effect.gen(function*() {
          const { client, inject, server } = yield* sessions(transport(), modes.plaintext, modes.plaintext)
          yield* inject(...frames)
          expect(yield* endOf(server)).toBe("ProtocolError/Malformed")
          expect(yield* endOf(client)).toBe("PeerAlert/Malformed")
        }).pipe(bounded(what)))
    }

    it.scopedLive("a SERVER_UNPROVEN alert after the server's session started is UnexpectedMessage (PROTOCOL.md §6, version 4); no alert answers it", () =>
      Effect.gen(function*() {
        const { client, inject, server } = yield* sessions(transport(), modes.plaintext, modes.plaintext)
        yield* inject(encodeFrame(MessageType.ALERT, Uint8Array.of(AlertCode.SERVER_UNPROVEN)))
        expect(yield* endOf(server)).toBe("ProtocolError/UnexpectedMessage")
        // The server answers nothing: the client sees its transport end, not an alert.
        expect(yield* endOf(client)).toMatch(/^(ConnectionClosed\/Cut|SocketError\/.*)$/)
      }).pipe(bounded("late SERVER_UNPROVEN")))

    it.scopedLive("a plaintext frame inside an encrypted session fails to open: DecryptFailed", () =>
      Effect.gen(function*() {
        const { client, inject, server } = yield* sessions(transport(), modes.encrypted, modes.encrypted)
        yield* inject(encodeFrame(MessageType.PACKET, encodePacket(packet(1, PacketType.COMMAND, "in the clear"))))
        expect(yield* endOf(server)).toBe("ProtocolError/DecryptFailed")
        expect(yield* endOf(client)).toBe("PeerAlert/DecryptFailed")
      }).pipe(bounded("plaintext in encrypted")))
  })
}

/** A loopback TCP relay whose server-to-client direction can be stopped, so the server's writes back up. */
const pausableRelay = (target: number): Effect.Effect<{ readonly port: number; readonly pause: () => void }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly pause: () => void; readonly close: () => void }>((resume) => {
      const upstreams: Array<Net.Socket> = []
      const relay = Net.createServer((downstream) => {
        const upstream = Net.connect({ host: "127.0.0.1", port: target })
        upstreams.push(upstream)
        downstream.pipe(upstream)
        upstream.pipe(downstream)
        const ignore = () => {}
        downstream.on("error", ignore)
        upstream.on("error", ignore)
      })
      relay.listen(0, "127.0.0.1", () => {
        const address = relay.address()
        resume(Effect.succeed({
          port: typeof address === "object" && address !== null ? address.port : 0,
          pause: () => {
            for (const upstream of upstreams) {
              upstream.unpipe()
              upstream.pause()
            }
          },
          close: () => {
            for (const upstream of upstreams) upstream.destroy()
            relay.close()
          }
        }))
      })
    }),
    (relay) => Effect.sync(relay.close)
  )

describe("server budgets over TCP", () => {
  it.scopedLive("a peer that stops reading while the server writes to it ends with the stall timeout", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<string>()
      const { port } = yield* startServer({ ...modes.encrypted, stallTimeout: "300 millis" }, (session) =>
        Effect.gen(function*() {
          yield* session.receive()
          // Answer with far more than the socket buffers hold, until the session ends.
          yield* Effect.ignore(Effect.forever(session.send(packet(1, PacketType.RESPONSE, randomPayload(256 * KiB)))))
          yield* Deferred.succeed(ended, yield* endOf(session))
        }))
      const relay = yield* pausableRelay(port)
      const client = yield* ClientSession.connectScoped({ ...modes.encrypted, port: relay.port })
      relay.pause()
      yield* client.send(packet(1, PacketType.COMMAND, "go"))
      expect(yield* Deferred.await(ended)).toBe("ProtocolError/Timeout")
    }).pipe(bounded("stall timeout")))

  it.scopedLive("connections share the server's memory budget; small requests of others still pass when it is spent", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer(
        { ...modes.encrypted, memoryBudget: 3 * MiB, maxBufferedBytes: 8 * MiB },
        (session) =>
          Effect.gen(function*() {
            const first = yield* session.receive()
            // COMMAND: an echo server; anything else: a handler that never reads again.
            if (first.type === PacketType.COMMAND) {
              yield* session.send(first)
              yield* session.serve((p) => Effect.succeed(p))
            } else {
              yield* Effect.never
            }
          })
      )
      const hoard = (id: number) =>
        Effect.gen(function*() {
          const session = yield* ClientSession.connectScoped({ ...modes.encrypted, port })
          yield* Effect.ignore(Effect.forEach(Array.from({ length: 10 }, (_, i) => i), () =>
            session.send(packet(id, PacketType.PACKET, randomPayload(256 * KiB))), { discard: true }))
          return session
        })
      const small = yield* ClientSession.connectScoped({ ...modes.encrypted, port })
      yield* small.send(packet(1, PacketType.COMMAND, "hello"))
      expect((yield* small.receive()).id).toBe(1)
      const [first, second] = yield* Effect.all([hoard(1), hoard(2)], { concurrency: 2 })
      // 2.25 MiB held by each hoarder do not both fit in 3 MiB: one of them is refused.
      expect(yield* Effect.raceFirst(endOf(first), endOf(second))).toBe("PeerAlert/LimitExceeded")
      const answer = yield* small.request(packet(2, PacketType.COMMAND, "still served"))
      expect(answer.id).toBe(2)
    }).pipe(bounded("memory budget")))
})
