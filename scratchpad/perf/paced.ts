/**
 * Scratch: round trips paced 2 ms apart (as the stress's legitimate client sends them) against
 * `serve` in another process: p50/p99 of cvg, to compare with a raw TCP echo paced the same way.
 * `npx tsx scratchpad/perf/paced.ts [plain]`
 */
import { fork } from "node:child_process"
import { performance } from "node:perf_hooks"
import { Effect } from "effect"
import { connect, Packet, PacketType, serve } from "../../src/index.js"
if (process.argv[2] === "server") {
  Effect.runFork(serve({ port: 0, password: process.env.PW, onListen: (a) => Effect.sync(() => process.send!(a.port)) }, (s) =>
    s.serve((p) => Effect.succeed(new Packet({ id: p.id, type: PacketType.RESPONSE, payload: p.payload }, true)))))
} else {
  const child = fork(new URL(import.meta.url).pathname, ["server"], { execArgv: ["--import", "tsx"], env: { ...process.env, PW: "pw" } })
  child.on("message", async (port) => {
    const session = await Effect.runPromise(connect({ port: port as number, password: "pw" }))
    const payload = new Uint8Array(64)
    const rtts: Array<number> = []
    const end = performance.now() + Number(process.env.MS ?? 5000)
    const pace = process.env.PACE ?? "effect"
    while (performance.now() < end) {
      const t0 = performance.now()
      await Effect.runPromise(session.request(new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload }, true)))
      rtts.push(performance.now() - t0)
      if (pace === "effect") await Effect.runPromise(Effect.sleep(2))
      else await new Promise((r) => setTimeout(r, 2))
    }
    rtts.sort((a, b) => a - b)
    const p = (q: number) => rtts[Math.floor(q * (rtts.length - 1))]!.toFixed(2)
    console.log(`cvg paced 2ms (${pace}): n=${rtts.length} p50 ${p(0.5)} p90 ${p(0.9)} p99 ${p(0.99)} max ${p(1)} ms`)
    child.kill()
    process.exit(0)
  })
}
