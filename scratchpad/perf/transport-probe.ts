// One process: a cvg server and client over loopback TCP. Sequential round trips (p50) and 256 in
// flight (req/s and CPU per request, process.cpuUsage). Usage: npx tsx scratchpad/perf/transport-probe.ts <worktree> <required|disabled> <seconds>
// (the worktree's own src/ is loaded, so a checkout of main beside this one measures the before)
import { Effect, Logger, LogLevel } from "effect"
import { performance } from "node:perf_hooks"
const tree = process.argv[2]!
const encryption = (process.argv[3] ?? "required") as "required" | "disabled"
const seconds = Number(process.argv[4] ?? 2)
type Lib = typeof import("../../src/index.js")
const lib = (await import(`${tree}/src/index.ts`)) as Lib
const { connect, serve, Packet, PacketType } = lib
type Session = import("../../src/index.js").Session
const packet = (id: number, type: import("../../src/index.js").PacketType, payload: Uint8Array) => new Packet({ id, type, payload }, true)
let port = 0
const ready = new Promise<void>((resolve) => {
  const program = serve({ port: 0, encryption, onListen: (a: { port: number }) => Effect.sync(() => { port = a.port; resolve() }) },
    (session: Session) => session.serve((p) => Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload))))
  Effect.runFork(program.pipe(Logger.withMinimumLogLevel(LogLevel.None)))
})
await ready
const session = await Effect.runPromise(connect({ port, encryption }))
const payload = new Uint8Array(64).fill(0x61)
const run = <A, E>(eff: Effect.Effect<A, E>) => Effect.runPromise(eff)
// warm-up
await run(Effect.repeatN(session.request(packet(1, PacketType.COMMAND, payload)), 2000))
// rtt
const lat: number[] = []
let deadline = performance.now() + seconds * 1000
await run(Effect.gen(function*() {
  while (performance.now() < deadline) {
    const t = performance.now()
    yield* session.request(packet(1, PacketType.COMMAND, payload))
    lat.push((performance.now() - t) * 1000)
  }
}))
lat.sort((a, b) => a - b)
// inflight
let completed = 0
const cpu0 = process.cpuUsage()
const start = performance.now()
deadline = start + seconds * 1000
const worker = Effect.gen(function*() {
  while (performance.now() < deadline) {
    yield* session.request(packet(session.nextId(), PacketType.COMMAND, payload))
    completed++
  }
})
await run(Effect.forEach(Array.from({ length: 256 }), () => worker, { concurrency: "unbounded", discard: true }))
const elapsed = (performance.now() - start) / 1000
const cpu = process.cpuUsage(cpu0)
console.log(JSON.stringify({ tree: tree.split("/").pop(), encryption, rttP50: +lat[Math.floor(lat.length / 2)]!.toFixed(1), rttN: lat.length, inflight: Math.round(completed / elapsed), cpuPerReq: +((cpu.user + cpu.system) / completed).toFixed(2) }))
process.exit(0)
