/**
 * A server program run in the background for a bench system: the promise resolves once it has
 * announced its port, `close` interrupts it, and a failure before then rejects. Its warnings (failed
 * handshakes under a flood) are noise here: real failures surface on the client side anyway.
 */
import { Effect, Exit, Fiber, Logger, LogLevel } from "effect"
import type { BenchServer } from "./types.js"

export const startDaemon = (
  program: (announce: (port: number) => Effect.Effect<void>) => Effect.Effect<unknown, unknown>
): Promise<BenchServer> =>
  new Promise<BenchServer>((resolve, reject) => {
    let fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
    fiber = Effect.runFork(
      program((port) =>
        Effect.sync(() =>
          resolve({
            port,
            close: async () => {
              if (fiber !== undefined) await Effect.runPromise(Fiber.interrupt(fiber))
            }
          })
        )
      ).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
    )
    fiber.addObserver((exit) => {
      if (Exit.isFailure(exit)) reject(new Error(`server ended: ${String(exit.cause)}`))
    })
  })
