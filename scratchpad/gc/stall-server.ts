/** Scratch: the stress's stalled handler alone, for GC traces (`node --trace-gc` on its bundle). */
import { Effect } from "effect"
import { serve } from "../../src/index.js"
Effect.runFork(
  serve(
    { port: 0, password: "pw", ...(process.env.PLAIN ? { encryption: "preferred" as const } : {}), onListen: (address) => Effect.sync(() => console.log(`PORT ${address.port}`)) },
    (session) => (process.env.MODE === "echo" ? session.serve((p) => Effect.succeed(p)) : Effect.zipRight(session.receive(), Effect.never))
  ).pipe(Effect.catchAllCause(() => Effect.void))
)
// PAD=N: N MB of long-lived JS objects, to see how the old generation's size changes the GC pacing.
const pad: Array<Array<number>> = []
for (let i = 0; i < Number(process.env.PAD ?? 0) * 1024; i++) pad.push(Array.from({ length: 120 }, (_, j) => j + 0.5))
;(globalThis as { pad?: unknown }).pad = pad
