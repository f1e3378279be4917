/** Scratch: opens N idle sessions to promoted-server.ts (MAJOR=1|0) and prints its sampled allocations by site. */
import { spawn } from "node:child_process"
import { Effect } from "effect"
import { connect } from "../../src/index.js"

const N = Number(process.argv[2] ?? 300)
const child = spawn("node", [...(process.env.SERVER_FLAGS?.split(" ") ?? []), "--import", "tsx", "scratchpad/perf/promoted-server.ts"], { stdio: ["ignore", "pipe", "inherit"], env: process.env })
let buf = ""
const lines: Array<string> = []
let waiting: ((l: string) => void) | undefined
child.stdout.on("data", (d) => {
  buf += d
  let i
  while ((i = buf.indexOf("\n")) >= 0) {
    const l = buf.slice(0, i)
    buf = buf.slice(i + 1)
    if (waiting) { const w = waiting; waiting = undefined; w(l) } else lines.push(l)
  }
})
const next = () => new Promise<string>((r) => { const l = lines.shift(); if (l !== undefined) r(l); else waiting = r })
const { port } = JSON.parse(await next())
const sessions = await Effect.runPromise(Effect.forEach(Array.from({ length: N }), () => connect({ port, ...(process.env.NOPW ? {} : { password: "pw" }) }), { concurrency: 4 }))
await new Promise((r) => setTimeout(r, 1000))
child.kill("SIGUSR2")
const { total, top } = JSON.parse(await next())
console.log(`sampled ${(total / 1e6).toFixed(1)} MB, ${(total / N / 1e3).toFixed(1)} KB per session`)
for (const [site, bytes] of top) console.log(`${(bytes / N / 1e3).toFixed(2).padStart(7)} KB/session  ${site}`)
await Effect.runPromise(Effect.forEach(sessions, (s) => s.close, { concurrency: 50, discard: true }))
child.kill()
