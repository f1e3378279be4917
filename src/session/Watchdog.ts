/**
 * The clock behind the sessions' time budgets (PROTOCOL.md §10.3): one fiber that wakes every `tick`
 * and runs the checks of every session registered with it, instead of a sleeping fiber per session.
 * A server shares one among all its connections; a client session gets its own.
 */
import { Clock, Duration, Effect } from "effect"
import type { Scope } from "effect"

export interface Watchdog {
  /** Runs `check` with the current `Clock` time on every tick until the returned function is called. */
  readonly watch: (check: (now: number) => void) => () => void
}

export const makeWatchdog = (tick: Duration.DurationInput): Effect.Effect<Watchdog, never, Scope.Scope> =>
  Effect.gen(function*() {
    const checks = new Set<(now: number) => void>()
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(
      Effect.sleep(tick),
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          for (const check of checks) check(now)
        }))
    )))
    return {
      watch: (check) => {
        checks.add(check)
        return () => void checks.delete(check)
      }
    }
  })

/** A server's watchdog ticks four times a second: its budgets are seconds long, so each fires at most 250 ms late. */
export const SERVER_TICK = Duration.millis(250)
