/** Scratch: hot-path cost in one process over loopback TCP: sequential round trips, then 256 requests in flight. */
import { Deferred, Effect, Fiber } from "effect"
import { connect, Packet, PacketType, serve } from "../../src/index.js"
const seq = Number(process.argv[2] ?? 5000)
const par = Number(process.argv[3] ?? 40000)
const prog = Effect.gen(function*() {
  const port = yield* Deferred.make<number>()
  const server = yield* Effect.fork(serve({ port: 0, password: "pw", onListen: (a) => Deferred.succeed(port, a.port) }, (s) => s.serve((p) => Effect.succeed(p))))
  const s = yield* connect({ port: yield* Deferred.await(port), password: "pw" })
  const payload = new Uint8Array(64)
  const req = (i: number) => s.request(new Packet({ id: (i % 1000000) + 1, type: PacketType.EXCHANGE, payload }))
  yield* Effect.forEach(Array.from({ length: 500 }, (_, i) => i), req, { discard: true })
  let t0 = performance.now()
  let c0 = process.cpuUsage()
  const cpu = (c: NodeJS.CpuUsage, n: number) => { const d = process.cpuUsage(c); return ((d.user + d.system) / n).toFixed(1) }
  for (let i = 0; i < seq; i++) yield* req(i)
  const rtt = ((performance.now() - t0) * 1000) / seq
  const rttCpu = cpu(c0, seq)
  t0 = performance.now()
  c0 = process.cpuUsage()
  yield* Effect.forEach(Array.from({ length: par }, (_, i) => i), req, { concurrency: 256, discard: true })
  const rps = par / ((performance.now() - t0) / 1000)
  console.log(`rtt ${rtt.toFixed(0)} us/op (cpu ${rttCpu} us/op), 256 in flight ${rps.toFixed(0)} req/s (cpu ${cpu(c0, par)} us/op)`)
  yield* s.close
  yield* Fiber.interrupt(server)
})
Effect.runPromise(prog).then(() => process.exit(0))
