/**
 * Online password guessing is throttled (issue 12; PROTOCOL.md §10.5): the throttle's rules under
 * Effect's TestClock, its address keys, and a guesser over real TCP from its own loopback address,
 * refused with ALERT THROTTLED (`PeerAlert("Throttled")`) while a client from another address is
 * served, until the backoff has passed.
 */
import { NodeSocket } from "@effect/platform-node"
import * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, HashMap, Logger, Metric, MetricState, Option, Queue, TestClock } from "effect"
import * as Client from "../src/client/Client.js"
import * as NodeCrypto from "../src/crypto/NodeCrypto.js"
import { addressKey, makeThrottle } from "../src/server/Throttle.js"
import * as Server from "../src/server/Server.js"
import { startServer } from "./support/sessions.js"
import { typedError } from "./support/pair.js"

describe("the throttle's rules (TestClock)", () => {
  it.effect("refused from the Nth failure, for a backoff that doubles with each further failure, up to the cap", () =>
    Effect.gen(function*() {
      const throttle = makeThrottle({ maxPasswordFailures: 3, passwordBackoff: "10 seconds", maxPasswordBackoff: "35 seconds" })
      const refused = () => Effect.map(throttle.refusal("192.0.2.1"), Option.getOrUndefined)
      expect(yield* throttle.failed("192.0.2.1")).toEqual({ failures: 1, backoffMillis: 0 })
      expect(yield* throttle.failed("192.0.2.1")).toEqual({ failures: 2, backoffMillis: 0 })
      expect(yield* refused()).toBeUndefined()
      expect(yield* throttle.failed("192.0.2.1")).toEqual({ failures: 3, backoffMillis: 10_000 })
      expect(yield* refused()).toEqual({ failures: 3, retryAfterMillis: 10_000 })
      // Another address is not affected.
      expect(Option.isNone(yield* throttle.refusal("192.0.2.2"))).toBe(true)
      yield* TestClock.adjust("9999 millis")
      expect(yield* refused()).toEqual({ failures: 3, retryAfterMillis: 1 })
      yield* TestClock.adjust("1 millis")
      expect(yield* refused()).toBeUndefined()
      expect(yield* throttle.failed("192.0.2.1")).toEqual({ failures: 4, backoffMillis: 20_000 })
      yield* TestClock.adjust("20 seconds")
      // 40 s would be next; the cap is 35 s.
      expect(yield* throttle.failed("192.0.2.1")).toEqual({ failures: 5, backoffMillis: 35_000 })
      yield* TestClock.adjust("35 seconds")
      expect(yield* throttle.failed("192.0.2.1")).toEqual({ failures: 6, backoffMillis: 35_000 })
    }))

  it.effect("guesses in parallel: below the threshold unlimited, past it one handshake at a time", () =>
    Effect.gen(function*() {
      const throttle = makeThrottle({ maxPasswordFailures: 3, passwordBackoff: "10 seconds" })
      const refused = Effect.map(throttle.refusal("192.0.2.1"), Option.isSome)
      // Under the threshold many clients behind one address may connect at once, a typo or two included.
      yield* throttle.failed("192.0.2.1")
      yield* throttle.failed("192.0.2.1")
      for (let i = 0; i < 10; i++) {
        expect(yield* refused).toBe(false)
        throttle.begin("192.0.2.1")
      }
      for (let i = 0; i < 10; i++) throttle.end("192.0.2.1")
      yield* throttle.failed("192.0.2.1")
      yield* TestClock.adjust("10 seconds")
      // Past the threshold, once the backoff has passed: one handshake at a time, never none.
      expect(yield* refused).toBe(false)
      throttle.begin("192.0.2.1")
      expect(yield* refused).toBe(true)
      expect(Option.isNone(yield* throttle.refusal("192.0.2.2"))).toBe(true)
      throttle.end("192.0.2.1")
      expect(yield* refused).toBe(false)
    }))

  it.effect("an address is forgotten a day after its last failure", () =>
    Effect.gen(function*() {
      const throttle = makeThrottle({ maxPasswordFailures: 2, passwordBackoff: "1 second", maxPasswordBackoff: "1 minute" })
      yield* throttle.failed("192.0.2.1")
      yield* throttle.failed("192.0.2.1")
      yield* TestClock.adjust("24 hours")
      expect(yield* throttle.failed("192.0.2.1")).toEqual({ failures: 3, backoffMillis: 2000 })
      yield* TestClock.adjust("86401 seconds")
      expect(Option.isNone(yield* throttle.refusal("192.0.2.1"))).toBe(true)
      expect(yield* throttle.failed("192.0.2.1")).toEqual({ failures: 1, backoffMillis: 0 })
    }))

  it.effect("the table is bounded: past its capacity the address whose last failure is oldest is dropped", () =>
    Effect.gen(function*() {
      const throttle = makeThrottle({ maxPasswordFailures: 1, passwordBackoff: "1 hour", throttledAddresses: 3 })
      for (const address of ["192.0.2.1", "192.0.2.2", "192.0.2.3"]) yield* throttle.failed(address)
      // .1 fails again, so .2 is now the oldest.
      yield* throttle.failed("192.0.2.1")
      yield* throttle.failed("192.0.2.4")
      expect(throttle.size()).toBe(3)
      expect(Option.isNone(yield* throttle.refusal("192.0.2.2"))).toBe(true)
      for (const address of ["192.0.2.1", "192.0.2.3", "192.0.2.4"]) expect(Option.isSome(yield* throttle.refusal(address))).toBe(true)
    }))

  it("address keys: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 per /64, no address never throttled", () => {
    expect(addressKey("192.0.2.7")).toBe("192.0.2.7")
    expect(addressKey("::ffff:192.0.2.7")).toBe("192.0.2.7")
    expect(addressKey("::FFFF:c000:207")).toBe("192.0.2.7")
    expect(addressKey("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64")
    expect(addressKey("2001:db8:1:2:ffff::1")).toBe("2001:db8:1:2::/64")
    expect(addressKey("2001:0db8:0000:0002::")).toBe("2001:db8:0:2::/64")
    expect(addressKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64")
    expect(addressKey("::1")).toBe("0:0:0:0::/64")
    expect(addressKey(undefined)).toBeUndefined()
  })
})

const RIGHT = "correct horse battery staple"

/** An error's tag and reason (and phase), compared as plain fields: a cause may hold its span, which deep equality would walk forever. */
const fields = (error: unknown) => {
  const record = typeof error === "object" && error !== null ? (error as Record<string, unknown>) : {}
  return { tag: record._tag, reason: record.reason, ...(record.phase === undefined ? {} : { phase: record.phase }) }
}

/** A cvg client over TCP whose connection leaves from `localAddress` (any 127.0.0.0/8 address on loopback). */
const connectFrom = (localAddress: string, port: number, password: string) =>
  Effect.gen(function*() {
    const socket = yield* NodeSocket.makeNet({ host: "127.0.0.1", port, localAddress, noDelay: true })
    return yield* Client.session({ password }).pipe(Effect.provideService(Socket.Socket, socket), Effect.provide(NodeCrypto.layer))
  }).pipe(Effect.scoped, Effect.exit)

const refusedThrottled = () =>
  Effect.map(Metric.snapshot, (pairs) =>
    pairs.reduce((sum, pair) => {
      const throttled = pair.metricKey.name === "cvg.connections.refused" &&
        pair.metricKey.tags.some((tag) => tag.key === "reason" && tag.value === "throttled")
      return sum + (throttled && MetricState.isCounterState(pair.metricState) ? Number(pair.metricState.count) : 0)
    }, 0))

describe("throttling over TCP", () => {
  it.scoped("a guesser is refused with THROTTLED after N wrong passwords; another address is served; the backoff expires", () =>
    Effect.gen(function*() {
      // Each throttle line, as the server logs it: the test waits for them instead of for time.
      const lines = yield* Queue.unbounded<Record<string, unknown>>()
      // And each failed connection's line, logged once the server has counted its outcome: the next
      // guess waits for it, as a guesser's handshake in progress counts against its address.
      const failures = yield* Queue.unbounded<string>()
      const logger = Logger.make(({ annotations, message }) => {
        const text = Array.isArray(message) ? message.join(" ") : String(message)
        if (text.includes("password attempts throttled")) Queue.unsafeOffer(lines, { text, ...Object.fromEntries(HashMap.toEntries(annotations)) })
        if (text.includes("connection failed")) Queue.unsafeOffer(failures, text)
      })
      yield* Effect.gen(function*() {
        const { port } = yield* startServer(
          { password: RIGHT, maxPasswordFailures: 3, passwordBackoff: "10 seconds", maxPasswordBackoff: "1 minute" },
          (session) => session.closed
        )
        const refusedBefore = yield* refusedThrottled()
        for (let i = 0; i < 3; i++) {
          expect(fields(typedError(yield* connectFrom("127.0.0.2", port, `guess ${i}`), "guess"))).toMatchObject({ tag: "AuthFailed", reason: "WrongPassword" })
          yield* Queue.take(failures)
        }
        // The third failure starts the refusal, and the server says so with the address and backoff.
        const first = yield* Queue.take(lines)
        expect(first).toMatchObject({ address: "127.0.0.2", failures: 3, backoffMillis: 10_000 })
        expect(String(first.text)).not.toContain("guess")

        const refused = typedError(yield* connectFrom("127.0.0.2", port, RIGHT), "throttled")
        expect(fields(refused)).toEqual({ tag: "PeerAlert", reason: "Throttled", phase: "Handshake" })
        expect((yield* refusedThrottled()) - refusedBefore).toBe(1)
        // The right password from another address is served.
        expect(Exit.isSuccess(yield* connectFrom("127.0.0.3", port, RIGHT))).toBe(true)

        // Once the backoff has passed (on the TestClock) the guesser may try again; its next failure
        // doubles the refusal.
        yield* TestClock.adjust("10 seconds")
        expect(fields(typedError(yield* connectFrom("127.0.0.2", port, "guess 4"), "after the backoff"))).toMatchObject({ tag: "AuthFailed", reason: "WrongPassword" })
        yield* Queue.take(failures)
        expect(yield* Queue.take(lines)).toMatchObject({ address: "127.0.0.2", failures: 4, backoffMillis: 20_000 })
        expect(fields(typedError(yield* connectFrom("127.0.0.2", port, RIGHT), "throttled again"))).toMatchObject({ tag: "PeerAlert", reason: "Throttled" })
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
    }), 30_000)

  it.scoped("without a password nothing is throttled (there is nothing to guess)", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({ maxPasswordFailures: 1 }, (session) => session.closed)
      for (let i = 0; i < 3; i++) {
        // The client's password makes it fail (ServerUnproven), never the server's throttle.
        expect(fields(typedError(yield* connectFrom("127.0.0.4", port, "pw"), "unproven"))).toMatchObject({ tag: "AuthFailed", reason: "ServerUnproven" })
      }
    }))

  for (
    const [field, value] of [
      ["maxPasswordFailures", 0],
      ["maxPasswordFailures", 2.5],
      ["passwordBackoff", "soon"],
      ["maxPasswordBackoff", -1],
      ["throttledAddresses", 0]
    ] as const
  ) {
    it.scoped(`${field}: ${JSON.stringify(value)} is InvalidArgument naming it`, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Server.listen({ port: 0, password: RIGHT, [field]: value }))
        expect(typedError(exit, "listen")).toMatchObject({ _tag: "InvalidArgument", reason: "Option", field })
      }))
  }
})
