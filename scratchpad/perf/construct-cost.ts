/** What a Schema class's constructor costs by the props it is given: `npx tsx scratchpad/perf/construct-cost.ts` */
import { Schema } from "effect"
class Echo extends Schema.TaggedRequest<Echo>()("Echo", { payload: { id: Schema.Number, text: Schema.String }, success: Schema.String, failure: Schema.Never }) {}
const n = 300_000
const withTag = { _tag: "Echo", id: 1, text: "x" }
const withoutTag = { id: 1, text: "x" }
const tagLast = { id: 1, text: "x", _tag: "Echo" }
for (let r = 0; r < 3; r++) {
  for (const [name, props] of [["tag first", withTag], ["no tag", withoutTag], ["tag last", tagLast]] as const) {
    const t = performance.now()
    let last: unknown
    for (let i = 0; i < n; i++) last = new Echo(props as never, true)
    console.log(name.padEnd(10), (((performance.now() - t) * 1000) / n).toFixed(2), "us", JSON.stringify(last))
  }
}
