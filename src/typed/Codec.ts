/**
 * Values to bytes and back for the typed layer (PROTOCOL.md §12.1): a value is encoded by its Schema
 * (so a `Date` becomes its string, a class its fields), and the encoded form is written as
 * MessagePack by `msgpackr`, restricted to the standard types. `undefined` alone is zero bytes; an
 * object property whose value is `undefined` is left out, as JSON does.
 *
 * Decoding reads a small flat value in one pass (`decodeFlat`); anything else has its structure
 * checked first (`msgPackProblem`), so that a declared length never allocates more than the bytes
 * that arrived. Then the Schema decodes it. Failures come back as text for the caller's typed
 * error: where in the value it failed and why, never the value itself.
 */
import { Either, ParseResult, Schema, type SchemaAST } from "effect"
import { type Options, Packr, Unpackr } from "msgpackr"
import { decodeFlat, encodeFlat, msgPackProblem, NOT_FLAT } from "../wire/MsgPack.js"

// `useRecords: false` and `moreTypes: false` keep to standard MessagePack, so that any implementation
// can read what we write; `skipValues` drops `undefined` properties instead of writing an extension.
// (`skipValues` is in msgpackr since 1.10 but not in its type declarations.)
const packOptions: Options & { readonly skipValues: ReadonlyArray<unknown> } = {
  useRecords: false,
  moreTypes: false,
  encodeUndefinedAsNil: true,
  skipValues: [undefined]
}
const packr = new Packr(packOptions)
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

const EMPTY = new Uint8Array(0)

/**
 * Any Schema, by its AST: a request class's `success` may be `Schema.Never`, which no single Schema
 * type parameter accepts beside the others; the codec needs only the AST.
 */
export interface HasAst {
  readonly ast: SchemaAST.AST
}
/** A Schema's parsers, built once per AST: building them is most of the cost of a small value. */
interface Parsers {
  readonly encode: (value: unknown) => Either.Either<unknown, ParseResult.ParseIssue>
  readonly decode: (value: unknown) => Either.Either<unknown, ParseResult.ParseIssue>
  readonly is: (value: unknown) => boolean
}
const parsers = new WeakMap<SchemaAST.AST, Parsers>()

/**
 * A check for a Schema whose decoded and encoded forms are the same value and whose parser only
 * looks at it: a string, number or boolean keyword, or a literal. `undefined` for anything else.
 */
const identityCheck = (ast: SchemaAST.AST): ((value: unknown) => boolean) | undefined => {
  switch (ast._tag) {
    case "StringKeyword":
      return (value) => typeof value === "string"
    case "NumberKeyword":
      return (value) => typeof value === "number"
    case "BooleanKeyword":
      return (value) => typeof value === "boolean"
    case "Literal": {
      const literal = ast.literal
      return (value) => value === literal
    }
    default:
      return undefined
  }
}

/**
 * A parser, in both directions, for a Schema that `identityCheck` covers, or a struct of required
 * string-named fields that it covers (a small request's fields, a tag among them): the value, or a
 * new object of exactly those fields in the Schema's order, as Effect's parser builds it with the
 * default options (excess properties dropped). It answers `undefined` when the value does not pass,
 * and the caller runs Effect's parser instead, so that failures and their messages stay Effect's.
 * It skips the generic parser's per-call steps (an Either per field, the excess-key and ordering
 * options), which a small request pays on both sides of every call.
 */
const fastParser = (ast: SchemaAST.AST, omit?: string): ((value: unknown) => unknown) | undefined => {
  const check = identityCheck(ast)
  if (check !== undefined) return (value) => (check(value) ? value : undefined)
  if (ast._tag !== "TypeLiteral" || ast.indexSignatures.length > 0) return undefined
  const names: Array<string> = []
  const checks: Array<(value: unknown) => boolean> = []
  for (const ps of ast.propertySignatures) {
    const fieldCheck = identityCheck(ps.type)
    if (typeof ps.name !== "string" || ps.isOptional || fieldCheck === undefined) return undefined
    names.push(ps.name)
    checks.push(fieldCheck)
  }
  const hasOwn = Object.prototype.hasOwnProperty
  return (value) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined
    const record = value as Record<string, unknown>
    const out: Record<string, unknown> = {}
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!
      if (!hasOwn.call(record, name)) return undefined
      const field = record[name]
      if (!checks[i]!(field)) return undefined
      if (name !== omit) out[name] = field
    }
    return out
  }
}

/** `generic`, tried after `fast` where there is one. */
const withFast = (
  fast: ((value: unknown) => unknown) | undefined,
  generic: Parsers["encode"]
): Parsers["encode"] => {
  if (fast === undefined) return generic
  return (value) => {
    const out = fast(value)
    return out === undefined ? generic(value) : Either.right(out)
  }
}

/** What `Schema.Class` and its tagged kinds build: a constructor taking the fields and a flag to skip validation. */
type ClassConstructor = new (props: unknown, disableValidation: boolean) => unknown

/**
 * A class's decoder, as Effect's own class transformation runs it (decode the fields, then
 * `new Class(fields, true)`) without the generic transformation and declaration steps, which cost
 * about four times as much for a small request (`scratchpad/perf/codec-cost.ts`, docs/performance.md).
 */
const classDecoder = (schema: HasAst): Parsers["decode"] | undefined => {
  const ast = schema.ast
  if (typeof schema !== "function" || ast._tag !== "Transformation" || ast.to._tag !== "Declaration") return undefined
  // A Schema class is a constructor (checked just above): TypeScript cannot see it through `HasAst`.
  const Class = schema as unknown as ClassConstructor
  const decodeFields = ParseResult.decodeUnknownEither(Schema.make<unknown, unknown, never>(ast.from))
  const fast = fastParser(ast.from, tagFromDefault(schema, ast.from) ? "_tag" : undefined)
  return (value) => {
    const fields = fast?.(value)
    return fields === undefined ? Either.map(decodeFields(value), (decoded) => new Class(decoded, true)) : Either.right(new Class(fields, true))
  }
}

/**
 * Whether a class's constructor sets its `_tag` itself, to the one value its encoded side accepts:
 * the tagged kinds (`TaggedClass`, `TaggedRequest`, `TaggedError`) declare `_tag` with a constructor
 * default, and their constructor deletes a `_tag` it is given and puts the default back. Their fast
 * decoder checks `_tag` but leaves it out of the fields it hands over: the deletion would turn that
 * object into a slow dictionary, and the constructor costs a third less without it
 * (scratchpad/perf/ctor-parts.ts). The static `_tag` (which the tagged kinds have) and the default's
 * value must both be the encoded side's literal.
 */
const tagFromDefault = (schema: HasAst, from: SchemaAST.AST): boolean => {
  if (from._tag !== "TypeLiteral") return false
  const literal = from.propertySignatures.find((ps) => ps.name === "_tag")?.type
  if (literal?._tag !== "Literal" || !("_tag" in schema) || schema._tag !== literal.literal) return false
  const field: unknown = "fields" in schema && typeof schema.fields === "object" && schema.fields !== null && "_tag" in schema.fields ? schema.fields._tag : undefined
  if (!Schema.isPropertySignature(field) || field.ast._tag !== "PropertySignatureDeclaration") return false
  return field.ast.defaultValue?.() === literal.literal
}

/**
 * A class's encoder for its own instances: the fields encoded by the class's field Schemas, without
 * the declaration step, which would first re-validate the whole instance against its type
 * (`Schema.is`), although its constructor validated it. Anything that is not an instance takes the
 * generic encoder, which refuses it as before.
 */
const classEncoder = (schema: HasAst, generic: Parsers["encode"]): Parsers["encode"] | undefined => {
  const ast = schema.ast
  if (typeof schema !== "function" || ast._tag !== "Transformation" || ast.to._tag !== "Declaration") return undefined
  const Class = schema as unknown as ClassConstructor
  const encodeFields = withFast(fastParser(ast.from), ParseResult.encodeUnknownEither(Schema.make<unknown, unknown, never>(ast.from)))
  return (value) => (value instanceof Class ? encodeFields(value) : generic(value))
}

const parsersOf = (schema: HasAst): Parsers => {
  const ast = schema.ast
  let found = parsers.get(ast)
  if (found === undefined) {
    const generic = Schema.make<unknown, unknown, never>(ast)
    const fast = fastParser(ast)
    const encode = withFast(fast, ParseResult.encodeUnknownEither(generic))
    found = {
      encode: classEncoder(schema, encode) ?? encode,
      decode: classDecoder(schema) ?? withFast(fast, ParseResult.decodeUnknownEither(generic)),
      is: Schema.is(generic)
    }
    parsers.set(ast, found)
  }
  return found
}

/** Whether `value` is of `schema`'s type. */
export const is = (schema: HasAst, value: unknown): boolean => parsersOf(schema).is(value)

const describe = (issue: ParseResult.ParseIssue): string => ParseResult.TreeFormatter.formatIssueSync(issue)

/** Encodes `value` with `schema`, then to MessagePack; `Left` is what the Schema refused. */
export const encode = (schema: HasAst, value: unknown): Either.Either<Uint8Array, string> => {
  const encoded = parsersOf(schema).encode(value)
  if (Either.isLeft(encoded)) return Either.left(describe(encoded.left))
  if (encoded.right === undefined) return Either.right(EMPTY)
  const flat = encodeFlat(encoded.right)
  if (flat !== undefined) return Either.right(flat)
  try {
    return Either.right(packr.pack(encoded.right))
  } catch (error) {
    // A value the Schema passed but MessagePack cannot hold (a bigint in a `Schema.Any` field, say).
    return Either.left(error instanceof Error ? error.message : String(error))
  }
}

/** The MessagePack value in `bytes`, checked first; `Left` says why it is not one. */
export const unpack = (bytes: Uint8Array): Either.Either<unknown, string> => {
  if (bytes.length === 0) return Either.right(undefined)
  const flat = decodeFlat(bytes)
  if (flat !== NOT_FLAT) return Either.right(flat)
  const problem = msgPackProblem(bytes)
  if (problem !== undefined) return Either.left(`not MessagePack: ${problem}`)
  try {
    return Either.right(unpackr.unpack(bytes))
  } catch (error) {
    return Either.left(`not MessagePack: ${error instanceof Error ? error.message : String(error)}`)
  }
}

/** Decodes an unpacked value with `schema`; `Left` says where and why it failed. */
export const decodeValue = (schema: HasAst, value: unknown): Either.Either<unknown, string> =>
  Either.mapLeft(parsersOf(schema).decode(value), describe)

export const decode = (schema: HasAst, bytes: Uint8Array): Either.Either<unknown, string> =>
  Either.flatMap(unpack(bytes), (value) => decodeValue(schema, value))
