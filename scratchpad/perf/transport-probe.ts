// One process: a cvg server and client over loopback TCP. Sequential round trips (p50) and 256 in
// flight (req/s and CPU per request, process.cpuUsage). Usage: npx tsx probe.ts <tree> <encryption> <seconds>
import { Effect, Fiber, Logger, LogLevel } from "effect"
import { performance } from "node:perf_hooks"
const tree = process.argv[2]!
const encryption = (process.argv[3] ?? "required") as "required" | "disabled"
const seconds = Number(process.argv[4] ?? 2)
const lib = await import(`${tree}/src/index.ts`)
const { connect, serve, Packet, PacketType } = lib
const packet = (id: number, type: number, payload: Uint8Array) => new Packet({ id, type, payload }, true)
let port = 0
const ready = new Promise<void>((resolve) => {
  const program = serve({ port: 0, encryption, onListen: (a: { port: number }) => Effect.sync(() => { port = a.port; resolve() }) },
    (session: any) => session.serve((p: any) => Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload))))
  Effect.runFork(program.pipe(Logger.withMinimumLogLevel(LogLevel.None)))
})
await ready
const session: any = await Effect.runPromise(connect({ port, encryption }))
const payload = new Uint8Array(64).fill(0x61)
const run = (eff: any) => Effect.runPromise(eff as Effect.Effect<any>)
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
const rttCpu0 = process.cpuUsage()
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
void rttCpu0
console.log(JSON.stringify({ tree: tree.split("/").pop(), encryption, rttP50: +lat[Math.floor(lat.length / 2)]!.toFixed(1), rttN: lat.length, inflight: Math.round(completed / elapsed), cpuPerReq: +((cpu.user + cpu.system) / completed).toFixed(2) }))
process.exit(0)
