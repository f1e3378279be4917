/** Per-operation cost of the typed codec's steps: `npx tsx scratchpad/perf/codec-cost.ts`. */
import { Either, ParseResult, Schema } from "effect"
import { Packr, Unpackr } from "msgpackr"
import * as Codec from "../../src/typed/Codec.js"
import { msgPackProblem } from "../../src/wire/MsgPack.js"

class Echo extends Schema.TaggedRequest<Echo>()("Echo", { payload: { text: Schema.String }, success: Schema.String, failure: Schema.Never }) {}
const value = new Echo({ text: "a".repeat(64) })
const packr = new Packr({ useRecords: false, moreTypes: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true })
const encodeE = ParseResult.encodeUnknownEither(Echo)
const decodeE = ParseResult.decodeUnknownEither(Echo)
const encoded = Either.getOrThrow(encodeE(value))
const bytes = packr.pack(encoded)
const time = (label: string, f: () => unknown, n = 200_000) => {
  for (let i = 0; i < 10_000; i++) f()
  const t = performance.now()
  for (let i = 0; i < n; i++) f()
  console.log(label.padEnd(34), (((performance.now() - t) * 1000) / n).toFixed(2), "us")
}
time("Schema encode (class)", () => encodeE(value))
time("msgpackr pack", () => packr.pack(encoded))
time("structure check", () => msgPackProblem(bytes))
time("msgpackr unpack", () => unpackr.unpack(bytes))
time("Schema decode (class)", () => decodeE(unpackr.unpack(bytes)))
time("Codec.encode", () => Codec.encode(Echo, value))
time("Codec.decode", () => Codec.decode(Echo, bytes))
time("Codec.encode(String)", () => Codec.encode(Schema.String, "a".repeat(64)))
time("new Echo (validated)", () => new Echo({ text: "x" }))
const structDecode = ParseResult.decodeUnknownEither(Schema.Struct(Echo.fields))
time("Struct(fields) decode", () => structDecode(unpackr.unpack(bytes)))
time("new Echo(props, true)", () => new Echo({ text: "x" }, true))
const packr2 = new Packr({ useRecords: false, moreTypes: false, skipValues: [undefined], encodeUndefinedAsNil: true } as never)
time("msgpackr pack (skipValues)", () => packr2.pack(encoded))
const viaMake = ParseResult.encodeUnknownEither(Schema.make<unknown, unknown, never>(Echo.ast))
time("encode via Schema.make(ast)", () => viaMake(value))
time("Echo.ast getter", () => Echo.ast)
time("Codec.encode again", () => Codec.encode(Echo, value))
time("Codec.decode (class fast path)", () => Codec.decode(Echo, bytes))
const d = Codec.decode(Echo, bytes)
console.log(Either.isRight(d) && d.right instanceof Echo, JSON.stringify(d))
