/** A class instance's encode: Effect's generic class encoder against the fields-only one Codec uses. `npx tsx scratchpad/perf/encode-cost.ts` */
import { ParseResult, Schema } from "effect"
class Echo extends Schema.TaggedRequest<Echo>()("Echo", { payload: { id: Schema.Number, text: Schema.String }, success: Schema.String, failure: Schema.Never }) {}
const value = new Echo({ id: 1, text: "x".repeat(40) })
const generic = ParseResult.encodeUnknownEither(Echo)
const ast = Echo.ast
const fields = ast._tag === "Transformation" ? ParseResult.encodeUnknownEither(Schema.make<unknown, unknown, never>(ast.from)) : generic
const n = 300_000
for (let r = 0; r < 3; r++) {
  for (const [name, f] of [["generic", generic], ["fields", fields]] as const) {
    const t = performance.now()
    for (let i = 0; i < n; i++) f(value)
    console.log(name.padEnd(8), (((performance.now() - t) * 1000) / n).toFixed(2), "us", JSON.stringify(f(value)).slice(0, 60))
  }
}
