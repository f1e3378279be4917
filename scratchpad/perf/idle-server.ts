/** Scratch: a server that reports its memory on SIGUSR2; used by idle-clients.ts. */
import { Effect } from "effect"
import { serve } from "../../src/index.js"
const report = () => {
  globalThis.gc?.()
  const m = process.memoryUsage()
  process.stdout.write(JSON.stringify({ rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers }) + "\n")
}
import { writeHeapSnapshot } from "node:v8"
process.on("SIGUSR2", () => { report(); if (process.env.SNAP) writeHeapSnapshot(process.env.SNAP) })
Effect.runFork(serve({ port: Number(process.argv[2] ?? 0), password: "pw", onListen: (a) => Effect.sync(() => { console.log(JSON.stringify({ port: a.port })); report() }) }, (s) => (process.env.HANDLER === "never" ? Effect.never : s.serve((p) => Effect.succeed(p)))))
