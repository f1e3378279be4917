/** The server half of scratchpad/hs/flood.ts: `serve` with the given puzzleThreshold, prints its port. */
import { Effect } from "effect"
import { serve } from "../../src/index.js"

const threshold = Number(process.argv[2] ?? "16")
Effect.runFork(
  serve(
    {
      port: 0,
      puzzleThreshold: threshold,
      onListen: (address) => Effect.sync(() => console.log(`PORT ${address.port}`))
    },
    (session) => session.serve((p) => Effect.succeed(p))
  ).pipe(Effect.catchAllCause(() => Effect.void))
)
setInterval(() => console.log(`RSS ${Math.round(process.memoryUsage().rss / 1e6)}`), 500)
