/**
 * InvalidArgument: every bad option and packet the public API (`src/index.ts`) can be handed fails at
 * the entry point with a typed error naming the field, before a socket is opened or bound, a byte is
 * written or a sequence number is taken. Before, these gave defects, a misleading
 * `ConnectionClosed("Cut")`, a `send` looping forever (`chunkSize: 0`), a hanging `request`, or a
 * dropped frame whose sequence number made the next request fail with `DecryptFailed`.
 */
import * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer, Stream } from "effect"
import {
  ClientSession,
  connect,
  connectScoped,
  type ConnectOptions,
  InvalidArgument,
  listen,
  NodeCrypto,
  Packet,
  PacketType,
  serve,
  ServerSession,
  type Session
} from "../src/index.js"
import { MemorySocket } from "../src/testing.js"
import { makeEncryptedRecordLayer } from "../src/channel/RecordLayer.js"
import { trafficKeys } from "../src/handshake/KeySchedule.js"
import { MessageType } from "../src/wire/Messages.js"
import { noHang, typedError } from "./support/pair.js"
import { activeResources } from "./support/raw.js"
import { memorySessions, modes, packet, str } from "./support/sessions.js"
import { failOnUnhandledRejections } from "./support/unhandled.js"
import { concatBytes, rawPeer, splitFrames } from "./support/wire.js"

failOnUnhandledRejections()

const HANG_LIMIT = "5 seconds"

/**
 * What a JavaScript caller, or options read from a config file, can hand over where the types say
 * otherwise. JSON stands for that untyped world; values the types already allow (NaN, -1) are written
 * as they are.
 */
const untyped = <T>(json: string): T => JSON.parse(json)

const expectInvalid = (error: unknown, reason: "Option" | "Packet", field: string) => {
  expect(error).toBeInstanceOf(InvalidArgument)
  expect(error).toMatchObject({ _tag: "InvalidArgument", reason, field })
}

/** The typed failure of `effect`; a success, a defect or an interruption fails the test. */
const failure = <A, E, R>(effect: Effect.Effect<A, E, R>, what: string) =>
  Effect.map(Effect.exit(effect), (exit) => typedError(exit, what))

/** Handshake and session options the issue found unchecked, with the field each must name. */
const badSessionOptions: ReadonlyArray<readonly [what: string, options: ConnectOptions, field: string]> = [
  ["a non-string password (a number)", untyped(`{ "port": 1, "password": 42 }`), "password"],
  [`handshakeTimeout: "banana"`, untyped(`{ "port": 1, "handshakeTimeout": "banana" }`), "handshakeTimeout"],
  ["handshakeTimeout: -5 (Duration.decode would make it zero)", { port: 1, handshakeTimeout: -5 }, "handshakeTimeout"],
  [`encryption: "maybe"`, untyped(`{ "port": 1, "encryption": "maybe" }`), "encryption"],
  ["maxFrameSize: NaN", { port: 1, maxFrameSize: NaN }, "maxFrameSize"],
  ["chunkSize: 0 (send looped forever on empty frames)", { port: 1, chunkSize: 0 }, "chunkSize"],
  ["rekeyAfter: 1 (KEY_UPDATE itself takes the last sequence number)", { port: 1, rekeyAfter: 1 }, "rekeyAfter"],
  ["keepAlive: 0 (a PING on every watchdog tick)", { port: 1, keepAlive: 0 }, "keepAlive"]
]

const badPorts: ReadonlyArray<readonly [what: string, port: number]> = [
  ["port 70000", 70000],
  ["port -1 (was ConnectionClosed Cut)", -1],
  ["port NaN (was ConnectionClosed Cut)", NaN],
  ["port 1.5", 1.5]
]

const sockets = () => activeResources("TCPSocketWrap")
const listeners = () => activeResources("TCPServerWrap")

// ---------------------------------------------------------------------------------------------

describe("InvalidArgument: connect options, refused before a socket is opened", () => {
  for (const [what, options, field] of [...badSessionOptions, ...badPorts.map(([what, port]) => [what, { port }, "port"] as const)]) {
    it.live(`connect: ${what}`, () =>
      Effect.gen(function*() {
        const before = sockets()
        expectInvalid(yield* failure(connect(options), "connect"), "Option", field)
        expect(sockets()).toBe(before)
      }))
  }

  it.live("connect: host \"\", connectTimeout \"banana\", options null", () =>
    Effect.gen(function*() {
      expectInvalid(yield* failure(connect({ port: 1, host: "" }), "connect"), "Option", "host")
      expectInvalid(yield* failure(connect(untyped(`{ "port": 1, "connectTimeout": "banana" }`)), "connect"), "Option", "connectTimeout")
      expectInvalid(yield* failure(connect(untyped("null")), "connect"), "Option", "options")
    }))

  it.scopedLive("connectScoped and ClientSession.layer: port 70000", () =>
    Effect.gen(function*() {
      expectInvalid(yield* failure(connectScoped({ port: 70000 }), "connectScoped"), "Option", "port")
      const layer = ClientSession.layer({ port: 70000 })
      expectInvalid(yield* failure(Layer.build(layer), "ClientSession.layer"), "Option", "port")
    }))

  it.live("unknown extra keys are ignored", () =>
    Effect.gen(function*() {
      // Nothing listens on port 1: getting past validation is shown by a connect-time failure instead.
      const options: ConnectOptions = untyped(`{ "port": 1, "connectTimeout": 2000, "colour": "blue" }`)
      const error = yield* failure(connect(options), "connect")
      expect(error).not.toBeInstanceOf(InvalidArgument)
    }))
})

// ---------------------------------------------------------------------------------------------

describe("InvalidArgument: serve and listen options, refused before anything is bound", () => {
  for (const [what, port] of badPorts) {
    it.live(`serve: ${what}`, () =>
      Effect.gen(function*() {
        const before = listeners()
        const error = yield* failure(serve({ port }, () => Effect.void), "serve")
        expectInvalid(error, "Option", "port")
        expect(listeners()).toBe(before)
      }))
  }

  for (const [what, options, field] of badSessionOptions) {
    it.scopedLive(`listen: ${what}`, () =>
      Effect.gen(function*() {
        const before = listeners()
        expectInvalid(yield* failure(listen({ ...options, port: 0 }), "listen"), "Option", field)
        expect(listeners()).toBe(before)
      }))
  }

  it.live("serve: maxConnections 0, onListen not a function, host \"\"", () =>
    Effect.gen(function*() {
      expectInvalid(yield* failure(serve({ port: 0, maxConnections: 0 }, () => Effect.void), "serve"), "Option", "maxConnections")
      expectInvalid(yield* failure(serve(untyped(`{ "port": 0, "onListen": 5 }`), () => Effect.void), "serve"), "Option", "onListen")
      expectInvalid(yield* failure(serve({ port: 0, host: "" }, () => Effect.void), "serve"), "Option", "host")
    }))

  it.scopedLive("ServerSession.layer: port 70000 fails the Layer", () =>
    Effect.gen(function*() {
      const layer = ServerSession.layer({ port: 70000 }, () => Effect.void)
      expectInvalid(yield* failure(Layer.build(layer), "ServerSession.layer"), "Option", "port")
    }))
})

// ---------------------------------------------------------------------------------------------

describe("InvalidArgument: in-memory session options, refused before a byte is written", () => {
  for (const role of ["client", "server"] as const) {
    for (const [what, { port: _port, ...options }, field] of badSessionOptions) {
      it.scopedLive(`${role === "client" ? "ClientSession" : "ServerSession"}.session: ${what}`, () =>
        Effect.gen(function*() {
          const [ours, theirs] = yield* MemorySocket.makePair()
          const peer = yield* rawPeer(theirs)
          const session = role === "client" ? ClientSession.session(options) : ServerSession.session(options)
          const error = yield* failure(
            session.pipe(Effect.provideService(Socket.Socket, ours), Effect.provide(NodeCrypto.layer)),
            role
          )
          expectInvalid(error, "Option", field)
          // A client would have sent its ClientHello first thing.
          expect(peer.received().length).toBe(0)
        }))
    }
  }
})

// ---------------------------------------------------------------------------------------------

const command = (id: number, payload = "ping") => packet(id, PacketType.COMMAND, payload)

/** An encrypted pair whose server echoes every request as a RESPONSE. */
const echoPair = Effect.gen(function*() {
  const sessions = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
  yield* Effect.forkScoped(sessions.server.serve((p) => Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload))))
  return sessions
})

/** A good request still goes through: no sequence number was taken by the refused packet. */
const expectHealthy = (client: Session) =>
  Effect.gen(function*() {
    const id = client.nextId()
    const answer = yield* client.request(command(id, "after"), { expect: PacketType.RESPONSE })
    expect(answer.id).toBe(id)
    expect(str(answer.payload)).toBe("after")
  })

/**
 * Packets built with validation off (`new Packet(fields, true)`, as the codec itself does), with the
 * field each must name.
 */
const badPackets: ReadonlyArray<readonly [what: string, packet: Packet, field: string]> = [
  ["a payload that is not a Uint8Array", new Packet({ id: 1, type: PacketType.COMMAND, payload: untyped("[1, 2, 3]") }, true), "packet.payload"],
  ["id -1", new Packet({ id: -1, type: PacketType.COMMAND, payload: new Uint8Array(1) }, true), "packet.id"],
  ["id NaN", new Packet({ id: NaN, type: PacketType.COMMAND, payload: new Uint8Array(1) }, true), "packet.id"],
  ["id 2^32", new Packet({ id: 2 ** 32, type: PacketType.COMMAND, payload: new Uint8Array(1) }, true), "packet.id"],
  ["id 1.5", new Packet({ id: 1.5, type: PacketType.COMMAND, payload: new Uint8Array(1) }, true), "packet.id"],
  ["type 300", new Packet({ id: 1, type: untyped("300"), payload: new Uint8Array(1) }, true), "packet.type"],
  ["type 1.5", new Packet({ id: 1, type: untyped("1.5"), payload: new Uint8Array(1) }, true), "packet.type"]
]

describe("InvalidArgument: packets, refused before anything is sealed", () => {
  for (const [what, bad, field] of badPackets) {
    it.scopedLive(`send and request: ${what}; the next request still succeeds`, () =>
      Effect.gen(function*() {
        const { client } = yield* echoPair
        expectInvalid(yield* failure(client.send(bad), "send"), "Packet", field)
        // Fails at once instead of waiting for a reply that cannot come.
        expectInvalid(yield* failure(client.request(bad), "request"), "Packet", field)
        yield* expectHealthy(client)
      }).pipe(noHang(HANG_LIMIT, "the session")))
  }

  it.scopedLive("receive, receiveStream and request's expect: a filter that can never match", () =>
    Effect.gen(function*() {
      const { client } = yield* echoPair
      expectInvalid(yield* failure(client.receive({ id: -1 }), "receive"), "Packet", "filter.id")
      expectInvalid(yield* failure(client.receive({ type: untyped("300") }), "receive"), "Packet", "filter.type")
      expectInvalid(yield* failure(client.receiveStream({ id: NaN }), "receiveStream"), "Packet", "filter.id")
      const expect300 = { expect: untyped<PacketType>("300") }
      expectInvalid(yield* failure(client.request(command(client.nextId()), expect300), "request"), "Packet", "options.expect")
      yield* expectHealthy(client)
    }).pipe(noHang(HANG_LIMIT, "the session")))

  it.scopedLive("sendStream: a header with id -1 or type 300, before CHUNK_START is sent", () =>
    Effect.gen(function*() {
      const { client } = yield* echoPair
      const data = Stream.make(new Uint8Array(4))
      expectInvalid(yield* failure(client.sendStream({ id: -1, type: PacketType.STREAM_DATA }, data), "sendStream"), "Packet", "header.id")
      const type300 = { id: 1, type: untyped<PacketType>("300") }
      expectInvalid(yield* failure(client.sendStream(type300, data), "sendStream"), "Packet", "header.type")
      yield* expectHealthy(client)
    }).pipe(noHang(HANG_LIMIT, "the session")))

  it.scopedLive("receiveAndSend: a bad response fails before the request is consumed", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const request = yield* Effect.fork(client.request(command(7)))
      const bad = new Packet({ id: 0, type: PacketType.RESPONSE, payload: untyped(`"text"`) }, true)
      expectInvalid(yield* failure(server.receiveAndSend(bad), "receiveAndSend"), "Packet", "response.payload")
      // The request is still there for a good answer.
      yield* server.receiveAndSend(packet(0, PacketType.RESPONSE, "ok"))
      const answer = yield* Fiber.join(request)
      expect([answer.id, str(answer.payload)]).toEqual([7, "ok"])
    }).pipe(noHang(HANG_LIMIT, "the session")))

  it.scopedLive("respond: a handler returning a bad packet answers the request with RemoteError; the session goes on", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const first = yield* Effect.fork(Effect.flip(client.request(command(1))))
      const badReply = (p: Packet) => Effect.succeed(new Packet({ id: p.id, type: PacketType.RESPONSE, payload: untyped("[0]") }, true))
      expect((yield* server.respond({}, badReply)).id).toBe(1)
      // The requester learns that the handler failed, and with which error's tag: nothing more by default.
      expect(yield* Fiber.join(first)).toMatchObject({ _tag: "RemoteError", reason: "Failure", detail: "InvalidArgument" })
      expectInvalid(yield* failure(server.respond({ id: -1 }, badReply), "respond"), "Packet", "filter.id")
      const second = yield* Effect.fork(client.request(command(2, "again")))
      yield* server.respond({}, (p) => Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload)))
      expect(str((yield* Fiber.join(second)).payload)).toBe("again")
    }).pipe(noHang(HANG_LIMIT, "the session")))

  it.scopedLive("serve: a handler returning a packet of type 300 answers RemoteError and serving goes on", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      const type300 = new Packet({ id: 1, type: untyped("300"), payload: new Uint8Array(0) }, true)
      yield* Effect.forkScoped(server.serve((p) => Effect.succeed(str(p.payload) === "bad" ? type300 : packet(p.id, PacketType.RESPONSE, p.payload))))
      const error = yield* Effect.flip(client.request(command(client.nextId(), "bad")))
      expect(error).toMatchObject({ _tag: "RemoteError", reason: "Failure", detail: "InvalidArgument" })
      yield* expectHealthy(client)
    }).pipe(noHang(HANG_LIMIT, "the session")))
})

// ---------------------------------------------------------------------------------------------

describe("InvalidArgument: messages", () => {
  it.live("name the option or field, what was expected, and what was given", () =>
    Effect.gen(function*() {
      const port = yield* failure(connect({ port: 70000 }), "connect")
      expect(port.message).toBe("invalid option port: expected an integer from 1 to 65535, got 70000")
      const encryption = yield* failure(connect(untyped(`{ "port": 1, "encryption": "maybe" }`)), "connect")
      expect(encryption.message).toBe(`invalid option encryption: expected "required", "preferred" or "disabled", got "maybe"`)
      const sessions = yield* memorySessions()
      const id = yield* failure(sessions.client.send(new Packet({ id: -1, type: PacketType.COMMAND, payload: new Uint8Array(0) }, true)), "send")
      expect(id.message).toBe("invalid packet.id: expected an integer from 0 to 4294967295, got -1")
    }).pipe(Effect.scoped))

  it.live("a bad password is described by its kind, never shown", () =>
    Effect.gen(function*() {
      const error = yield* failure(connect(untyped(`{ "port": 1, "password": 123456 }`)), "connect")
      expect(error.message).toBe("invalid option password: expected a string, a Uint8Array, or a Redacted of either, got a number")
      expect(error.message).not.toContain("123456")
    }))
})

// ---------------------------------------------------------------------------------------------

describe("below the API edge: the record layer", () => {
  it.effect("a record that fails to seal takes no sequence number, so the next one still opens", () =>
    Effect.gen(function*() {
      const crypto = yield* NodeCrypto.make
      const keys = trafficKeys(crypto, new Uint8Array(32).fill(7))
      const other = trafficKeys(crypto, new Uint8Array(32).fill(9))
      const sender = Either.getOrThrow(makeEncryptedRecordLayer(crypto, keys, other, 2 ** 24))
      const receiver = Either.getOrThrow(makeEncryptedRecordLayer(crypto, other, keys, 2 ** 24))
      const parts: Array<Uint8Array> = []
      const emit = (part: Uint8Array) => parts.push(part)
      // Bytes the cipher refuses: nothing may be emitted, and the counter must not move.
      sender.write(MessageType.PACKET, Uint8Array.of(0, 0, 0, 1, PacketType.COMMAND), untyped("[1, 2, 3]"), emit)
      expect(parts).toEqual([])
      sender.write(MessageType.PACKET, Uint8Array.of(0, 0, 0, 2, PacketType.COMMAND), Uint8Array.of(42), emit)
      const { frames } = splitFrames(concatBytes(parts))
      expect(frames.length).toBe(1)
      const frame = frames[0]!
      const delivered: Array<Uint8Array> = []
      const error = receiver.read(frame[4]!, frame.subarray(0, 5), frame.subarray(5), (_, body) => delivered.push(body))
      expect(error).toBeUndefined()
      expect(delivered.map((body) => Array.from(body))).toEqual([[0, 0, 0, 2, PacketType.COMMAND, 42]])
    }))
})
