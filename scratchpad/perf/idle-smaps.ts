/** Scratch: idle-clients.ts, but copies the server's /proc/PID/smaps before and after N sessions, to see which mappings grow. */
import { spawn } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { buildSync } from "esbuild"
import { Effect } from "effect"
import { connect } from "../../src/index.js"
const N = Number(process.argv[2] ?? 1000)
buildSync({ entryPoints: ["scratchpad/perf/idle-server.ts"], bundle: true, packages: "external", platform: "node", format: "esm", outfile: "node_modules/.cache/idle-server.bundle.mjs" })
const child = spawn("node", ["--expose-gc", "node_modules/.cache/idle-server.bundle.mjs"], { stdio: ["ignore", "pipe", "inherit"] })
let buf = ""
const lines: Array<string> = []
child.stdout.on("data", (d) => { buf += d; let i; while ((i = buf.indexOf("\n")) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1) } })
const wait = async (n: number) => { while (lines.length < n) await new Promise((r) => setTimeout(r, 20)) }
const main = async () => {
  await wait(2)
  const { port } = JSON.parse(lines[0]!)
  writeFileSync("/tmp/smaps.before", readFileSync(`/proc/${child.pid}/smaps`))
  const sessions = await Effect.runPromise(Effect.forEach(Array.from({ length: N }), () => connect({ port, password: "pw" }), { concurrency: 8 }))
  await new Promise((r) => setTimeout(r, 1000))
  child.kill("SIGUSR2")
  await wait(3)
  writeFileSync("/tmp/smaps.after", readFileSync(`/proc/${child.pid}/smaps`))
  console.log(lines[1], "\n", lines[2])
  await Effect.runPromise(Effect.forEach(sessions, (s) => s.close, { concurrency: 50 }))
  child.kill()
}
main()
