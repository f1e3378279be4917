/**
 * A session's time budgets (PROTOCOL.md §10.3), checked on the ticks of a watchdog (the server's
 * shared one, else one of the session's own that wakes four times per budget) rather than by a
 * sleeping fiber per session:
 * - idle: no application message has arrived for `idle` milliseconds;
 * - stall: a socket write has not completed for `stall` milliseconds — the peer stopped reading
 *   while we have data for it, and what we queue for it would otherwise wait forever;
 * - keep-alive (PROTOCOL.md §7.4): no frame of any kind has arrived for `keepAlive` milliseconds, so
 *   we PING; if still nothing has arrived `keepAlive` later, the peer stopped answering.
 *
 * Idle and keep-alive measure different things on purpose (§10.3): idle counts application messages
 * only (`received`, which PING and PONG never reach), keep-alive counts every frame (`heard`). So a
 * healthy but idle session still meets its idle timeout, and keep-alive traffic never hides one.
 */
import { Clock, Effect, Option } from "effect"
import type { Scope } from "effect"
import { ConnectionClosed, ProtocolError } from "../errors.js"
import type { SessionContext } from "./Context.js"
import { makeWatchdog, type Watchdog } from "./Watchdog.js"

export interface TimerOptions {
  readonly idle: Option.Option<number>
  readonly stall: Option.Option<number>
  readonly keepAlive: Option.Option<number>
  readonly watchdog: Watchdog | undefined
  /** Messages received so far: read on each tick, so that receiving costs a counter, not a clock read. */
  readonly received: () => number
}

/**
 * Watches the session until it ends or the returned function is called (the session's scope does,
 * as it closes); does nothing when no budget is set.
 */
export const watchTimers = (ctx: SessionContext, options: TimerOptions): Effect.Effect<() => void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { idle, keepAlive, received, stall } = options
    const { channel } = ctx
    const budgets = [...Option.toArray(idle), ...Option.toArray(stall), ...Option.toArray(keepAlive)]
    if (budgets.length === 0) return unwatched
    const watchdog = options.watchdog ?? (yield* makeWatchdog(Math.max(1, Math.min(...budgets) / 4)))
    let seen = received()
    let lastActivity = yield* Clock.currentTimeMillis
    let heard = channel.heard()
    let lastHeard = lastActivity
    /** When our unanswered PING went out; at most one is outstanding. */
    let pingedAt: number | undefined
    const unwatch = watchdog.watch((now) => {
      if (ctx.ended !== undefined) return unwatch()
      if (received() !== seen) {
        seen = received()
        lastActivity = now
      }
      if (Option.isSome(keepAlive)) {
        // Any frame answers a PING, not only its PONG: a peer busy sending data is alive (§7.4).
        if (channel.heard() !== heard) {
          heard = channel.heard()
          lastHeard = now
          pingedAt = undefined
        }
        if (pingedAt !== undefined && now - pingedAt >= keepAlive.value) {
          return channel.fail(new ConnectionClosed({ reason: "Timeout" }))
        }
        if (pingedAt === undefined && now - lastHeard >= keepAlive.value) {
          pingedAt = now
          channel.ping()
        }
      }
      if (Option.isSome(idle) && now - lastActivity >= idle.value) {
        return ctx.fail(new ProtocolError({ reason: "Timeout", detail: "idle timeout" }))
      }
      const since = ctx.channel.writingSince()
      if (Option.isSome(stall) && since !== undefined && now - since >= stall.value) {
        return ctx.fail(new ProtocolError({ reason: "Timeout", detail: "the peer stopped reading (stall timeout)" }))
      }
    })
    return unwatch
  })

const unwatched = () => {}
