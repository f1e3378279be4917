/**
 * Keep-alive (PROTOCOL.md §7.4, §10.3): with `keepAlive` set, a session PINGs a quiet peer and ends
 * with `ConnectionClosed("Timeout")` when nothing at all arrives an interval later; PING and PONG
 * never reach the application and never count as activity for `idleTimeout`.
 *
 * A peer that "stops answering" is simulated by dropping everything it writes from some moment on:
 * in memory with `MemorySocket`'s `transform`, over TCP with a relay that stops forwarding. Timing
 * assertions are generous upper bounds only (10 intervals), so that a loaded machine does not flake.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Net from "node:net"
import { connectScoped, ConnectionClosed, Packet, PacketType, PeerAlert, ProtocolError } from "../src/index.js"
import { MessageType } from "../src/wire/Messages.js"
import { noHang, typedError } from "./support/pair.js"
import { memorySessions, modes, startServer, str, text } from "./support/sessions.js"
import { makeTaggingCrypto } from "./support/tagging.js"
import { makeRecorder, type WireFrame } from "./support/wire.js"

const HANG_LIMIT = "10 seconds"
const INTERVAL = 100

/** Drops everything written once `silence()` has been called: a peer that stopped answering. */
const silencer = () => {
  let silent = false
  return {
    silence: () => void (silent = true),
    transform: (chunk: Uint8Array): Uint8Array | undefined => (silent ? undefined : chunk)
  }
}

/** A plaintext-mode frame's body, without the record tag that follows it (PROTOCOL.md §4.4). */
const bodyOf = (frame: WireFrame) => frame.bytes.subarray(5, frame.bytes.length - 16)

describe("keep-alive: a peer that stops answering", () => {
  for (const mode of ["plaintext", "encrypted"] as const) {
    it.scopedLive(`${mode}: is detected within a few intervals as ConnectionClosed("Timeout"); the peer hears ALERT TIMEOUT`, () =>
      Effect.gen(function*() {
        const server = silencer()
        const recorder = makeRecorder()
        const { client, server: serverSession } = yield* memorySessions({
          client: { ...modes[mode], keepAlive: `${INTERVAL} millis` },
          server: modes[mode],
          faults: { serverToClient: { transform: server.transform }, clientToServer: { tap: recorder.tap("C->S") } }
        })
        // Still alive past several intervals while the server answers.
        yield* Effect.sleep(INTERVAL * 3)
        const probe = yield* Effect.fork(client.closed)
        expect(probe.unsafePoll()).toBeNull()
        yield* Fiber.interrupt(probe)

        server.silence()
        const started = Date.now()
        const end = yield* client.closed
        const elapsed = Date.now() - started
        expect(end).toBeInstanceOf(ConnectionClosed)
        expect(end).toMatchObject({ _tag: "ConnectionClosed", reason: "Timeout" })
        expect(end.message).toBe("the peer stopped answering (keep-alive)")
        // One interval of silence before the PING, one more for its answer, plus the watchdog's tick.
        expect(elapsed).toBeLessThan(INTERVAL * 10)
        // The application sees the same typed error.
        expect(typedError(yield* Effect.exit(client.receive()), "client receive")).toMatchObject({
          _tag: "ConnectionClosed",
          reason: "Timeout"
        })
        // The server was alive, only unheard: the client's alert tells it why (PROTOCOL.md §6, §7.4).
        expect(yield* serverSession.closed).toEqual(new PeerAlert({ reason: "Timeout", phase: "Session" }))
        if (mode === "plaintext") {
          expect(recorder.framesOf("C->S").filter((f) => f.type === MessageType.PING).length).toBeGreaterThanOrEqual(1)
        }
      }).pipe(noHang(HANG_LIMIT, "keep-alive detection")))
  }

  it.scopedLive("over TCP: a relay that stops forwarding the server's bytes is detected", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer(
        modes.encrypted,
        (session) => session.serve((p) => Effect.succeed(new Packet({ id: p.id, type: PacketType.RESPONSE, payload: p.payload })))
      )
      const relay = yield* silencingRelay(port)
      const client = yield* connectScoped({ ...modes.encrypted, port: relay.port, keepAlive: `${INTERVAL} millis` })
      const reply = yield* client.request(new Packet({ id: 1, type: PacketType.COMMAND, payload: text("hello") }))
      expect(str(reply.payload)).toBe("hello")
      yield* Effect.sleep(INTERVAL * 3)

      relay.silence()
      const started = Date.now()
      const end = yield* client.closed
      expect(end).toMatchObject({ _tag: "ConnectionClosed", reason: "Timeout" })
      expect(Date.now() - started).toBeLessThan(INTERVAL * 10)
    }).pipe(noHang(HANG_LIMIT, "keep-alive over TCP")))
})

describe("keep-alive: a healthy idle pair", () => {
  it.scopedLive("stays up across many intervals; PINGs are answered by PONGs echoing their body, unseen by the application", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const { client, server } = yield* memorySessions({
        client: { ...modes.plaintext, keepAlive: "40 millis" },
        server: { ...modes.plaintext, keepAlive: "40 millis" },
        faults: { clientToServer: { tap: recorder.tap("C->S") }, serverToClient: { tap: recorder.tap("S->C") } }
      })
      const serverReceives = yield* Effect.fork(server.receive())
      yield* Effect.sleep(40 * 8)
      for (const session of [client, server]) {
        const probe = yield* Effect.fork(session.closed)
        expect(probe.unsafePoll()).toBeNull()
        yield* Fiber.interrupt(probe)
      }
      // Neither PING nor PONG reached the application: the first packet `receive` sees is this one.
      yield* client.send(new Packet({ id: 7, type: PacketType.COMMAND, payload: text("after the quiet") }))
      const first = yield* Fiber.join(serverReceives)
      expect(first.id).toBe(7)
      expect(str(first.payload)).toBe("after the quiet")

      for (const [pinger, ponger] of [["C->S", "S->C"], ["S->C", "C->S"]] as const) {
        const pings = recorder.framesOf(pinger).filter((f) => f.type === MessageType.PING)
        const pongs = recorder.framesOf(ponger).filter((f) => f.type === MessageType.PONG)
        expect(pings.length).toBeGreaterThanOrEqual(2)
        // Every PONG echoes a PING's 8-byte body (PROTOCOL.md §7.4).
        const pingBodies = new Set(pings.map((f) => Buffer.from(bodyOf(f)).toString("hex")))
        expect(pongs.length).toBeGreaterThanOrEqual(1)
        for (const pong of pongs) {
          expect(bodyOf(pong).length).toBe(8)
          expect(pingBodies.has(Buffer.from(bodyOf(pong)).toString("hex"))).toBe(true)
        }
      }
    }).pipe(noHang(HANG_LIMIT, "a healthy keep-alive pair")))

  it.scopedLive("keep-alive traffic does not keep an idle session from its idleTimeout (PROTOCOL.md §10.3)", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({
        client: { ...modes.plaintext, keepAlive: "30 millis" },
        server: { ...modes.plaintext, keepAlive: "30 millis", idleTimeout: "300 millis" }
      })
      const serverEnd = yield* server.closed
      expect(serverEnd).toMatchObject({ _tag: "ProtocolError", reason: "Timeout", detail: "idle timeout" })
      expect(yield* client.closed).toEqual(new PeerAlert({ reason: "Timeout", phase: "Session" }))
    }).pipe(noHang(HANG_LIMIT, "the idle timeout beside keep-alive")))
})

describe("keep-alive: malformed PING and PONG", () => {
  // A peer whose records are tagged correctly (PROTOCOL.md §4.4) but whose PING or PONG is 7 bytes:
  // an altered frame would fail its tag first, so the client writes these itself.
  const shortFrom = (type: number) =>
    Effect.gen(function*() {
      const tagging = yield* makeTaggingCrypto
      const sessions = yield* memorySessions({ client: modes.plaintext, server: modes.plaintext, clientCrypto: tagging.layer })
      const write = yield* sessions.clientSocket.writer
      yield* write(tagging.tag(Uint8Array.of(0, 0, 0, 7, type, 1, 2, 3, 4, 5, 6, 7)))
      return sessions
    })

  it.scopedLive("a PING whose body is not 8 bytes is Malformed; the sender hears ALERT MALFORMED", () =>
    Effect.gen(function*() {
      const { client, server } = yield* shortFrom(MessageType.PING)
      const serverEnd = yield* server.closed
      expect(serverEnd).toBeInstanceOf(ProtocolError)
      expect(serverEnd).toMatchObject({ _tag: "ProtocolError", reason: "Malformed", detail: "ping length" })
      expect(yield* client.closed).toEqual(new PeerAlert({ reason: "Malformed", phase: "Session" }))
    }).pipe(noHang(HANG_LIMIT, "a malformed PING")))

  it.scopedLive("a PONG whose body is not 8 bytes is Malformed", () =>
    Effect.gen(function*() {
      const { client, server } = yield* shortFrom(MessageType.PONG)
      expect(yield* server.closed).toMatchObject({ _tag: "ProtocolError", reason: "Malformed", detail: "pong length" })
      expect(yield* client.closed).toEqual(new PeerAlert({ reason: "Malformed", phase: "Session" }))
    }).pipe(noHang(HANG_LIMIT, "a malformed PONG")))
})

describe("keep-alive: validation", () => {
  for (const [what, keepAlive] of [["0", 0], ["-5", -5], [`"soon"`, "soon"]] as const) {
    it.scopedLive(`keepAlive: ${what} is InvalidArgument naming keepAlive`, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(connectScoped({ port: 1, keepAlive: untyped<number>(keepAlive) }))
        expect(typedError(exit, "connect")).toMatchObject({ _tag: "InvalidArgument", reason: "Option", field: "keepAlive" })
      }))
  }
})

/** What a JavaScript caller or a config file can hand over where the types say otherwise. */
const untyped = <T>(value: unknown): T => JSON.parse(JSON.stringify(value))

/**
 * A TCP relay to `port` on loopback; after `silence()` it drops what the server sends (the client's
 * bytes still go through), so the server looks alive to itself and dead to the client.
 */
const silencingRelay = (port: number) =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly silence: () => void; readonly server: Net.Server; readonly sockets: Set<Net.Socket> }>((resume) => {
      const sockets = new Set<Net.Socket>()
      let silent = false
      const server = Net.createServer((downstream) => {
        const upstream = Net.connect(port, "127.0.0.1")
        sockets.add(downstream).add(upstream)
        downstream.on("data", (data) => upstream.write(data))
        upstream.on("data", (data) => {
          if (!silent) downstream.write(data)
        })
        for (const socket of [downstream, upstream]) {
          socket.on("error", () => undefined)
          socket.on("close", () => {
            downstream.destroy()
            upstream.destroy()
          })
        }
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed({
          port: typeof address === "object" && address !== null ? address.port : 0,
          silence: () => void (silent = true),
          server,
          sockets
        }))
      })
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  )
