/**
 * The identity key (PROTOCOL.md §3.7): generation, fingerprints, and what `identityKeyFromPrivate`
 * refuses.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeCrypto from "node:crypto"
import { fingerprintOf, generateIdentityKey, identityKeyFromPrivate } from "../src/identity/IdentityKey.js"

describe("IdentityKey", () => {
  it.effect("a generated key has 32 raw public bytes and their SHA-256 fingerprint", () =>
    Effect.gen(function*() {
      const key = yield* generateIdentityKey
      expect(key.publicKey.length).toBe(32)
      expect(key.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/)
      expect(key.fingerprint).toBe(`sha256:${NodeCrypto.createHash("sha256").update(key.publicKey).digest("hex")}`)
      // The raw bytes are the key itself: node verifies a signature made by the private half with them.
      const jwk = { kty: "OKP", crv: "Ed25519", x: Buffer.from(key.publicKey).toString("base64url") }
      const publicKey = NodeCrypto.createPublicKey({ key: jwk, format: "jwk" })
      const signature = NodeCrypto.sign(null, Buffer.from("m"), key.privateKey)
      expect(NodeCrypto.verify(null, Buffer.from("m"), publicKey, signature)).toBe(true)
    }))

  it.effect("identityKeyFromPrivate gives back the same public key and fingerprint", () =>
    Effect.gen(function*() {
      const key = yield* generateIdentityKey
      const pem = key.privateKey.export({ format: "pem", type: "pkcs8" })
      const again = yield* identityKeyFromPrivate(NodeCrypto.createPrivateKey(pem))
      expect(again.publicKey).toEqual(key.publicKey)
      expect(again.fingerprint).toBe(key.fingerprint)
      expect(fingerprintOf(again.publicKey)).toBe(key.fingerprint)
    }))

  it.effect("a key of another type is InvalidArgument on identity, naming the type", () =>
    Effect.gen(function*() {
      const ec = NodeCrypto.generateKeyPairSync("ec", { namedCurve: "P-521" })
      const wrongType = yield* Effect.flip(identityKeyFromPrivate(ec.privateKey))
      expect(wrongType).toMatchObject({ _tag: "InvalidArgument", reason: "Option", field: "identity" })
      expect(wrongType.detail).toContain("private ec key")
      const ed = NodeCrypto.generateKeyPairSync("ed25519")
      const publicOnly = yield* Effect.flip(identityKeyFromPrivate(ed.publicKey))
      expect(publicOnly.detail).toContain("public ed25519 key")
    }))
})
