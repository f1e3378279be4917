/**
 * Requests and their answers (PROTOCOL.md §8.2, §8.3, §9.1, §9.4): remote errors instead of dead
 * sessions, request timeouts, streamed replies and cancelled streams, open packet types. Through the
 * public session API, in memory and over TCP.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, Ref, Schedule, Stream } from "effect"
import { connectScoped } from "../src/client/Client.js"
import { RemoteError } from "../src/errors.js"
import type { InvalidArgument } from "../src/errors.js"
import type { Session, SessionError } from "../src/session/Session.js"
import type { Packet } from "../src/wire/Packet.js"
import { PacketType } from "../src/wire/PacketType.js"
import { bounded, memorySessions, modes, packet, randomPayload, startServer, str } from "./support/sessions.js"

class Boom {
  readonly _tag = "Boom"
  constructor(readonly secret: string) {}
}

/** A raw server that knows four commands by payload, in the style a user would write one. */
const handler = (session: Session) => (p: Packet): Effect.Effect<Packet | undefined, Boom | SessionError | InvalidArgument> => {
  switch (str(p.payload)) {
    case "fail":
      return Effect.fail(new Boom("do not leak me"))
    case "die":
      return Effect.die(new Error("kaboom with a secret"))
    case "nothing":
      return Effect.succeed(undefined)
    case "count": {
      // In chunks of 64 items, which go out as one piece each (a chunk of one item would cost a frame each).
      const numbers = Stream.iterate(0, (n) => n + 1).pipe(Stream.map((n) => new TextEncoder().encode(`${n};`)), Stream.rechunk(64))
      return Effect.as(session.replyStream(p, PacketType.STREAM_DATA, numbers), undefined)
    }
    default:
      return Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload))
  }
}

const command = (session: Session, text: string) => session.request(packet(session.nextId(), PacketType.COMMAND, text))

describe("remote errors (PROTOCOL.md §8.3)", () => {
  it.scopedLive("a failing, dying or silent handler answers RemoteError, and the same session keeps serving", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      yield* Effect.forkScoped(server.serve(handler(server)))
      const failed = yield* Effect.flip(command(client, "fail"))
      expect(failed).toBeInstanceOf(RemoteError)
      // By default the requester learns the error's tag and nothing else.
      expect(failed).toMatchObject({ _tag: "RemoteError", reason: "Failure", detail: "Boom" })
      expect(failed.message).not.toContain("leak")
      const died = yield* Effect.flip(command(client, "die"))
      expect(died).toMatchObject({ _tag: "RemoteError", reason: "Defect", detail: "" })
      expect(yield* Effect.flip(command(client, "nothing"))).toMatchObject({ _tag: "RemoteError", reason: "NoReply" })
      expect(str((yield* command(client, "still here")).payload)).toBe("still here")
    }).pipe(bounded("remote errors")))

  it.scopedLive("exposeErrors sends the failure and its stack; a plain send's failure still ends serve", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: { ...modes.encrypted, exposeErrors: true } })
      const serving = yield* Effect.fork(server.serve(handler(server)))
      const died = yield* Effect.flip(command(client, "die"))
      expect(died).toBeInstanceOf(RemoteError)
      const detail = died instanceof RemoteError ? died.detail : ""
      expect(detail).toContain("kaboom with a secret")
      expect(detail).toContain("requests.test.ts")
      // A one-way packet has nobody to answer: its handler's failure is serve's.
      yield* client.send(packet(1, PacketType.COMMAND, "fail"))
      expect(yield* Effect.flip(Fiber.join(serving))).toBeInstanceOf(Boom)
    }).pipe(bounded("exposeErrors")))

  it.scopedLive("replyError answers a request received by hand; a chunked request is a request too", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: { ...modes.plaintext, chunkSize: 1024 }, server: modes.plaintext })
      const asked = yield* Effect.fork(Effect.flip(client.request(packet(9, PacketType.COMMAND, randomPayload(5000)))))
      const request = yield* server.receive()
      expect(request.payload.length).toBe(5000)
      yield* server.replyError(request, new RemoteError({ reason: "Unsupported", detail: "ü".repeat(600) }))
      const error = yield* Fiber.join(asked)
      // Cut to 1024 bytes at a character boundary: 512 two-byte characters.
      expect(error).toMatchObject({ reason: "Unsupported", detail: "ü".repeat(512) })
      const silent = yield* Effect.fork(Effect.flip(client.request(packet(10, PacketType.COMMAND, randomPayload(5000)))))
      yield* server.respond({}, () => Effect.succeed(undefined))
      expect(yield* Fiber.join(silent)).toMatchObject({ reason: "NoReply" })
    }).pipe(bounded("replyError")))
})

describe("request timeouts", () => {
  it.scopedLive("a request with a timeout fails with RequestTimeout, frees its id, and a late reply is dropped", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const error = yield* Effect.flip(client.request(packet(3, PacketType.COMMAND, "slow"), { timeout: "50 millis" }))
      expect(error).toMatchObject({ _tag: "RequestTimeout", id: 3, millis: 50 })
      expect(error.message).toBe("request #3 got no answer within 50 ms")
      // The late reply finds no request waiting and is dropped: it never reaches receive. The marker
      // after it shows the client has seen it.
      const slow = yield* server.receive()
      yield* server.reply(slow, packet(3, PacketType.RESPONSE, "late"))
      yield* server.send(packet(1, PacketType.SUCCESS, "marker"))
      expect(str((yield* client.receive()).payload)).toBe("marker")
      // Id 3 is free for the next request.
      yield* Effect.forkScoped(server.serve(handler(server)))
      expect(str((yield* client.request(packet(3, PacketType.COMMAND, "fresh"))).payload)).toBe("fresh")
    }).pipe(bounded("request timeout")))
})

describe("streamed replies and cancelling (PROTOCOL.md §9.1, §9.4)", () => {
  for (const mode of ["encrypted", "plaintext"] as const) {
    it.scopedLive(`${mode}: requestStream takes a few items of an endless reply; the cancel ends it at the server`, () =>
      Effect.gen(function*() {
        const { client, server } = yield* memorySessions({ client: modes[mode], server: modes[mode] })
        const served = yield* Ref.make(0)
        yield* Effect.forkScoped(server.serve((p) => Effect.ensuring(handler(server)(p), Ref.update(served, (n) => n + 1))))
        const stream = yield* client.requestStream(packet(client.nextId(), PacketType.COMMAND, "count"))
        expect(stream.type).toBe(PacketType.STREAM_DATA)
        const text = yield* stream.data.pipe(
          Stream.decodeText(),
          Stream.takeUntil((s) => s.includes("1000;")),
          Stream.runFold("", (a, b) => a + b)
        )
        expect(text.startsWith("0;1;2;")).toBe(true)
        // The endless handler ends because the client cancelled, and the session goes on.
        yield* Effect.repeat(Ref.get(served), { until: (n) => n === 1, schedule: Schedule.spaced("5 millis") })
        expect(str((yield* command(client, "after")).payload)).toBe("after")
      }).pipe(bounded("cancel")))
  }

  it.scopedLive("request collects a finite streamed reply; a plain reply is a one-chunk stream to requestStream", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      yield* Effect.forkScoped(server.serve((p) =>
        str(p.payload) === "three"
          ? Effect.as(server.replyStream(p, PacketType.STREAM_DATA, Stream.make("a", "b", "c").pipe(Stream.encodeText)), undefined)
          : Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload))
      ))
      const collected = yield* command(client, "three")
      expect([collected.type, str(collected.payload)]).toEqual([PacketType.STREAM_DATA, "abc"])
      const single = yield* client.requestStream(packet(client.nextId(), PacketType.COMMAND, "one"))
      const chunks = yield* Stream.runCollect(single.data)
      expect(Chunk.toReadonlyArray(chunks).map(str)).toEqual(["one"])
    }).pipe(bounded("streamed reply")))

  it.scopedLive("over TCP: remote errors, a streamed reply and a timeout on one connection", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({ ...modes.encrypted }, (session) => session.serve(handler(session)))
      const client = yield* connectScoped({ port, ...modes.encrypted })
      expect(yield* Effect.flip(command(client, "fail"))).toMatchObject({ reason: "Failure", detail: "Boom" })
      const stream = yield* client.requestStream(packet(client.nextId(), PacketType.COMMAND, "count"))
      const first = yield* stream.data.pipe(Stream.decodeText(), Stream.runHead)
      expect(Option.getOrThrow(first).startsWith("0;")).toBe(true)
      expect(str((yield* command(client, "echo")).payload)).toBe("echo")
    }).pipe(bounded("tcp")))
})

describe("open packet types (PROTOCOL.md §8.1)", () => {
  it.scopedLive("every byte is a packet type the peer receives as sent", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.plaintext, server: modes.plaintext })
      for (const type of [0x03, 0x55, 0x9f, 0xd7]) yield* client.send(packet(type, type, "x"))
      const got: Array<number> = []
      for (let i = 0; i < 4; i++) got.push((yield* server.receive()).type)
      expect(got).toEqual([0x03, 0x55, 0x9f, 0xd7])
    }).pipe(bounded("open types")))
})
