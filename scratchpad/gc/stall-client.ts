/**
 * Scratch: sends 1 MiB packets to scratchpad/gc/stall-server.ts (bundled, run under `node --trace-gc`)
 * for a fixed number of bytes, reconnecting when the server ends the session, then prints how many
 * full GCs the server ran and their pauses. `npx tsx scratchpad/gc/stall-client.ts [MiB] [echo]`
 */
import { spawn, spawnSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { Effect } from "effect"
import { connect, Packet, PacketType } from "../../src/index.js"
const MiB_TOTAL = Number(process.argv[2] ?? 512)
const mode = process.argv[3] ?? "stall"
const out = "node_modules/.cache/stall-server.cjs"
spawnSync("node_modules/.bin/esbuild", ["scratchpad/gc/stall-server.ts", "--bundle", "--platform=node", "--format=cjs", "--target=node20", `--outfile=${out}`, "--log-level=warning"], { stdio: "inherit" })
const child = spawn("node", [...(process.env.FLAGS ?? "--trace-gc").split(" "), out], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, MODE: mode } })
let text = ""
const port = new Promise<number>((resolve) => child.stdout.on("data", (d) => { text += d; const m = /PORT (\d+)/.exec(text); if (m) resolve(Number(m[1])) }))
const payload = new Uint8Array(1 << 20)
const main = async () => {
  const p = await port
  const started = Date.now()
  let sent = 0, sessions = 0
  while (sent < MiB_TOTAL) {
    const s = await Effect.runPromise(connect({ port: p, password: "pw", chunkSize: Number(process.env.CHUNK ?? 256 * 1024), ...(process.env.PLAIN ? { encryption: "disabled" as const } : {}) }))
    sessions++
    const r = await Effect.runPromise(Effect.either(Effect.gen(function*() {
      while (sent < MiB_TOTAL) {
        if (mode === "echo") yield* s.request(new Packet({ id: s.nextId(), type: PacketType.COMMAND, payload }, true))
        else yield* s.send(new Packet({ id: 1, type: PacketType.COMMAND, payload }, true))
        sent++
      }
    })))
    await Effect.runPromise(Effect.ignore(s.close))
    void r
  }
  const seconds = (Date.now() - started) / 1000
  await new Promise((r) => setTimeout(r, 300))
  child.kill()
  const mcs = text.split("\n").filter((l) => l.includes("Mark-Compact") && !l.includes("(reduce)"))
  const pauses = mcs.map((l) => Number(/MB, ([\d.]+) \//.exec(l)?.[1] ?? 0))
  const steps = mcs.map((l) => Number(/\+ ([\d.]+) ms in/.exec(l)?.[1] ?? 0))
  const scav = text.split("\n").filter((l) => l.includes("Scavenge")).length
  const sorted = [...pauses].sort((a, b) => a - b)
  console.log(`${MiB_TOTAL} MiB in ${seconds.toFixed(1)} s (${sessions} sessions): ${mcs.length} full GCs, pauses sum ${pauses.reduce((a, b) => a + b, 0).toFixed(0)} ms, max ${sorted.at(-1)?.toFixed(1)}, incremental steps ${steps.reduce((a, b) => a + b, 0).toFixed(0)} ms; ${scav} scavenges`)
  if (process.env.DUMP) writeFileSync(process.env.DUMP, text)
}
main()
