/** What a span per request costs in Effect, by how it is made: `npx tsx scratchpad/perf/span-cost.ts`. */
import { Clock, Effect, Tracer } from "effect"

const n = 100_000
const inner = Effect.async<number>((resume) => resume(Effect.succeed(1)))
const opts = { kind: "client" as const, captureStackTrace: false, attributes: { "cvg.request.id": 1, "cvg.packet.type": 2, "cvg.session": "s", "cvg.stream": false } }
const cases: Record<string, Effect.Effect<number>> = {
  bare: inner,
  withSpan: Effect.withSpan(inner, "cvg.request", opts),
  "makeSpan+end": Effect.flatMap(Effect.makeSpan("cvg.request", opts), (span) =>
    Effect.flatMap(inner, (v) => Effect.map(Clock.currentTimeNanos, (t) => (span.end(t, { _tag: "Success", value: v } as never), v)))),
  tracerWith: Effect.flatMap(Effect.tracer, (t) => (t ? inner : inner))
}
const loop = (e: Effect.Effect<number>) => Effect.gen(function*() { for (let i = 0; i < n; i++) yield* e })
for (let r = 0; r < 3; r++) {
  for (const [name, e] of Object.entries(cases)) {
    const c0 = process.cpuUsage()
    Effect.runSync(loop(e))
    const c = process.cpuUsage(c0)
    console.log(name.padEnd(14), (((c.user + c.system) / n)).toFixed(2), "us")
  }
}
void Tracer
