/** Where `new Echo(props, true)` spends its time, by the shape of `props`: `npx tsx scratchpad/perf/ctor-parts.ts`. */
import { Schema } from "effect"
class Echo extends Schema.TaggedRequest<Echo>()("Echo", { payload: { id: Schema.Number, text: Schema.String }, success: Schema.String, failure: Schema.Never }) {}
const text = "x".repeat(40)
let i = 0
const cases: Array<[string, () => unknown]> = [
  ["tag first", () => new Echo({ _tag: "Echo", id: i++, text } as never, true)],
  ["no tag", () => new Echo({ id: i++, text }, true)],
  ["tag last", () => new Echo({ id: i++, text, _tag: "Echo" } as never, true)],
  ["validated, no tag", () => new Echo({ id: i++, text })]
]
const results = new Map<string, Array<number>>()
for (let round = 0; round < 5; round++) {
  for (const [label, f] of cases) {
    const n = 200_000
    const t = performance.now()
    for (let k = 0; k < n; k++) f()
    results.set(label, [...(results.get(label) ?? []), ((performance.now() - t) * 1000) / n])
  }
}
for (const [label, xs] of results) console.log(label.padEnd(20), [...xs].sort((a, b) => a - b)[2]!.toFixed(3), "us median of 5")
