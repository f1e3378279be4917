/** Scratch: opens N idle authenticated sessions to a fresh idle-server.ts and prints its memory per session. */
import { spawn } from "node:child_process"
import { Effect } from "effect"
import { connect } from "../../src/index.js"
import { buildSync } from "esbuild"
const bundleServer = () => {
  buildSync({ entryPoints: ["scratchpad/perf/idle-server.ts"], bundle: true, packages: "external", platform: "node", format: "esm", outfile: "node_modules/.cache/idle-server.bundle.mjs" })
  return "node_modules/.cache/idle-server.bundle.mjs"
}
const N = Number(process.argv[2] ?? 500)
// BUNDLE=1: the server runs from an esbuild bundle without tsx (tsx keeps function names, which costs ~256 B per named closure)
const serverArgs = process.env.BUNDLE ? ["--expose-gc", bundleServer()] : ["--expose-gc", "--import", "tsx", "scratchpad/perf/idle-server.ts"]
const child = spawn("node", serverArgs, { stdio: ["ignore", "pipe", "inherit"] })
const lines: Array<any> = []
let waiting: ((v: any) => void) | undefined
let buf = ""
child.stdout.on("data", (d) => { buf += d; let i; while ((i = buf.indexOf("\n")) >= 0) { const l = JSON.parse(buf.slice(0, i)); buf = buf.slice(i + 1); if (waiting) { const w = waiting; waiting = undefined; w(l) } else lines.push(l) } })
const next = () => new Promise<any>((r) => { const l = lines.shift(); if (l) r(l); else waiting = r })
const main = async () => {
  const { port } = await next()
  let before = await next()
  // WARM=n: n sessions opened and closed first, so that code compiled and memory the handshake path
  // reserves are in the baseline (as the stress run's "before" phase puts them).
  const warm = Number(process.env.WARM ?? 0)
  if (warm > 0) {
    const warmed = await Effect.runPromise(Effect.forEach(Array.from({ length: warm }), () => connect({ port, password: "pw" }), { concurrency: 8 }))
    await Effect.runPromise(Effect.forEach(warmed, (s) => s.close, { concurrency: 50 }))
    await new Promise((r) => setTimeout(r, 2000))
    child.kill("SIGUSR2")
    before = await next()
  }
  const sessions = await Effect.runPromise(Effect.forEach(Array.from({ length: N }), () => connect({ port, password: "pw" }), { concurrency: 8 }))
  await new Promise((r) => setTimeout(r, 1000))
  child.kill("SIGUSR2")
  const after = await next()
  if (process.env.SNAP) await new Promise((r) => setTimeout(r, 15000))
  const per = (k: string) => ((after[k] - before[k]) / N / 1024).toFixed(1)
  console.log(`N=${N} per session KB: rss ${per("rss")} heapTotal ${per("heapTotal")} heapUsed ${per("heapUsed")} external ${per("external")} arrayBuffers ${per("arrayBuffers")}`)
  await Effect.runPromise(Effect.forEach(sessions, (s) => s.close, { concurrency: 50 }))
  child.kill()
}
main()
