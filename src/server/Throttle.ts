/**
 * Throttling of online password guessing (PROTOCOL.md §10.5): a server counts failed password
 * attempts per source address and, past a threshold, refuses new connections from that address for a
 * time that doubles with each further failure, up to a cap.
 *
 * Why per address and not per account: cvg has one password per server, so the address is the only
 * thing that tells one guesser from another. IPv6 is counted per /64, the smallest block a single
 * subscriber usually holds, so that rotating through one's own /64 buys nothing; an IPv4-mapped IPv6
 * address counts as its IPv4 address, so that a dual-stack listener sees one client as one address.
 *
 * Guesses in parallel are bounded too, once an address has reached the threshold: it may then have
 * one handshake in progress at a time, so that each backoff lets through one guess, not hundreds side
 * by side. Below the threshold an address is not limited (many clients behind one address connect at
 * once, and one typo must not lock them out), so a guesser's very first burst is bounded only by the
 * server's `maxHandshakes`; it is forgotten only a day after its last failure, so such a burst cannot
 * be repeated every few minutes.
 *
 * The state is one bounded `Map` per server (made by `listen`), never a module global. When it is
 * full, the entry touched longest ago is dropped: an attacker has to bring that many fresh addresses
 * (or /64s) to flush a blocked one. A success from an address does not reset its count: behind a
 * NAT, one user's good password says nothing about another's guesses. Entries are forgotten a day (or
 * four caps, if longer) after their last failure.
 */
import { Clock, Duration, Effect, Option } from "effect"
import { isIPv4, isIPv6 } from "node:net"

export interface ThrottleOptions {
  /** Failed password attempts from one address before it is refused. Default 5. */
  readonly maxPasswordFailures?: number | undefined
  /** How long an address is refused after its `maxPasswordFailures`-th failure; doubled with each further one. Default 1 second. */
  readonly passwordBackoff?: Duration.DurationInput | undefined
  /** The longest refusal. Default 15 minutes. */
  readonly maxPasswordBackoff?: Duration.DurationInput | undefined
  /** Addresses remembered at once. Default 10 000. */
  readonly throttledAddresses?: number | undefined
}

export const DEFAULT_MAX_PASSWORD_FAILURES = 5
export const DEFAULT_PASSWORD_BACKOFF = Duration.seconds(1)
export const DEFAULT_MAX_PASSWORD_BACKOFF = Duration.minutes(15)
export const DEFAULT_THROTTLED_ADDRESSES = 10_000
/** How long an address's failures are remembered after its last one (at least four caps). */
const FORGET_AFTER_MILLIS = 24 * 60 * 60 * 1000

/** An address that is refused for now: blocked for `retryAfterMillis`, or (0) with too many handshakes in progress. */
export interface Refusal {
  readonly failures: number
  readonly retryAfterMillis: number
}

/** After a failure: how many the address has, and the refusal it now serves (0 when under the threshold). */
export interface Failure {
  readonly failures: number
  readonly backoffMillis: number
}

interface Entry {
  failures: number
  lastFailure: number
  blockedUntil: number
}

export interface Throttle {
  /** `Some` when connections from `key` are refused at this moment. */
  readonly refusal: (key: string) => Effect.Effect<Option.Option<Refusal>>
  /** A handshake from `key` starts / has ended (whatever its outcome, after `failed` for a wrong password). */
  readonly begin: (key: string) => void
  readonly end: (key: string) => void
  /** Counts one failed password attempt from `key`. */
  readonly failed: (key: string) => Effect.Effect<Failure>
  /** Addresses remembered (for tests and metrics). */
  readonly size: () => number
}

export const makeThrottle = (options: ThrottleOptions = {}): Throttle => {
  const threshold = options.maxPasswordFailures ?? DEFAULT_MAX_PASSWORD_FAILURES
  const base = Duration.toMillis(options.passwordBackoff ?? DEFAULT_PASSWORD_BACKOFF)
  const cap = Math.max(base, Duration.toMillis(options.maxPasswordBackoff ?? DEFAULT_MAX_PASSWORD_BACKOFF))
  const capacity = options.throttledAddresses ?? DEFAULT_THROTTLED_ADDRESSES
  const forgetAfter = Math.max(4 * cap, FORGET_AFTER_MILLIS)
  const entries = new Map<string, Entry>()
  /** Handshakes in progress per address: bounded by the server's connections, each holding at most one. */
  const inFlight = new Map<string, number>()

  /** The entry for `key`, unless it has been forgotten by now. */
  const current = (key: string, now: number): Entry | undefined => {
    const entry = entries.get(key)
    if (entry === undefined) return undefined
    if (now - entry.lastFailure > forgetAfter && now >= entry.blockedUntil) {
      entries.delete(key)
      return undefined
    }
    return entry
  }

  const backoffFor = (failures: number): number =>
    failures < threshold ? 0 : Math.min(cap, base * 2 ** Math.min(failures - threshold, 52))

  return {
    refusal: (key) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = current(key, now)
        const failures = entry?.failures ?? 0
        if (entry !== undefined && now < entry.blockedUntil) {
          return Option.some({ failures, retryAfterMillis: entry.blockedUntil - now })
        }
        return failures >= threshold && (inFlight.get(key) ?? 0) >= 1
          ? Option.some({ failures, retryAfterMillis: 0 })
          : Option.none()
      }),
    begin: (key) => void inFlight.set(key, (inFlight.get(key) ?? 0) + 1),
    end: (key) => {
      const left = (inFlight.get(key) ?? 0) - 1
      if (left > 0) inFlight.set(key, left)
      else inFlight.delete(key)
    },
    failed: (key) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = current(key, now) ?? { failures: 0, lastFailure: now, blockedUntil: 0 }
        entry.failures++
        entry.lastFailure = now
        const backoffMillis = backoffFor(entry.failures)
        if (backoffMillis > 0) entry.blockedUntil = Math.max(entry.blockedUntil, now + backoffMillis)
        // Re-inserted so that the Map's order is the order of last failure: the first key is the one to drop.
        entries.delete(key)
        if (entries.size >= capacity) {
          const oldest = entries.keys().next()
          if (oldest.done !== true) entries.delete(oldest.value)
        }
        entries.set(key, entry)
        return { failures: entry.failures, backoffMillis }
      }),
    size: () => entries.size
  }
}

/** The eight 16-bit groups of an IPv6 address, or undefined when it is not one. */
const ipv6Groups = (address: string): ReadonlyArray<number> | undefined => {
  if (!isIPv6(address)) return undefined
  // An embedded IPv4 tail (`::ffff:1.2.3.4`, `64:ff9b::1.2.3.4`) is written as its two groups first.
  const lastColon = address.lastIndexOf(":")
  const tail = address.slice(lastColon + 1)
  let text = address
  if (isIPv4(tail)) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split(".").map(Number)
    text = `${address.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = text.split("::")
  const parse = (part: string | undefined) => (part === undefined || part === "" ? [] : part.split(":").map((g) => parseInt(g, 16)))
  const left = parse(halves[0])
  const right = parse(halves[1])
  const zeros = halves.length === 2 ? 8 - left.length - right.length : 0
  const groups = [...left, ...Array.from({ length: zeros }, () => 0), ...right]
  return groups.length === 8 ? groups : undefined
}

/**
 * The throttle's key for a peer's IP address: IPv4 as is, an IPv4-mapped IPv6 address as its IPv4
 * address, other IPv6 addresses as their /64 (`2001:db8:0:1::/64`). Undefined when there is no
 * address (an in-memory socket), which is never throttled.
 */
export const addressKey = (address: string | undefined): string | undefined => {
  if (address === undefined || address === "") return undefined
  const plain = address.replace(/%.*$/, "")
  if (isIPv4(plain)) return plain
  const groups = ipv6Groups(plain)
  if (groups === undefined) return plain
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0xffff && g6 !== undefined && g7 !== undefined) {
    return `${g6 >> 8}.${g6 & 0xff}.${g7 >> 8}.${g7 & 0xff}`
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`
}
