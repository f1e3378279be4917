/**
 * The legitimate client: a few handshake loops (connect, handshake, close, again) and one open
 * session sending a 64-byte request at a steady pace. Every attempt is recorded with its wall-clock
 * time, so that main.ts can cut the samples into before / during / after the attack.
 */
import { Duration, Effect, Fiber, Option } from "effect"
import { performance } from "node:perf_hooks"
import { connect, Packet, PacketType } from "../src/index.js"
import type { Session } from "../src/index.js"
import type { HandshakeSample, LegitOptions, LegitSamples, RttSample } from "./protocol.js"

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export const now = (): number => performance.timeOrigin + performance.now()

/** `Tag reason` of a typed error, else the message: what the report counts failures by. */
export const errorKind = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "_tag" in error) {
    const reason = "reason" in error && typeof error.reason === "string" ? ` ${error.reason}` : ""
    return `${String(error._tag)}${reason}`
  }
  return error instanceof Error ? error.message.slice(0, 80) : String(error).slice(0, 80)
}

export const count = (table: Record<string, number>, key: string, by = 1) => {
  table[key] = (table[key] ?? 0) + by
}

/** After a failed attempt: a refused connection fails at once, and must not become a busy loop. */
const FAILURE_BACKOFF = Duration.millis(20)
const PAYLOAD = new Uint8Array(64)

export const startLegit = async (options: LegitOptions) => {
  const handshakes: Array<HandshakeSample> = []
  const handshakeErrors: Record<string, number> = {}
  const rtt: Array<RttSample> = []
  const rttErrors: Record<string, number> = {}
  let rttReconnects = 0
  let paused = false
  const deadline = now() + options.lifetimeMs
  const target = { port: options.port, password: options.password }

  const handshakeLoop = Effect.gen(function*() {
    while (now() < deadline) {
      if (paused) {
        yield* Effect.sleep(Duration.millis(20))
        continue
      }
      const start = now()
      const opened = yield* Effect.either(connect(target))
      const end = now()
      if (opened._tag === "Right") {
        handshakes.push([end, end - start, 1])
        yield* opened.right.close
      } else {
        handshakes.push([end, end - start, 0])
        count(handshakeErrors, errorKind(opened.left))
        yield* Effect.sleep(FAILURE_BACKOFF)
      }
    }
  })

  const openRttSession = Effect.gen(function*() {
    while (now() < deadline) {
      const opened = yield* Effect.either(connect(target))
      if (opened._tag === "Right") return Option.some(opened.right)
      count(rttErrors, `open: ${errorKind(opened.left)}`)
      yield* Effect.sleep(Duration.millis(200))
    }
    return Option.none<Session>()
  })

  const first = await Effect.runPromise(openRttSession)
  const pause = (value: boolean) => {
    paused = value
  }
  if (Option.isNone(first)) {
    return { error: "could not open the round-trip session", pause, stop: async (): Promise<LegitSamples> => ({ handshakes, handshakeErrors, rtt, rttErrors, rttReconnects }) }
  }

  const rttLoop = Effect.gen(function*() {
    let session = first.value
    let next = now()
    while (now() < deadline) {
      const start = now()
      const answer = yield* session.request(new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload: PAYLOAD }, true)).pipe(
        Effect.timeoutFail({ duration: Duration.millis(options.rttTimeoutMs), onTimeout: () => new Error("timeout") }),
        Effect.either
      )
      const end = now()
      if (answer._tag === "Right") {
        rtt.push([start, (end - start) * 1000, 1])
      } else {
        rtt.push([start, (end - start) * 1000, 0])
        count(rttErrors, errorKind(answer.left))
        // A session that failed (as opposed to a slow answer) is gone: open another one.
        if (!(answer.left instanceof Error && answer.left.message === "timeout")) {
          yield* session.close
          const again = yield* openRttSession
          if (Option.isNone(again)) return
          session = again.value
          rttReconnects++
        }
      }
      next = Math.max(next + options.rttIntervalMs, now())
      const wait = next - now()
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
    }
    yield* session.close
  })

  const fibers = [
    Effect.runFork(rttLoop),
    ...Array.from({ length: options.handshakeConcurrency }, () => Effect.runFork(handshakeLoop))
  ]
  const stop = async (): Promise<LegitSamples> => {
    await Effect.runPromise(Fiber.interruptAll(fibers))
    return { handshakes, handshakeErrors, rtt, rttErrors, rttReconnects }
  }
  return { pause, stop }
}
