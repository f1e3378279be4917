/**
 * CPace (src/crypto/CPace.ts) against the published test vectors of draft-irtf-cfrg-cpace-21,
 * Appendix "Test vectors", section "Test vector for CPace using group ristretto255 and hash SHA-512",
 * and the string-utility vectors of Appendix "CPace function definitions". The constants below are
 * copied from the draft's text (github.com/cfrg/draft-irtf-cfrg-cpace, tag draft-irtf-cfrg-cpace-21).
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { createHmac } from "node:crypto"
import {
  CPACE_ISK_LENGTH,
  CPACE_SHARE_LENGTH,
  calculateGeneratorEncoding,
  cpaceFinish,
  cpaceStart,
  generatorString,
  lvCat,
  prependLen,
  scalarMultVfy,
  transcriptIr
} from "../src/crypto/CPace.js"

const hex = (data: Uint8Array) => Buffer.from(data).toString("hex")
const unhex = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s+/g, ""), "hex"))
const ascii = (text: string) => new TextEncoder().encode(text)
const littleEndian = (bytes: Uint8Array) => {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] ?? 0)
  return n
}

// §"Test vectors for calculate_generator with group ristretto255"
const PRS = ascii("Password")
const CI = unhex("0b415f696e69746961746f720b425f726573706f6e646572")
const SID = unhex("7e4b4791d6a8ef019b936c79fb7f2c57")
const GENERATOR_STRING = unhex(`
  11435061636552697374726574746f3235350850617373776f726464
  00000000000000000000000000000000000000000000000000000000
  00000000000000000000000000000000000000000000000000000000
  00000000000000000000000000000000000000000000000000000000
  00000000000000000000000000000000180b415f696e69746961746f
  720b425f726573706f6e646572107e4b4791d6a8ef019b936c79fb7f
  2c57`)
const GENERATOR = "222b6b195fe84b1652badb6f6a3ae3d24341e7306967f0b8115b40d5698c7e56"

// §"Test vector for message from A" / "from B"
const ADA = ascii("ADa")
const YA_SCALAR = unhex("da3d23700a9e5699258aef94dc060dfda5ebb61f02a5ea77fad53f4ff0976d08")
const YA = "d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0eec482b9157"
const ADB = ascii("ADb")
const YB_SCALAR = unhex("d2316b454718c35362d83d69df6320f38578ed5984651435e2949762d900b80d")
const YB = "3ea7e0b19560d7c0b0f5734f63b955286dfa8232b5ebe63324e2d9e7433f7258"

// §"Test vector for secret points K" and §"Test vector for ISK calculation initiator/responder"
const K = "80b69a8a76457ab6a4d7f887a4bf6b55a2f80ac19c333f917a05fc9887c8b40f"
const TRANSCRIPT_IR = `
  20d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0e
  ec482b915703414461203ea7e0b19560d7c0b0f5734f63b955286dfa
  8232b5ebe63324e2d9e7433f725803414462`.replace(/\s+/g, "")
const ISK_IR = `
  b69effbf61b51d56401c0f65601abe428de8206feaaf0e32198896dc
  ae7b35cd2b38950a39dfd5d4a79164614c2984f7daa460b588c1e80c
  3fa2068af7900447`.replace(/\s+/g, "")

// §"Test case for scalar_mult with valid inputs" and §"Invalid inputs for scalar_mult_vfy"
const S = littleEndian(unhex("7cd0e075fa7955ba52c02759a6c90dbbfc10e6d40aea8d283e407d88cf538a05"))
const X = unhex("2c3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c")
const S_X = "7c13645fe790a468f62c39beb7388e541d8405d1ade69d1778c5fe3e7f6b600e"
const Y_I1 = unhex("2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c")
const Y_I2 = new Uint8Array(32)
const G_I = "00".repeat(32)

const fixed = (bytes: Uint8Array) => () => Uint8Array.from(bytes)

const initiator = () => cpaceStart({ prs: PRS, ci: CI, sid: SID, ad: ADA }, "initiator", fixed(YA_SCALAR))
const responder = () => cpaceStart({ prs: PRS, ci: CI, sid: SID, ad: ADB }, "responder", fixed(YB_SCALAR))

describe("CPace string utilities (draft Appendix, CPace function definitions)", () => {
  it("prepend_len", () => {
    expect(hex(prependLen(new Uint8Array(0)))).toBe("00")
    expect(hex(prependLen(ascii("1234")))).toBe("0431323334")
    const r127 = Uint8Array.from({ length: 127 }, (_, i) => i)
    expect(hex(prependLen(r127))).toBe(`7f${hex(r127)}`)
    const r128 = Uint8Array.from({ length: 128 }, (_, i) => i)
    expect(hex(prependLen(r128))).toBe(`8001${hex(r128)}`)
  })

  it("lv_cat", () => {
    expect(hex(lvCat(ascii("1234"), ascii("5"), ascii(""), ascii("678")))).toBe("043132333401350003363738")
  })

  it("transcript_ir", () => {
    expect(hex(transcriptIr(ascii("123"), ascii("PartyA"), ascii("234"), ascii("PartyB"))))
      .toBe("03313233065061727479410332333406506172747942")
    expect(hex(transcriptIr(ascii("3456"), ascii("PartyA"), ascii("2345"), ascii("PartyB"))))
      .toBe("043334353606506172747941043233343506506172747942")
  })
})

describe("CPACE-RISTR255-SHA512 (draft-irtf-cfrg-cpace-21 test vectors)", () => {
  it("generator string and generator", () => {
    expect(hex(generatorString(PRS, CI, SID))).toBe(hex(GENERATOR_STRING))
    expect(GENERATOR_STRING.length).toBe(170)
    expect(hex(calculateGeneratorEncoding(PRS, CI, SID))).toBe(GENERATOR)
  })

  it("the shares Ya and Yb", () => {
    expect(hex(initiator().share)).toBe(YA)
    expect(hex(responder().share)).toBe(YB)
  })

  it("K on both sides", () => {
    expect(hex(scalarMultVfy(littleEndian(YA_SCALAR), unhex(YB)))).toBe(K)
    expect(hex(scalarMultVfy(littleEndian(YB_SCALAR), unhex(YA)))).toBe(K)
  })

  it("ISK in the initiator-responder setting, equal on both sides", () => {
    expect(TRANSCRIPT_IR).toBe(hex(transcriptIr(unhex(YA), ADA, unhex(YB), ADB)))
    const a = cpaceFinish(initiator(), unhex(YB), ADB)
    const b = cpaceFinish(responder(), unhex(YA), ADA)
    expect(Either.map(a, hex)).toEqual(Either.right(ISK_IR))
    expect(Either.map(b, hex)).toEqual(Either.right(ISK_IR))
  })

  it("scalar_mult_vfy with a valid input", () => {
    expect(hex(scalarMultVfy(S, X))).toBe(S_X)
  })

  it("scalar_mult_vfy returns G.I for the invalid encodings Y_i1 and Y_i2 = G.I", () => {
    expect(hex(scalarMultVfy(S, Y_I1))).toBe(G_I)
    expect(hex(scalarMultVfy(S, Y_I2))).toBe(G_I)
  })

  it("a protocol run aborts on Y_i1 and on the identity, from either side", () => {
    expect(cpaceFinish(initiator(), Y_I1, ADB)).toEqual(Either.left("InvalidShare"))
    expect(cpaceFinish(responder(), Y_I1, ADA)).toEqual(Either.left("InvalidShare"))
    expect(cpaceFinish(initiator(), Y_I2, ADB)).toEqual(Either.left("IdentityShare"))
    expect(cpaceFinish(responder(), Y_I2, ADA)).toEqual(Either.left("IdentityShare"))
  })

  it("a share of the wrong length is refused, never thrown", () => {
    expect(cpaceFinish(initiator(), unhex(YB).subarray(0, 31), ADB)).toEqual(Either.left("InvalidShare"))
    expect(cpaceFinish(initiator(), new Uint8Array(33), ADB)).toEqual(Either.left("InvalidShare"))
    expect(cpaceFinish(initiator(), new Uint8Array(0), ADB)).toEqual(Either.left("InvalidShare"))
    // A non-canonical encoding: the field prime p = 2^255 - 19 itself, little-endian.
    const p = unhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
    expect(cpaceFinish(initiator(), p, ADB)).toEqual(Either.left("InvalidShare"))
  })
})

describe("CPace with random scalars", () => {
  const run = (clientPassword: string, serverPassword: string) => {
    const sid = Uint8Array.from({ length: 16 }, (_, i) => i)
    const a = cpaceStart({ prs: ascii(clientPassword), ci: CI, sid, ad: ADA }, "initiator")
    const b = cpaceStart({ prs: ascii(serverPassword), ci: CI, sid, ad: ADB }, "responder")
    expect(a.share.length).toBe(CPACE_SHARE_LENGTH)
    const iskA = cpaceFinish(a, b.share, ADB)
    const iskB = cpaceFinish(b, a.share, ADA)
    if (Either.isLeft(iskA) || Either.isLeft(iskB)) throw new Error("unexpected rejection")
    expect(iskA.right.length).toBe(CPACE_ISK_LENGTH)
    return { a: hex(iskA.right), b: hex(iskB.right), shares: [hex(a.share), hex(b.share)] }
  }

  it("the same password gives the same ISK; fresh scalars give fresh shares", () => {
    const first = run("correct horse", "correct horse")
    const second = run("correct horse", "correct horse")
    expect(first.a).toBe(first.b)
    expect(second.a).toBe(second.b)
    expect(first.a).not.toBe(second.a)
    expect(first.shares).not.toEqual(second.shares)
  })

  it("different passwords give different ISKs, and neither side can tell from CPace alone", () => {
    const result = run("correct horse", "correct hors")
    expect(result.a).not.toBe(result.b)
  })

  it("the state does not print its scalar", () => {
    const state = cpaceStart({ prs: PRS, ci: CI, sid: SID, ad: ADA }, "initiator", fixed(YA_SCALAR))
    const printed = JSON.stringify(state, (_, v: unknown) => (typeof v === "bigint" ? v.toString(16) : v))
    expect(printed).not.toContain(littleEndian(YA_SCALAR).toString(16))
  })
})

describe("what a captured CPace run gives an offline dictionary (issue 12)", () => {
  const hmac = (key: Uint8Array, label: string) => new Uint8Array(createHmac("sha256", key).update(label).digest())
  const dictionary = ["123456", "password", "letmein", "pw", ...Array.from({ length: 496 }, (_, i) => `guess-${i}`)]

  it("the v3 HMAC proof is found by a dictionary once the relay knows auth_key; a CPace capture offers no test at all", () => {
    // v3 (PROTOCOL.md §5 before CPace): a relay that terminated the client's ECDH knows auth_key and
    // H2, i.e. every input of client_proof but the password. One capture, then one HMAC pair a guess.
    const authKey = new Uint8Array(32).fill(7)
    const h2 = new Uint8Array(32).fill(9)
    const proofOf = (password: string) =>
      new Uint8Array(createHmac("sha256", hmac(authKey, password)).update("cvg1 client proof").update(h2).digest())
    const captured = hex(proofOf("pw"))
    expect(dictionary.filter((guess) => hex(proofOf(guess)) === captured)).toEqual(["pw"])

    // CPace: an honest run with the same password; the relay captures both shares, both ADs, sid
    // (public) and even CI (not sent, but guessable), and a confirmation MAC keyed from ISK.
    const sid = Uint8Array.from({ length: 32 }, (_, i) => i * 3)
    const a = cpaceStart({ prs: ascii("pw"), ci: CI, sid, ad: ADA }, "initiator")
    const b = cpaceStart({ prs: ascii("pw"), ci: CI, sid, ad: ADB }, "responder")
    const isk = Either.getOrThrow(cpaceFinish(b, a.share, ADA))
    const confirmation = hex(hmac(isk, "confirm"))
    // The relay's only computation per guess: its own scalar against the captured share. Without
    // y_a or y_b it cannot reach K = y_a·y_b·g_pw, so not even the right password matches.
    const matches = dictionary.filter((guess) => {
      const relay = cpaceStart({ prs: ascii(guess), ci: CI, sid, ad: ADA }, "initiator")
      const candidate = cpaceFinish(relay, b.share, ADB)
      return Either.isRight(candidate) && hex(hmac(candidate.right, "confirm")) === confirmation
    })
    expect(matches).toEqual([])
  }, 60_000)

  it("every CPace value on the wire depends on a secret scalar as well as the password", () => {
    const sid = new Uint8Array(32)
    const share = (password: string, scalar: Uint8Array) =>
      hex(cpaceStart({ prs: ascii(password), ci: CI, sid, ad: ADA }, "initiator", fixed(scalar)).share)
    const otherScalar = Uint8Array.from(YA_SCALAR, (byte, i) => (i === 0 ? byte ^ 1 : byte))
    // Changing the password changes the share; so does changing only the scalar: the share is a
    // function of both, never of the password alone.
    expect(share("pw", YA_SCALAR)).not.toBe(share("pw2", YA_SCALAR))
    expect(share("pw", YA_SCALAR)).not.toBe(share("pw", otherScalar))
    // And with the scalar unknown, the same password gives unrelated shares run after run.
    const shares = new Set(Array.from({ length: 8 }, () => hex(cpaceStart({ prs: ascii("pw"), ci: CI, sid, ad: ADA }, "initiator").share)))
    expect(shares.size).toBe(8)
  })
})
