/**
 * Wycheproof known-answer and attack vectors (C2SP/wycheproof testvectors_v1), run through the
 * `Crypto` service. The vectors are read from ../shared/vectors/wycheproof/ and never copied here
 * (PROTOCOL.md §1, docs/conformance.md). Decisions on `acceptable` cases are documented in docs/conformance.md.
 *
 * Every file's cases are counted as they run and the counts are asserted exactly, so a case cannot be
 * skipped silently; mismatches are collected with their tcId and compared against `[]`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Either, Exit, Option, Schema } from "effect"
import type { Layer } from "effect"
import { createPublicKey } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { Crypto } from "../src/crypto/Crypto.js"
import type { EcdhKeyPair } from "../src/crypto/Crypto.js"
import * as DeterministicCrypto from "../src/crypto/DeterministicCrypto.js"
import * as NodeCrypto from "../src/crypto/NodeCrypto.js"

const VECTORS = new URL("../../shared/vectors/wycheproof/", import.meta.url)
const VECTORS_PATH = fileURLToPath(VECTORS)

// --- vector files -------------------------------------------------------------------------------

const Result = Schema.Literal("valid", "acceptable", "invalid")
const Base = { tcId: Schema.Number, comment: Schema.String, flags: Schema.Array(Schema.String), result: Result }
const fileOf = <G extends Schema.Schema.Any>(group: G) =>
  Schema.Struct({ numberOfTests: Schema.Number, testGroups: Schema.Array(group) })

const EcdhFile = fileOf(
  Schema.Struct({
    curve: Schema.String,
    tests: Schema.Array(Schema.Struct({ ...Base, public: Schema.String, private: Schema.String, shared: Schema.String }))
  })
)
const AesGcmFile = fileOf(
  Schema.Struct({
    keySize: Schema.Number,
    ivSize: Schema.Number,
    tagSize: Schema.Number,
    tests: Schema.Array(
      Schema.Struct({
        ...Base,
        key: Schema.String,
        iv: Schema.String,
        aad: Schema.String,
        msg: Schema.String,
        ct: Schema.String,
        tag: Schema.String
      })
    )
  })
)
const HkdfFile = fileOf(
  Schema.Struct({
    tests: Schema.Array(
      Schema.Struct({
        ...Base,
        ikm: Schema.String,
        salt: Schema.String,
        info: Schema.String,
        size: Schema.Number,
        okm: Schema.String
      })
    )
  })
)

const load = <A, I>(schema: Schema.Schema<A, I>, name: string) =>
  Effect.try(() => {
    const parsed: unknown = JSON.parse(readFileSync(new URL(name, VECTORS), "utf8"))
    return parsed
  }).pipe(Effect.flatMap(Schema.decodeUnknown(schema)), Effect.orDie)

// --- helpers ------------------------------------------------------------------------------------

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, "hex"))
const hex = (data: Uint8Array): string => Buffer.from(data).toString("hex")
const concat = (...parts: ReadonlyArray<Uint8Array>) => new Uint8Array(Buffer.concat(parts))

type Verdict = "valid" | "acceptable" | "invalid"
type Counts = Record<Verdict, number>
const counter = (): Counts => ({ valid: 0, acceptable: 0, invalid: 0 })

/** What a case did: produced bytes, or was refused with a typed reason. Defects are never expected. */
type Outcome =
  | { readonly _tag: "Accepted"; readonly value: string }
  | { readonly _tag: "Rejected"; readonly reason: string }
  | { readonly _tag: "Defect"; readonly cause: string }

const outcomeOf = <E extends { readonly reason: string }>(self: Effect.Effect<Uint8Array, E>) =>
  Effect.exit(self).pipe(
    Effect.map((exit): Outcome =>
      Exit.isSuccess(exit)
        ? { _tag: "Accepted", value: hex(exit.value) }
        : Option.match(Cause.failureOption(exit.cause), {
          onNone: () => ({ _tag: "Defect", cause: Cause.pretty(exit.cause) }),
          onSome: (error) => ({ _tag: "Rejected", reason: error.reason })
        })
    )
  )

const show = (outcome: Outcome) =>
  outcome._tag === "Accepted" ? `accepted ${outcome.value.slice(0, 16)}…` : `${outcome._tag} ${"reason" in outcome ? outcome.reason : outcome.cause}`

/**
 * Our choice for each flag that Wycheproof marks `acceptable`. A case is accepted only if every one of
 * its flags says so; a flag missing here fails the suite, so a new kind of vector needs a decision.
 * See docs/conformance.md for the reasons.
 */
const ACCEPTABLE: Record<string, "accept" | "reject"> = {
  CompressedPoint: "reject",
  CompressedPublic: "reject",
  InvalidAsn: "reject",
  UnnamedCurve: "reject",
  UnusedParam: "reject",
  ModifiedCofactor: "reject",
  ModifiedCurveParameter: "reject",
  ModifiedGenerator: "reject",
  NoCofactor: "reject",
  WrongOrder: "reject"
}

/** Checks one case against its verdict; returns a description of the mismatch, if any. */
const judge = (
  test: { readonly tcId: number; readonly result: Verdict; readonly flags: ReadonlyArray<string> },
  outcome: Outcome,
  expected: string,
  acceptableFlags: Map<string, number>
): Option.Option<string> => {
  const fail = (why: string) => Option.some(`tcId ${test.tcId} (${test.result} ${test.flags.join(",")}): ${why}`)
  if (outcome._tag === "Defect") return fail(`defect: ${outcome.cause}`)
  let shouldAccept = test.result === "valid"
  if (test.result === "acceptable") {
    for (const flag of test.flags) {
      acceptableFlags.set(flag, (acceptableFlags.get(flag) ?? 0) + 1)
      const decision = ACCEPTABLE[flag]
      if (decision === undefined) return fail(`no decision recorded for acceptable flag ${flag}`)
    }
    shouldAccept = test.flags.every((flag) => ACCEPTABLE[flag] === "accept")
  }
  if (shouldAccept) {
    return outcome._tag === "Accepted" && outcome.value === expected
      ? Option.none()
      : fail(`expected ${expected.slice(0, 16)}…, got ${show(outcome)}`)
  }
  return outcome._tag === "Rejected" ? Option.none() : fail(`expected rejection, got ${show(outcome)}`)
}

const LAYERS: ReadonlyArray<readonly [string, Layer.Layer<Crypto>]> = [
  ["NodeCrypto", NodeCrypto.layer],
  ["DeterministicCrypto", DeterministicCrypto.layer("wycheproof")]
]

// --- ECDH ---------------------------------------------------------------------------------------

/** Key pairs for the vectors' private keys; 37 distinct ones serve all 1577 cases. */
const keyPairs = (privates: Iterable<string>) =>
  Effect.gen(function*() {
    const pairs = new Map<string, EcdhKeyPair>()
    for (const priv of new Set(privates)) {
      // A variable-length big-endian integer: left-pad (or strip a sign byte) to 66 bytes.
      const scalar = bytes(BigInt(`0x${priv}`).toString(16).padStart(132, "0"))
      pairs.set(priv, yield* Effect.orDie(NodeCrypto.keyPairFromPrivateScalar(scalar)))
    }
    return pairs
  })

/** The unique DER of a SubjectPublicKeyInfo for id-ecPublicKey on the named curve secp521r1 with a
 * 133-byte point: SEQUENCE { SEQUENCE { OID 1.2.840.10045.2.1, OID 1.3.132.0.35 }, BIT STRING (0 unused) }. */
const P521_SPKI_PREFIX = bytes("30819b301006072a8648ce3d020106052b8104002303818600")

/**
 * SPKI to raw point, strictly: DER has one encoding per value, so anything but this exact prefix plus
 * 133 bytes is either not DER, not P-521 by name, or not 133 bytes long, and is refused here; what the
 * point itself contains is left to `importPublicKey`.
 */
const spkiToRawPoint = (der: Uint8Array): Either.Either<Uint8Array, { readonly reason: string }> =>
  der.length === P521_SPKI_PREFIX.length + 133 &&
    Buffer.from(der.subarray(0, P521_SPKI_PREFIX.length)).equals(P521_SPKI_PREFIX)
    ? Either.right(der.subarray(P521_SPKI_PREFIX.length))
    : Either.left({ reason: "SpkiNotCanonicalP521" })

/** Cross-check of the hand-rolled SPKI step against OpenSSL's parser, for points that we accepted. */
const opensslPoint = (der: Uint8Array): string => {
  const jwk = createPublicKey({ key: Buffer.from(der), format: "der", type: "spki" }).export({ format: "jwk" })
  return `04${Buffer.from(jwk.x ?? "", "base64url").toString("hex")}${Buffer.from(jwk.y ?? "", "base64url").toString("hex")}`
}

const runEcdh = (file: string, encoding: "ecpoint" | "spki") =>
  Effect.gen(function*() {
    const crypto = yield* Crypto
    const vectors = yield* load(EcdhFile, file)
    const tests = vectors.testGroups.flatMap((group) => {
      expect(group.curve).toBe("secp521r1")
      return group.tests
    })
    const pairs = yield* keyPairs(tests.map((test) => test.private))
    const counts = counter()
    const acceptableFlags = new Map<string, number>()
    const failures: Array<string> = []
    let crossChecked = 0

    yield* Effect.forEach(
      tests,
      (test) =>
        Effect.gen(function*() {
          const own = pairs.get(test.private)
          if (own === undefined) return yield* Effect.dieMessage(`no key pair for tcId ${test.tcId}`)
          const encoded = bytes(test.public)
          const outcome = yield* outcomeOf(
            Effect.gen(function*() {
              const raw = encoding === "ecpoint" ? encoded : yield* spkiToRawPoint(encoded)
              const peer = yield* crypto.importPublicKey(raw)
              return yield* crypto.deriveSharedSecret(own, peer)
            })
          )
          counts[test.result] += 1
          if (encoding === "spki" && outcome._tag === "Accepted") {
            crossChecked += 1
            const ours = hex(encoded.subarray(P521_SPKI_PREFIX.length))
            if (opensslPoint(encoded) !== ours) failures.push(`tcId ${test.tcId}: OpenSSL reads another point`)
          }
          // Invalid public keys must be refused for the right reason, not by some later accident.
          if (test.result === "invalid" && outcome._tag === "Rejected") {
            const allowed = encoding === "ecpoint" ? ["InvalidPublicKey"] : ["InvalidPublicKey", "SpkiNotCanonicalP521"]
            if (!allowed.includes(outcome.reason)) failures.push(`tcId ${test.tcId}: rejected as ${outcome.reason}`)
          }
          Option.map(judge(test, outcome, test.shared, acceptableFlags), (failure) => failures.push(failure))
        }),
      { concurrency: 8, discard: true }
    )
    return { numberOfTests: vectors.numberOfTests, counts, acceptableFlags: Object.fromEntries(acceptableFlags), failures, crossChecked }
  })

// --- AES-GCM ------------------------------------------------------------------------------------

const runAesGcm = Effect.gen(function*() {
  const crypto = yield* Crypto
  const vectors = yield* load(AesGcmFile, "aes_gcm_test.json")
  const checked = counter()
  let refusedKey = 0
  let refusedNonce = 0
  const failures: Array<string> = []
  for (const group of vectors.testGroups) {
    expect(group.tagSize).toBe(128)
    for (const test of group.tests) {
      const fail = (why: string) => failures.push(`tcId ${test.tcId} (${group.keySize}/${group.ivSize}): ${why}`)
      const aead = crypto.aead(bytes(test.key))
      // Our AEAD is AES-256 with 96-bit nonces only; other groups must be refused with a typed error.
      if (group.keySize !== 256) {
        refusedKey += 1
        if (!Either.isLeft(aead) || aead.left.reason !== "InvalidLength") fail("non-256-bit key not refused")
        continue
      }
      if (Either.isLeft(aead)) {
        fail(`key refused: ${aead.left.reason}`)
        continue
      }
      const iv = bytes(test.iv)
      const aad = bytes(test.aad)
      const sealed = concat(bytes(test.ct), bytes(test.tag))
      if (group.ivSize !== 96) {
        refusedNonce += 1
        const seal = aead.right.seal(iv, aad, bytes(test.msg))
        const open = aead.right.open(iv, aad, sealed)
        if (!(Either.isLeft(seal) && seal.left.reason === "InvalidLength")) fail("seal accepted a non-96-bit nonce")
        if (!(Either.isLeft(open) && open.left.reason === "InvalidLength")) fail("open accepted a non-96-bit nonce")
        continue
      }
      checked[test.result] += 1
      const open = aead.right.open(iv, aad, sealed)
      if (test.result === "valid") {
        const seal = aead.right.seal(iv, aad, bytes(test.msg))
        if (!(Either.isRight(seal) && hex(seal.right) === hex(sealed))) fail("seal differs")
        if (!(Either.isRight(open) && hex(open.right) === test.msg)) fail("open differs")
      } else if (!(Either.isLeft(open) && open.left.reason === "DecryptFailed" && open.left.detail === undefined)) {
        fail("open accepted a forgery or failed with detail")
      }
    }
  }
  return { numberOfTests: vectors.numberOfTests, checked, refusedKey, refusedNonce, failures }
})

// --- HKDF ---------------------------------------------------------------------------------------

const runHkdf = Effect.gen(function*() {
  const crypto = yield* Crypto
  const vectors = yield* load(HkdfFile, "hkdf_sha256_test.json")
  const counts = counter()
  const failures: Array<string> = []
  const unused = new Map<string, number>()
  for (const group of vectors.testGroups) {
    for (const test of group.tests) {
      const outcome = yield* outcomeOf(crypto.hkdf(bytes(test.ikm), bytes(test.salt), bytes(test.info), test.size))
      counts[test.result] += 1
      if (test.result === "invalid" && outcome._tag === "Rejected" && outcome.reason !== "InvalidLength") {
        failures.push(`tcId ${test.tcId}: rejected as ${outcome.reason}`)
      }
      Option.map(judge(test, outcome, test.okm, unused), (failure) => failures.push(failure))
    }
  }
  return { numberOfTests: vectors.numberOfTests, counts, failures }
})

// --- suites -------------------------------------------------------------------------------------

if (!existsSync(VECTORS_PATH)) {
  const message = `Wycheproof vectors not found at ${VECTORS_PATH}`
  if (process.env["CI"] === "true") {
    describe("Wycheproof", () => {
      it("has its vectors folder (required when CI=true)", () => {
        expect.fail(message)
      })
    })
  } else {
    console.warn(`${message}: skipping the Wycheproof suite (under CI=true this is a failure)`)
    describe.skip(`Wycheproof (skipped: ${message})`, () => {
      it("vectors", () => {})
    })
  }
} else {
  for (const [name, layer] of LAYERS) {
    describe(`Wycheproof through ${name}`, () => {
      it.effect("ecdh_secp521r1_ecpoint_test.json: raw points into importPublicKey + deriveSharedSecret", () =>
        Effect.gen(function*() {
          const report = yield* runEcdh("ecdh_secp521r1_ecpoint_test.json", "ecpoint")
          expect(report.failures).toEqual([])
          expect(report.numberOfTests).toBe(661)
          expect(report.counts).toEqual({ valid: 632, acceptable: 1, invalid: 28 })
          expect(report.acceptableFlags).toEqual({ CompressedPublic: 1, CompressedPoint: 1 })
        }).pipe(Effect.provide(layer)))

      it.effect("ecdh_secp521r1_test.json: DER SPKI, strictly to a raw point, then the same path", () =>
        Effect.gen(function*() {
          const report = yield* runEcdh("ecdh_secp521r1_test.json", "spki")
          expect(report.failures).toEqual([])
          expect(report.numberOfTests).toBe(916)
          expect(report.counts).toEqual({ valid: 632, acceptable: 228, invalid: 56 })
          expect(report.crossChecked).toBe(632)
          expect(report.acceptableFlags).toEqual({
            CompressedPoint: 1,
            CompressedPublic: 1,
            InvalidAsn: 220,
            ModifiedCofactor: 1,
            ModifiedCurveParameter: 1,
            ModifiedGenerator: 2,
            NoCofactor: 1,
            UnnamedCurve: 7,
            UnusedParam: 7,
            WrongOrder: 2
          })
        }).pipe(Effect.provide(layer)))

      it.effect("aes_gcm_test.json: AES-256 / 96-bit IV checked, every other group refused", () =>
        Effect.gen(function*() {
          const report = yield* runAesGcm
          expect(report.failures).toEqual([])
          expect(report.numberOfTests).toBe(316)
          expect(report.checked).toEqual({ valid: 39, acceptable: 0, invalid: 27 })
          expect(report.refusedKey).toBe(211)
          expect(report.refusedNonce).toBe(39)
          expect(66 + report.refusedKey + report.refusedNonce).toBe(report.numberOfTests)
        }).pipe(Effect.provide(layer)))

      it.effect("hkdf_sha256_test.json", () =>
        Effect.gen(function*() {
          const report = yield* runHkdf
          expect(report.failures).toEqual([])
          expect(report.numberOfTests).toBe(86)
          expect(report.counts).toEqual({ valid: 83, acceptable: 0, invalid: 3 })
        }).pipe(Effect.provide(layer)))
    })
  }
}
