/**
 * The server over real loopback TCP (port 0): many clients at once, misbehaving clients that must not
 * disturb the others, the connection limit, logging, graceful shutdown, and the Layer forms.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Either, Exit, Fiber, HashMap, Layer, Logger, Option, Supervisor } from "effect"
import * as Client from "../src/client/Client.js"
import { connect, connectScoped } from "../src/client/Client.js"
import { ConnectionClosed } from "../src/errors.js"
import * as Server from "../src/server/Server.js"
import type { Session } from "../src/session/Session.js"
import { encodeFrame } from "../src/wire/Frame.js"
import { MAGIC, MessageType, PROTOCOL_VERSION } from "../src/wire/Messages.js"
import { PacketType } from "../src/wire/PacketType.js"
import { activeResources, rawClient, tcpRelay } from "./support/raw.js"
import { bounded, modes, packet, randomPayload, startServer, str } from "./support/sessions.js"

/** Answers each request with RESPONSE "<payload>|ok". */
const handler = (session: Session) =>
  session.serve((p) => Effect.succeed(packet(p.id, PacketType.RESPONSE, `${str(p.payload)}|ok`)))

/** One client: connects, makes `requests` requests (10 at a time), checks every answer is its own. */
/**
 * 50 P-521 handshakes at once on a shared 2-core machine can take longer than the default 10 s
 * handshake timeout; this file tests correctness under concurrency, not handshake speed.
 */
const PATIENT = { handshakeTimeout: "40 seconds" } as const

const client = (port: number, name: string, requests: number) =>
  Effect.scoped(Effect.gen(function*() {
    const session = yield* connectScoped({ port, ...modes.encrypted, ...PATIENT })
    const answers = yield* Effect.forEach(
      Array.from({ length: requests }, (_, i) => i),
      (i) =>
        Effect.gen(function*() {
          const id = session.nextId()
          const answer = yield* session.request(packet(id, PacketType.COMMAND, `${name}/${i}`), { expect: PacketType.RESPONSE })
          return answer.id === id && str(answer.payload) === `${name}/${i}|ok`
        }),
      { concurrency: 10 }
    )
    yield* session.close
    return answers.filter((ok) => ok).length
  }))

/** What misbehaving clients send. */
const garbage = randomPayload(4096)
/** The start of a ClientHello frame, cut short. */
const partialHello = (() => {
  const frame = encodeFrame(MessageType.CLIENT_HELLO, new Uint8Array(170))
  frame.set(MAGIC, 5)
  frame[8] = PROTOCOL_VERSION
  return frame.subarray(0, 40)
})()
/** A frame header that declares 4 GiB − 1. */
const hugeFrame = Uint8Array.of(0xff, 0xff, 0xff, 0xff, MessageType.CLIENT_HELLO, 1, 2, 3)

interface Captured {
  readonly message: string
  readonly peer: Option.Option<unknown>
  readonly level: string
}

/** A logger that keeps every entry, replacing the default one so the test output stays quiet. */
const captureLogs = () => {
  const entries: Array<Captured> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    entries.push({
      message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
      peer: HashMap.get(annotations, "peer"),
      level: logLevel.label
    })
  })
  return { entries, layer: Logger.replace(Logger.defaultLogger, logger) }
}

describe("server", () => {
  it.scopedLive("50 concurrent clients × 100 requests: nothing lost or mixed up, despite misbehaving clients", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const { port } = yield* startServer({ ...modes.encrypted, ...PATIENT }, handler).pipe(Effect.provide(logs.layer))
      const misbehaving = Effect.all([
        rawClient(port, garbage, "wait"),
        rawClient(port, partialHello, "vanish"),
        rawClient(port, hugeFrame, "wait"),
        rawClient(port, partialHello, "vanish"),
        rawClient(port, garbage, "vanish")
      ], { concurrency: "unbounded" })
      const [counts, raw] = yield* Effect.all([
        Effect.forEach(Array.from({ length: 50 }, (_, i) => i), (i) => client(port, `client-${i}`, 100), {
          concurrency: "unbounded"
        }),
        misbehaving
      ], { concurrency: "unbounded" })
      expect(counts).toEqual(Array.from({ length: 50 }, () => 100))
      expect(raw).toHaveLength(5)
      // The server is still fine afterwards.
      expect(yield* client(port, "after", 10)).toBe(10)
    }).pipe(bounded("50 clients", "45 seconds")))

  it.scopedLive("failures are logged with the peer's address", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const { port } = yield* startServer(modes.encrypted, handler).pipe(Effect.provide(logs.layer))
      const { localPort } = yield* rawClient(port, garbage, "wait")
      const vanished = yield* rawClient(port, partialHello, "vanish")
      const peers = () =>
        logs.entries.filter((e) => e.message.includes("connection failed")).map((e) => Option.getOrElse(e.peer, () => ""))
      // The handshake of the vanished client fails on the server after the client is gone.
      while (peers().length < 2) yield* Effect.sleep("5 millis")
      const address = (p: number) => new RegExp(`^(::ffff:)?127\\.0\\.0\\.1:${p}$`)
      expect(peers().some((peer) => address(localPort).test(String(peer)))).toBe(true)
      // A peer that is already gone when its connection's fiber first runs has no address left to read.
      expect(peers().some((peer) => address(vanished.localPort).test(String(peer)) || peer === "unknown")).toBe(true)
      expect(logs.entries.every((e) => e.level === "WARN")).toBe(true)
    }).pipe(bounded("logging")))

  it.scopedLive("maxConnections: a third client is refused with a typed error", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const { port } = yield* startServer({ ...modes.encrypted, maxConnections: 2 }, handler).pipe(Effect.provide(logs.layer))
      const first = yield* connectScoped({ port, ...modes.encrypted })
      const second = yield* connectScoped({ port, ...modes.encrypted })
      const third = yield* Effect.either(Effect.scoped(connectScoped({ port, ...modes.encrypted })))
      expect(Either.isLeft(third)).toBe(true)
      if (Either.isLeft(third)) expect(third.left).toMatchObject({ _tag: "PeerAlert", reason: "LimitExceeded", phase: "Handshake" })
      expect(logs.entries.some((e) => e.message.includes("connections refused, maxConnections reached"))).toBe(true)
      // The two admitted ones are unaffected, and a slot frees up when one leaves.
      expect(str((yield* first.request(packet(1, PacketType.COMMAND, "a"))).payload)).toBe("a|ok")
      yield* second.close
      let admitted = yield* Effect.either(Effect.scoped(Effect.flatMap(connectScoped({ port, ...modes.encrypted }), (s) => s.request(packet(1, PacketType.COMMAND, "c")))))
      // The server frees the slot once it has seen the close; retry until then.
      for (let i = 0; i < 100 && Either.isLeft(admitted); i++) {
        yield* Effect.sleep("10 millis")
        admitted = yield* Effect.either(Effect.scoped(Effect.flatMap(connectScoped({ port, ...modes.encrypted }), (s) => s.request(packet(1, PacketType.COMMAND, "c")))))
      }
      expect(Either.map(admitted, (p) => str(p.payload))).toEqual(Either.right("c|ok"))
    }).pipe(bounded("connection limit")))

  it.scopedLive("interrupting the server closes the listener, sends CLOSE to open sessions, and leaves no fibers, sockets or timers", () =>
    Effect.gen(function*() {
      const now = () => ({ sockets: activeResources("TCPSocketWrap"), servers: activeResources("TCPServerWrap"), timers: activeResources("Timeout") })
      // Earlier tests' listeners finish closing asynchronously, just after their scope closed.
      for (let i = 0; i < 200 && (now().sockets > 0 || now().servers > 0); i++) yield* Effect.sleep("10 millis")
      const before = now()
      expect(before).toMatchObject({ sockets: 0, servers: 0 })
      const handlerInterrupted = yield* Deferred.make<void>()
      // Every fiber the server and the clients start is tracked; none may outlive the shutdown.
      const supervisor = yield* Supervisor.track
      const { fiber, port } = yield* startServer(modes.encrypted, (session) =>
        handler(session).pipe(Effect.onInterrupt(() => Deferred.succeed(handlerInterrupted, undefined)))
      ).pipe(Effect.supervised(supervisor))
      // `connect`: the client releases its socket by itself once the session has ended.
      const a = yield* connect({ port, ...modes.encrypted }).pipe(Effect.supervised(supervisor))
      const b = yield* connect({ port, ...modes.encrypted }).pipe(Effect.supervised(supervisor))
      expect(str((yield* a.request(packet(1, PacketType.COMMAND, "x"))).payload)).toBe("x|ok")
      expect(str((yield* b.request(packet(1, PacketType.COMMAND, "y"))).payload)).toBe("y|ok")
      const pending = yield* b.request(packet(2, PacketType.COMMAND, "in flight")).pipe(Effect.either, Effect.fork)

      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(handlerInterrupted)
      const endA = yield* a.closed
      const endB = yield* b.closed
      expect(endA).toBeInstanceOf(ConnectionClosed)
      expect(endA).toMatchObject({ reason: "Closed" })
      expect(endB).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
      const lost = yield* Fiber.join(pending)
      // Answered before the shutdown, or failed with the close: never left hanging.
      if (Either.isLeft(lost)) expect(lost.left).toMatchObject({ _tag: "ConnectionClosed" })

      // The listener is gone.
      const refused = yield* Effect.exit(Effect.scoped(connectScoped({ port, ...modes.encrypted })))
      expect(Exit.isFailure(refused)).toBe(true)
      if (Exit.isFailure(refused)) expect(Cause.failureOption(refused.cause)).toMatchObject(Option.some({ _tag: "ConnectFailed", code: "ECONNREFUSED" }))

      // Every socket, the listener and every timer are released.
      const released = () => now().sockets === 0 && now().servers === 0 && now().timers <= before.timers
      for (let i = 0; i < 200 && !released(); i++) yield* Effect.sleep("10 millis")
      expect(now()).toMatchObject({ sockets: 0, servers: 0 })
      expect(now().timers).toBeLessThanOrEqual(before.timers)
      let alive = yield* supervisor.value
      for (let i = 0; i < 200 && alive.length > 0; i++) {
        yield* Effect.sleep("10 millis")
        alive = yield* supervisor.value
      }
      expect(alive.map((f) => f.id().id)).toEqual([])
    }).pipe(bounded("shutdown")))

  it.scopedLive("interrupting the server ends even when a peer never answers its CLOSE (the waits in the close are bounded)", () =>
    Effect.gen(function*() {
      const { fiber, port } = yield* startServer(modes.encrypted, handler)
      // A relay that, once frozen, passes nothing either way: the server's writes still complete,
      // but no answer to its CLOSE and no end of stream ever comes back.
      let frozen = false
      const pass = (chunk: Uint8Array) => (frozen ? undefined : chunk)
      const relayPort = yield* tcpRelay(port, { toServer: pass, toClient: pass })
      const session = yield* connectScoped({ port: relayPort, ...modes.encrypted })
      expect(str((yield* session.request(packet(1, PacketType.COMMAND, "x"))).payload)).toBe("x|ok")
      frozen = true
      // Without bounded waits this never returns: the close runs in uninterruptible finalizers.
      const stopped = yield* Effect.exit(Fiber.interrupt(fiber))
      expect(Exit.isSuccess(stopped)).toBe(true)
    }).pipe(bounded("silent peer at shutdown", "20 seconds")))

  it.live("Server.layer and Client.layer work together", () =>
    Effect.gen(function*() {
      const listening = yield* Deferred.make<number>()
      const ServerLive = Server.layer(
        { port: 0, ...modes.encrypted, onListen: (address) => Deferred.succeed(listening, address.port) },
        handler
      )
      const ClientLive = Layer.unwrapEffect(
        Effect.map(Deferred.await(listening), (port) => Client.layer({ port, ...modes.encrypted }))
      )
      const program = Effect.gen(function*() {
        const session = yield* Client.Client
        const answers = yield* Effect.forEach(
          ["one", "two", "three"],
          (word) => session.request(packet(session.nextId(), PacketType.COMMAND, word), { expect: PacketType.RESPONSE }),
          { concurrency: "unbounded" }
        )
        return answers.map((p) => str(p.payload))
      })
      expect(yield* Effect.provide(program, Layer.merge(ServerLive, ClientLive))).toEqual(["one|ok", "two|ok", "three|ok"])
      // Both layers are released: the port no longer accepts connections.
      const port = yield* Deferred.await(listening)
      expect(Exit.isFailure(yield* Effect.exit(Effect.scoped(connectScoped({ port, ...modes.encrypted }))))).toBe(true)
    }).pipe(bounded("layers")))
})
