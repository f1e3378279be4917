/**
 * The cost of typing over raw packets, one process, loopback TCP, encrypted: sequential round trips
 * and 256 in flight, raw `request` against `Api` `call`, interleaved rounds; CPU µs per request.
 * Run: npx tsx scratchpad/perf/typed-cost.ts [rounds]
 */
import { Effect, Schema } from "effect"
import { Api, connect, Packet, PacketType, serve } from "../../src/index.js"

class Echo extends Schema.TaggedRequest<Echo>()("Echo", { payload: { id: Schema.Number, text: Schema.String }, success: Schema.String, failure: Schema.Never }) {}
const Bench = Api.make({ requests: [Echo] })
const text = "x".repeat(40)
const payload = new TextEncoder().encode(text)

const main = Effect.gen(function*() {
  let port = 0
  yield* Effect.forkDaemon(serve({ port: 0, onListen: (a) => Effect.sync(() => { port = a.port }) }, (session) =>
    Effect.all([
      session.serve((p) => p.type === PacketType.COMMAND ? Effect.succeed(new Packet({ id: p.id, type: PacketType.RESPONSE, payload: p.payload }, true)) : Effect.succeed(undefined))
    ]).pipe(Effect.zipRight(Effect.void))))
  while (port === 0) yield* Effect.sleep("10 millis")
  const raw = yield* connect({ port })
  const typedPort = port
  // A second server for typed traffic: one Api.serve per session.
  let port2 = 0
  yield* Effect.forkDaemon(serve({ port: 0, onListen: (a) => Effect.sync(() => { port2 = a.port }) }, (session) =>
    Bench.serve(session, { Echo: ({ text }) => Effect.succeed(text) })))
  while (port2 === 0) yield* Effect.sleep("10 millis")
  void typedPort
  const typedSession = yield* connect({ port: port2 })
  const client = Bench.client(typedSession)

  const rawOnce = raw.request(new Packet({ id: raw.nextId(), type: PacketType.COMMAND, payload }, true))
  const typedOnce = (i: number) => client.call(new Echo({ id: i, text }))

  const measure = (label: string, n: number, depth: number, op: (i: number) => Effect.Effect<unknown, unknown>) =>
    Effect.gen(function*() {
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      let i = 0
      yield* Effect.forEach(Array.from({ length: depth }), () => Effect.whileLoop({ while: () => i < n, body: () => op(i++), step: () => {} }), { concurrency: "unbounded", discard: true })
      const cpu = process.cpuUsage(cpu0)
      const wall = performance.now() - t0
      return { label, usPerOp: ((cpu.user + cpu.system) / n), reqPerS: n / (wall / 1000), wallUsPerOp: (wall * 1000) / n }
    })

  const rounds = Number(process.argv[2] ?? 3)
  const rows: Array<Record<string, string>> = []
  for (let r = 0; r < rounds; r++) {
    for (const [label, n, depth, op] of [
      ["raw rtt", 3000, 1, () => Effect.suspend(() => raw.request(new Packet({ id: raw.nextId(), type: PacketType.COMMAND, payload }, true)))],
      ["typed rtt", 3000, 1, typedOnce],
      ["raw 256", 30000, 256, () => Effect.suspend(() => raw.request(new Packet({ id: raw.nextId(), type: PacketType.COMMAND, payload }, true)))],
      ["typed 256", 30000, 256, typedOnce]
    ] as const) {
      const m = yield* measure(label, n, depth, op)
      rows.push({ round: String(r), label, cpuUsPerReq: m.usPerOp.toFixed(1), wallUsPerReq: m.wallUsPerOp.toFixed(1), reqPerS: m.reqPerS.toFixed(0) })
    }
  }
  void rawOnce
  console.table(rows)
})

Effect.runPromise(main).then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
