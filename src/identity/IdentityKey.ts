/**
 * A server's long-term identity key (PROTOCOL.md §3.7): an Ed25519 key pair whose public half travels
 * in the SERVER_HELLO and whose private half signs every handshake's transcript.
 *
 * Ed25519 rather than P-521 ECDSA (PROTOCOL.md §3.7 gives the figures): on `node:crypto` a signature
 * costs ~0.15 ms against ~5-7 ms, and a verification ~0.3 ms against ~3-7 ms, which would otherwise
 * double the server's CPU per handshake; its signatures are deterministic (no nonce to get wrong),
 * 64 bytes of fixed length, and its public keys 32 raw bytes with a single encoding.
 */
import * as NodeCrypto from "node:crypto"
import { Effect } from "effect"
import { InvalidArgument } from "../errors.js"

/** The length of an Ed25519 public key as it travels in the handshake (RFC 8032 §5.1.5). */
export const IDENTITY_PUBLIC_KEY_LENGTH = 32
/** The length of an Ed25519 signature (RFC 8032 §5.1.6). */
export const IDENTITY_SIGNATURE_LENGTH = 64

export interface IdentityKey {
  /** The public key as it travels in the handshake (Ed25519: the 32 raw bytes). */
  readonly publicKey: Uint8Array
  readonly privateKey: NodeCrypto.KeyObject
  /** "sha256:" followed by the lowercase hex of SHA-256(publicKey). */
  readonly fingerprint: string
}

/** What a pinned `serverKey` and a known-hosts line hold: "sha256:" and 64 lowercase hex digits. */
export const fingerprintOf = (publicKey: Uint8Array): string =>
  `sha256:${NodeCrypto.createHash("sha256").update(publicKey).digest("hex")}`

/**
 * The DER of an Ed25519 SubjectPublicKeyInfo before its 32 key bytes (RFC 8410 §4); `node:crypto`
 * encodes every Ed25519 public key with exactly this prefix.
 */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex")

const rawPublicKeyOf = (publicKey: NodeCrypto.KeyObject): Uint8Array => {
  const spki = publicKey.export({ format: "der", type: "spki" })
  return Uint8Array.from(spki.subarray(ED25519_SPKI_PREFIX.length))
}

const fromKeyPair = (privateKey: NodeCrypto.KeyObject, publicKey: NodeCrypto.KeyObject): IdentityKey => {
  const raw = rawPublicKeyOf(publicKey)
  return { publicKey: raw, privateKey, fingerprint: fingerprintOf(raw) }
}

/** A fresh identity key from the system's randomness. */
export const generateIdentityKey: Effect.Effect<IdentityKey> = Effect.sync(() => {
  const { privateKey, publicKey } = NodeCrypto.generateKeyPairSync("ed25519")
  return fromKeyPair(privateKey, publicKey)
})

const describe = (key: NodeCrypto.KeyObject): string =>
  key.type === "secret" ? "a secret key" : `${key.type === "private" ? "a private" : "a public"} ${key.asymmetricKeyType ?? "unknown"} key`

/**
 * The identity key of an Ed25519 private key (from a PEM file, an env var, ...); any other key fails
 * with `InvalidArgument` on the field `identity`, naming what it was.
 */
export const identityKeyFromPrivate = (privateKey: NodeCrypto.KeyObject): Effect.Effect<IdentityKey, InvalidArgument> =>
  Effect.suspend(() =>
    privateKey instanceof NodeCrypto.KeyObject && privateKey.type === "private" && privateKey.asymmetricKeyType === "ed25519"
      ? Effect.succeed(fromKeyPair(privateKey, NodeCrypto.createPublicKey(privateKey)))
      : Effect.fail(
        new InvalidArgument({
          reason: "Option",
          field: "identity",
          detail: `expected a private ed25519 key, got ${privateKey instanceof NodeCrypto.KeyObject ? describe(privateKey) : typeof privateKey}`
        })
      )
  )
