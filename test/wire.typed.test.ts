/**
 * The typed layer's byte-level parts (PROTOCOL.md §12): the MessagePack structure check that runs
 * before any decoding, the codec's fast parsers against Effect's, and the reader of a streamed
 * reply's items.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, ParseResult, Schema } from "effect"
import { Packr, Unpackr } from "msgpackr"
import * as Codec from "../src/typed/Codec.js"
import { decodeFlat, encodeFlat, MAX_DEPTH, msgPackProblem, NOT_FLAT } from "../src/wire/MsgPack.js"
import { encodeItemInto, ITEM_HEADER_LENGTH, ItemStatus, makeItemReader } from "../src/wire/TypedFrames.js"

const packr = new Packr({ useRecords: false, moreTypes: false })
const jsonLike = FastCheck.jsonValue({ maxDepth: 6 })
const header = (type: number, length: number, size: 2 | 4) => {
  const out = new Uint8Array(1 + size)
  out[0] = type
  if (size === 2) new DataView(out.buffer).setUint16(1, length)
  else new DataView(out.buffer).setUint32(1, length)
  return out
}

describe("MessagePack structure check (PROTOCOL.md §12.1)", () => {
  it.prop("passes every value msgpackr writes, with byte fields", [jsonLike, FastCheck.uint8Array({ maxLength: 300 })], ([value, bytes]) => {
    expect(msgPackProblem(packr.pack({ value, bytes }))).toBeUndefined()
  })

  it.prop("refuses every truncation, and trailing bytes", [jsonLike], ([value]) => {
    const packed = packr.pack([value, "end"])
    for (let n = 0; n < packed.length; n++) expect(msgPackProblem(packed.subarray(0, n))).toBeDefined()
    expect(msgPackProblem(Buffer.concat([packed, Uint8Array.of(0xc0)]))).toContain("after the value")
  })

  it("refuses a container that declares more elements than bytes remain, before anything is allocated", () => {
    expect(msgPackProblem(header(0xdd, 30_000_000, 4))).toBe("a container of 30000000 elements in 0 bytes")
    expect(msgPackProblem(header(0xdf, 2 ** 32 - 1, 4))).toContain("elements in 0 bytes")
    expect(msgPackProblem(Buffer.concat([header(0xdc, 3, 2), Uint8Array.of(1, 2)]))).toContain("3 elements in 2 bytes")
    // Through the codec: a typed error, not 230 MB.
    const decoded = Codec.unpack(header(0xdd, 30_000_000, 4))
    expect(Either.isLeft(decoded) && decoded.left).toContain("not MessagePack")
  })

  it("refuses extension types, the unused 0xc1, and nesting deeper than the limit", () => {
    expect(msgPackProblem(Uint8Array.of(0xd4, 0x00, 0x00))).toContain("0xd4")
    expect(msgPackProblem(Uint8Array.of(0xc7, 0x01, 0x05, 0x00))).toContain("0xc7")
    expect(msgPackProblem(Uint8Array.of(0xc1))).toContain("0xc1")
    const nested = (depth: number) => Uint8Array.from([...new Array<number>(depth).fill(0x91), 0x01])
    expect(msgPackProblem(nested(MAX_DEPTH))).toBeUndefined()
    expect(msgPackProblem(nested(MAX_DEPTH + 1))).toContain("nested deeper")
  })

  it.prop("never throws on random bytes, and the codec gives a value or a reason", [FastCheck.uint8Array({ maxLength: 64 })], ([bytes]) => {
    const problem = msgPackProblem(bytes)
    expect(problem === undefined || typeof problem === "string").toBe(true)
    const decoded = Codec.unpack(bytes)
    expect(Either.isLeft(decoded) ? typeof decoded.left : "value").toMatch(/string|value/)
  })
})

describe("the one-pass decoder of flat values (PROTOCOL.md §12.1)", () => {
  const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
  const checked = (bytes: Uint8Array): unknown => (msgPackProblem(bytes) === undefined ? unpackr.unpack(bytes) : NOT_FLAT)
  const scalar = FastCheck.oneof(FastCheck.string(), FastCheck.string({ unit: "binary" }), FastCheck.integer(), FastCheck.double(), FastCheck.boolean(), FastCheck.constant(null))
  const flat = FastCheck.oneof(scalar, FastCheck.dictionary(FastCheck.string({ unit: "binary" }), scalar, { maxKeys: 20 }))

  it.prop("reads what msgpackr reads, for flat values and anything else", [FastCheck.oneof(flat, jsonLike)], ([value]) => {
    const bytes = Codec.encode(Schema.Unknown, value)
    if (Either.isLeft(bytes) || bytes.right.length === 0) return
    const read = decodeFlat(bytes.right)
    if (read !== NOT_FLAT) expect(read).toEqual(checked(bytes.right))
  }, { fastCheck: { numRuns: 1000 } })

  it.prop("refuses, for the checked path, all that the structure check refuses", [FastCheck.uint8Array({ maxLength: 40 }), flat], ([noise, value]) => {
    const bytes = Codec.encode(Schema.Unknown, value)
    const candidates = [noise, ...(Either.isRight(bytes) ? [bytes.right, bytes.right.subarray(0, bytes.right.length - 1), Buffer.concat([bytes.right, noise])] : [])]
    for (const candidate of candidates) {
      const read = decodeFlat(candidate)
      if (read !== NOT_FLAT) expect(read).toEqual(checked(candidate))
    }
  }, { fastCheck: { numRuns: 1000 } })

  // The codec's own msgpackr options (src/typed/Codec.ts), which `encodeFlat` must match byte for byte.
  const codecPackr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true, skipValues: [undefined] } as ConstructorParameters<typeof Packr>[0])
  const asciiKeyed = FastCheck.dictionary(FastCheck.string({ unit: "grapheme-ascii", maxLength: 40 }), FastCheck.oneof(scalar, FastCheck.string({ unit: "grapheme-ascii", maxLength: 300 })), { maxKeys: 17 })

  it.prop("writes what msgpackr writes, or leaves the value to it", [FastCheck.oneof(flat, asciiKeyed, jsonLike, FastCheck.string({ unit: "grapheme-ascii", maxLength: 300 }))], ([value]) => {
    const written = encodeFlat(value)
    if (written !== undefined) expect(Array.from(written)).toEqual(Array.from(codecPackr.pack(value)))
  }, { fastCheck: { numRuns: 2000 } })

  it("writes PROTOCOL.md §12.1's examples byte for byte", () => {
    class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
    class GetUser extends Schema.TaggedRequest<GetUser>()("GetUser", { failure: Schema.Never, success: User, payload: { id: Schema.Number } }) {}
    const hex = (bytes: Either.Either<Uint8Array, string>) => Either.map(bytes, (b) => Buffer.from(b).toString("hex"))
    expect(hex(Codec.encode(GetUser, new GetUser({ id: 7 })))).toEqual(Either.right("82a45f746167a747657455736572a2696407"))
    expect(hex(Codec.encode(User, new User({ id: 7, name: "Alice" })))).toEqual(Either.right("82a2696407a46e616d65a5416c696365"))
  })

  it("writes integers at every width's edges, -0, floats, and ASCII strings as msgpackr does", () => {
    const edges = [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, 0.5, -0, NaN, Infinity, 2 ** 53]
    for (const n of edges) expect(Array.from(encodeFlat({ n, s: "x".repeat(n & 0xff) }) ?? [])).toEqual(Array.from(codecPackr.pack({ n, s: "x".repeat(n & 0xff) })))
    for (const length of [0, 15, 16, 31, 32, 255, 256]) {
      const text = "k".repeat(length)
      expect(Array.from(encodeFlat({ [text]: text }) ?? [])).toEqual(encodeFlat({ [text]: text }) === undefined ? [] : Array.from(codecPackr.pack({ [text]: text })))
      expect(encodeFlat(text) === undefined ? length : Array.from(encodeFlat(text)!)).toEqual(length > 255 ? length : Array.from(codecPackr.pack(text)))
    }
    expect(encodeFlat("é")).toBeUndefined()
    expect(encodeFlat({ a: undefined })).toBeUndefined()
    expect(encodeFlat([1])).toBeUndefined()
  })

  it("reads a request's fields and a reply's string", () => {
    const bytes = Codec.encode(Schema.Unknown, { _tag: "Echo", id: 7, text: "é".repeat(40), n: -3, x: 1.5, big: 70000, ok: true })
    expect(Either.isRight(bytes) && decodeFlat(bytes.right)).toEqual({ _tag: "Echo", id: 7, text: "é".repeat(40), n: -3, x: 1.5, big: 70000, ok: true })
    // Each integer width at its edges, both signs, as msgpackr writes and reads them.
    const edges = [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), 0.5, -0, 2 ** 53]
    for (const n of edges) {
      const packed = Codec.encode(Schema.Unknown, { n })
      expect(Either.isRight(packed) && decodeFlat(packed.right)).toEqual(Either.isRight(packed) && checked(packed.right))
    }
    expect(decodeFlat(Uint8Array.of(0xa2, 0x68, 0x69))).toBe("hi")
    expect(decodeFlat(Uint8Array.of(0x91, 0x01))).toBe(NOT_FLAT)
    expect(decodeFlat(Uint8Array.of(0x81, 0xa9, ...new TextEncoder().encode("__proto__"), 0x01))).toBe(NOT_FLAT)
  })
})

describe("stream items (PROTOCOL.md §12.3)", () => {
  const encodeItems = (bodies: ReadonlyArray<Uint8Array>): Uint8Array => {
    const out = new Uint8Array(bodies.reduce((n, b) => n + ITEM_HEADER_LENGTH + b.length, 0))
    let offset = 0
    for (const body of bodies) offset = encodeItemInto(out, offset, ItemStatus.ITEM, body)
    return out
  }

  it.prop(
    "items cut at any boundaries come out whole and in order",
    [FastCheck.array(FastCheck.uint8Array({ maxLength: 40 }), { maxLength: 12 }), FastCheck.array(FastCheck.nat(50), { maxLength: 8 })],
    ([bodies, cuts]) => {
      const bytes = encodeItems(bodies)
      const reader = makeItemReader(1024)
      const got: Array<Array<number>> = []
      let offset = 0
      for (const cut of [...cuts, bytes.length]) {
        const end = Math.min(bytes.length, offset + cut)
        const items = reader.push(bytes.subarray(offset, end))
        if (typeof items === "string") throw new Error(items)
        for (const item of items) got.push(Array.from(item.body))
        offset = end
      }
      expect(got).toEqual(bodies.map((b) => Array.from(b)))
      expect(reader.atBoundary()).toBe(true)
    }
  )

  it("refuses an item over the limit from its header, and an unknown status", () => {
    const over = new Uint8Array(ITEM_HEADER_LENGTH)
    new DataView(over.buffer).setUint32(1, 1025)
    expect(makeItemReader(1024).push(over)).toBe("an item of 1025 bytes, over 1024")
    expect(makeItemReader(1024).push(Uint8Array.of(7, 0, 0, 0, 0))).toBe("item status 7")
    const reader = makeItemReader(1024)
    reader.push(Uint8Array.of(0, 0, 0, 0, 4, 1))
    expect(reader.atBoundary()).toBe(false)
  })
})

describe("the codec's fast parsers (PROTOCOL.md §12.1)", () => {
  class Ping extends Schema.TaggedRequest<Ping>()("Ping", {
    payload: { id: Schema.Number, text: Schema.String, ok: Schema.Boolean },
    success: Schema.String,
    failure: Schema.Never
  }) {}
  // Effect's parsers for what the fast ones replace: the class's fields (encoded side), and the class.
  const fields = Schema.make<unknown, unknown, never>(Ping.ast._tag === "Transformation" ? Ping.ast.from : Ping.ast)
  const generic = Schema.make<unknown, unknown, never>(Ping.ast)
  const other = FastCheck.oneof(FastCheck.string(), FastCheck.double(), FastCheck.boolean(), FastCheck.constant(null), FastCheck.constant(undefined))
  // Mostly valid fields, so that one wrong field among valid ones is common; sometimes one is missing.
  const mostly = <A>(valid: FastCheck.Arbitrary<A>) => FastCheck.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: other, weight: 1 })
  const input = FastCheck.tuple(
    FastCheck.record({ _tag: mostly(FastCheck.constant("Ping")), id: mostly(FastCheck.double()), text: mostly(FastCheck.string()), ok: mostly(FastCheck.boolean()), extra: other }),
    FastCheck.oneof({ arbitrary: FastCheck.constant(undefined), weight: 4 }, { arbitrary: FastCheck.constantFrom("_tag", "id", "text", "ok"), weight: 1 })
  ).map(([record, missing]): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...record }
    if (missing !== undefined) delete out[missing]
    return out
  })

  it.prop("decode as Effect's parser does: the same instance, or a failure with the same message", [input], ([value]) => {
    const fast = Codec.decodeValue(Ping, value)
    const slow = Either.mapLeft(ParseResult.decodeUnknownEither(fields)(value), (issue) => ParseResult.TreeFormatter.formatIssueSync(issue))
    expect(Either.isRight(fast)).toBe(Either.isRight(slow))
    if (Either.isRight(fast) && Either.isRight(slow)) {
      const expected = new Ping(slow.right as ConstructorParameters<typeof Ping>[0], true)
      expect(fast.right).toBeInstanceOf(Ping)
      expect(Reflect.ownKeys(fast.right as object)).toEqual(Reflect.ownKeys(expected))
      expect({ ...(fast.right as object) }).toEqual({ ...expected })
    } else {
      expect(fast).toEqual(slow)
    }
  }, { fastCheck: { numRuns: 2000 } })

  it.prop("encode to the bytes Effect's encoder and msgpackr give", [FastCheck.double(), FastCheck.string(), FastCheck.boolean()], ([id, text, ok]) => {
    const value = new Ping({ id, text, ok })
    // `Schema.Unknown` has no fast parser: its bytes are msgpackr's for what Effect's encoder gave.
    const expected = Either.flatMap(Either.mapLeft(ParseResult.encodeUnknownEither(generic)(value), String), (encoded) => Codec.encode(Schema.Unknown, encoded))
    expect(Either.map(Codec.encode(Ping, value), (bytes) => Array.from(bytes))).toEqual(Either.map(expected, (bytes) => Array.from(bytes)))
    expect(Either.map(Codec.encode(Schema.String, text), (bytes) => Array.from(bytes))).toEqual(Either.map(Codec.encode(Schema.Unknown, text), (bytes) => Array.from(bytes)))
  })
})
