/**
 * A session's time budgets (PROTOCOL.md §10.3), checked on the ticks of a watchdog (the server's
 * shared one, else one of the session's own that wakes four times per budget) rather than by a
 * sleeping fiber per session:
 * - idle: nothing has arrived for `idle` milliseconds;
 * - stall: a socket write has not completed for `stall` milliseconds — the peer stopped reading
 *   while we have data for it, and what we queue for it would otherwise wait forever.
 */
import { Clock, Effect, Option } from "effect"
import type { Scope } from "effect"
import { ProtocolError } from "../errors.js"
import type { SessionContext } from "./Context.js"
import { makeWatchdog, type Watchdog } from "./Watchdog.js"

export interface TimerOptions {
  readonly idle: Option.Option<number>
  readonly stall: Option.Option<number>
  readonly watchdog: Watchdog | undefined
  /** Messages received so far: read on each tick, so that receiving costs a counter, not a clock read. */
  readonly received: () => number
}

/** Watches the session until it ends or the scope closes; does nothing when neither budget is set. */
export const watchTimers = (ctx: SessionContext, options: TimerOptions): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { idle, received, stall } = options
    const budgets = [...Option.toArray(idle), ...Option.toArray(stall)]
    if (budgets.length === 0) return
    const watchdog = options.watchdog ?? (yield* makeWatchdog(Math.max(1, Math.min(...budgets) / 4)))
    let seen = received()
    let lastActivity = yield* Clock.currentTimeMillis
    const unwatch = watchdog.watch((now) => {
      if (ctx.ended !== undefined) return unwatch()
      if (received() !== seen) {
        seen = received()
        lastActivity = now
      }
      if (Option.isSome(idle) && now - lastActivity >= idle.value) {
        return ctx.fail(new ProtocolError({ reason: "Timeout", detail: "idle timeout" }))
      }
      const since = ctx.channel.writingSince()
      if (Option.isSome(stall) && since !== undefined && now - since >= stall.value) {
        return ctx.fail(new ProtocolError({ reason: "Timeout", detail: "the peer stopped reading (stall timeout)" }))
      }
    })
    yield* Effect.addFinalizer(() => Effect.sync(unwatch))
  })
