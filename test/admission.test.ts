/**
 * Handshake admission control (issue 8, PROTOCOL.md §10): the P-521 work pool's caps and its
 * accounting of cancelled jobs, the server's refusal when the queue is full, rate-limited log lines,
 * and eviction of the oldest pending handshake when silent connections fill the slots.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Fiber, Logger, TestClock } from "effect"
import { connectScoped, CryptoError, InvalidArgument, NodeCrypto, serve } from "../src/index.js"
import { rateLimitedWarning } from "../src/server/Server.js"
import { noHang } from "./support/pair.js"
import { rawClient } from "./support/raw.js"
import { startServer } from "./support/sessions.js"
import { failOnUnhandledRejections } from "./support/unhandled.js"

failOnUnhandledRejections()

const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ cause, message }) => {
    lines.push([...(Array.isArray(message) ? message : [message]).map(String), Cause.isEmpty(cause) ? "" : Cause.pretty(cause)].join(" "))
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/** A pool whose idle refill of prepared key pairs has finished, so its slots are all free. */
const idlePool = (options: { readonly concurrency: number; readonly maxQueue: number }) =>
  Effect.gen(function*() {
    const crypto = yield* NodeCrypto.makeWith(options)
    const own = yield* crypto.generateKeyPair
    const peer = yield* crypto.importPublicKey((yield* crypto.generateKeyPair).publicKey)
    while (crypto.load?.().inFlight !== 0) yield* Effect.sleep("5 millis")
    return { crypto, derive: crypto.deriveSharedSecret(own, peer) }
  })

describe("the P-521 work pool (NodeCrypto)", () => {
  it.live("caps work in flight and the queue; one job more fails at once with CryptoError Busy", () =>
    Effect.gen(function*() {
      const { crypto, derive } = yield* idlePool({ concurrency: 1, maxQueue: 1 })
      const running = yield* Effect.fork(derive)
      const queued = yield* Effect.fork(derive)
      while ((crypto.load?.().queued ?? 0) < 1) yield* Effect.yieldNow()
      expect(crypto.load?.()).toEqual({ inFlight: 1, queued: 1, concurrency: 1, maxQueue: 1 })
      const refused = yield* Effect.flip(derive)
      expect(refused).toBeInstanceOf(CryptoError)
      expect(refused).toMatchObject({ _tag: "CryptoError", reason: "Busy" })
      // The two admitted jobs complete normally.
      expect((yield* Fiber.join(running)).length).toBe(66)
      expect((yield* Fiber.join(queued)).length).toBe(66)
    }).pipe(noHang("20 seconds", "the pool")))

  it.live("an interrupted job keeps its slot until its WebCrypto promise settles; a waiting one leaves the queue", () =>
    Effect.gen(function*() {
      const { crypto, derive } = yield* idlePool({ concurrency: 1, maxQueue: 4 })
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(derive))
      while ((crypto.load?.().queued ?? 0) < 2) yield* Effect.yieldNow()
      yield* Effect.forEach(fibers, Fiber.interrupt, { discard: true })
      // The fibers are gone, but the running scalar multiplication is not: it is still counted.
      expect(crypto.load?.()).toMatchObject({ inFlight: 1, queued: 0 })
      while (crypto.load?.().inFlight !== 0) yield* Effect.sleep("1 millis")
      expect(crypto.load?.()).toMatchObject({ inFlight: 0, queued: 0 })
      // And the slot is usable again.
      expect((yield* derive).length).toBe(66)
    }).pipe(noHang("20 seconds", "the pool")))
})

describe("rate-limited log lines", () => {
  it.effect("at most one line per second, with the count since the last line", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const warn = rateLimitedWarning("refused")
      yield* Effect.provide(Effect.all([warn, warn, warn], { discard: true }), logs.layer)
      expect(logs.lines.map((l) => l.trim())).toEqual(["refused (1 since the last line)"])
      yield* TestClock.adjust("999 millis")
      yield* Effect.provide(warn, logs.layer)
      expect(logs.lines.length).toBe(1)
      yield* TestClock.adjust("1 millis")
      yield* Effect.provide(warn, logs.layer)
      expect(logs.lines.map((l) => l.trim())).toEqual(["refused (1 since the last line)", "refused (4 since the last line)"])
    }))
})

describe("server admission control over TCP", () => {
  it.scopedLive("a full P-521 queue: the server refuses with ALERT LIMIT_EXCEEDED and logs a rate-limited line", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      // One job at a time and no queue: a burst of handshakes must be refused in part.
      const { port } = yield* startServer({}, (session) => session.serve((p) => Effect.succeed(p))).pipe(
        Effect.provide(logs.layer),
        Effect.provide(NodeCrypto.layerWith({ concurrency: 1, maxQueue: 0 }))
      )
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 12 }, (_, i) => i),
        () => Effect.scoped(Effect.either(connectScoped({ port }))),
        { concurrency: 12 }
      )
      const refused = outcomes.filter((o) => o._tag === "Left")
      expect(refused.length).toBeGreaterThan(0)
      // The server found itself busy; the client only hears that a limit of the peer's ran out.
      for (const o of refused) expect(o.left).toMatchObject({ _tag: "PeerAlert", reason: "LimitExceeded", phase: "Handshake" })
      while (!logs.lines.some((l) => l.includes("P-521 work queue full"))) yield* Effect.sleep("10 millis")
      // Refusals are counted in rate-limited lines, never logged as failed connections one by one.
      expect(logs.lines.filter((l) => l.includes("connection failed") && l.includes("busy"))).toEqual([])
      expect(logs.lines.filter((l) => l.includes("P-521 work queue full")).length).toBeLessThanOrEqual(refused.length)
    }).pipe(noHang("30 seconds", "the burst")))

  it.scopedLive("silent connections fill maxHandshakes: the oldest are evicted (ALERT TIMEOUT) and a real client connects", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const { port } = yield* startServer({ maxHandshakes: 4 }, (session) => session.serve((p) => Effect.succeed(p))).pipe(
        Effect.provide(logs.layer)
      )
      const silent = yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => i),
        () => Effect.fork(rawClient(port, new Uint8Array(0), "wait")),
        { concurrency: 1 }
      )
      // The four oldest were evicted to make room for the four newest: each heard ALERT TIMEOUT (6 bytes).
      const evicted = yield* Effect.forEach(silent.slice(0, 4), Fiber.join)
      expect(evicted.map((o) => o.received)).toEqual([6, 6, 6, 6])
      const session = yield* connectScoped({ port })
      expect(session.info.encrypted).toBe(true)
      yield* session.close
      while (!logs.lines.some((l) => l.includes("pending handshakes evicted"))) yield* Effect.sleep("10 millis")
    }).pipe(Effect.provide(NodeCrypto.layer), noHang("30 seconds", "the handshakes")))

  it.scopedLive("silent connections fill maxConnections: a new connection evicts the oldest silent one instead of being refused", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({ maxConnections: 4 }, (session) => session.serve((p) => Effect.succeed(p)))
      const silent = yield* Effect.forEach(
        Array.from({ length: 4 }, (_, i) => i),
        () => Effect.fork(rawClient(port, new Uint8Array(0), "wait")),
        { concurrency: 1 }
      )
      // Let the server accept all four before the real client comes.
      yield* Effect.sleep("200 millis")
      const session = yield* connectScoped({ port })
      expect(session.info.encrypted).toBe(true)
      // The oldest silent connection made room: it heard ALERT TIMEOUT (6 bytes).
      expect((yield* Fiber.join(silent[0]!)).received).toBe(6)
      yield* session.close
    }).pipe(Effect.provide(NodeCrypto.layer), noHang("30 seconds", "the handshakes")))
})

describe("the admission options are checked at the API edge", () => {
  for (const [field, value] of [
    ["maxHandshakes", 0],
    ["helloTimeout", "banana"],
    ["puzzleThreshold", Number.NaN],
    ["puzzleDifficulty", 23]
  ] as const) {
    it.live(`serve with ${field}: ${String(value)} fails InvalidArgument naming the field`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(serve({ port: 0, [field]: value }, () => Effect.void))
        expect(error).toBeInstanceOf(InvalidArgument)
        expect(error).toMatchObject({ _tag: "InvalidArgument", reason: "Option", field })
      }))
  }
})
