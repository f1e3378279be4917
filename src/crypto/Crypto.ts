/**
 * The `Crypto` service: every primitive the protocol uses, behind one tag, so that the handshake can
 * run on `node:crypto` in production and on a deterministic variant for golden transcripts.
 *
 * Sizes are fixed by PROTOCOL.md §1: P-521 public keys are 133-byte uncompressed SEC1 points, shared
 * secrets are the 66-byte x-coordinate, AES-256-GCM keys are 32 bytes, nonces 12 bytes, tags 16 bytes.
 */
import { Context, Schema } from "effect"
import type { Effect, Either } from "effect"
import type { KeyObject } from "node:crypto"

export const PUBLIC_KEY_LENGTH = 133
export const SHARED_SECRET_LENGTH = 66
export const AEAD_KEY_LENGTH = 32
export const AEAD_NONCE_LENGTH = 12
export const AEAD_TAG_LENGTH = 16

/**
 * A primitive refused its input. Decryption failures (`DecryptFailed`) deliberately say nothing more.
 * `Busy`: P-521 work was refused at once because the work in flight and the queue waiting for it
 * are both full (admission control, PROTOCOL.md §10).
 */
export class CryptoError extends Schema.TaggedError<CryptoError>()("CryptoError", {
  reason: Schema.Literal("InvalidPublicKey", "InvalidLength", "DecryptFailed", "Internal", "Busy"),
  detail: Schema.optional(Schema.String)
}) {}

/** An ephemeral P-521 key pair; the private half never leaves the service as bytes. */
export interface EcdhKeyPair {
  /** Uncompressed SEC1 point `04 ‖ X ‖ Y`, 133 bytes. */
  readonly publicKey: Uint8Array
  /** Opaque to callers: only the `Crypto` implementation that made it can use it. */
  readonly privateKey: unknown
}

/** A peer's public key that passed full validation (on the curve, not the identity, right length). */
export interface EcdhPublicKey {
  readonly raw: Uint8Array
  readonly handle: unknown
}

/**
 * AES-256-GCM bound to one key, synchronous because it sits on the hot path of every frame
 * (docs/performance.md: no per-message Effects). It never throws: wrong lengths and bad tags come back as
 * `Left`. `NodeCrypto`'s methods are functions shared by every key that read the key from the object
 * they are called on (docs/resources.md): a `Crypto` that wraps one calls them on it, or on a spread
 * copy (`inner.open(...)`, `{ ...inner, open }`), never detached (`const { open } = inner`).
 */
export interface Aead {
  /** Returns `ciphertext ‖ tag`. */
  readonly seal: (nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array) => Either.Either<Uint8Array, CryptoError>
  /**
   * Seals the concatenation of `parts` without concatenating them first; returns the ciphertext in
   * pieces followed by the 16-byte tag, ready to be written one after another.
   */
  readonly sealParts: (
    nonce: Uint8Array,
    aad: Uint8Array,
    parts: ReadonlyArray<Uint8Array>
  ) => Either.Either<ReadonlyArray<Uint8Array>, CryptoError>
  /** Takes `ciphertext ‖ tag`; returns the plaintext, or `Left(DecryptFailed)` without detail. */
  readonly open: (nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array) => Either.Either<Uint8Array, CryptoError>
  /**
   * AES-GMAC: the 16-byte tag of AES-256-GCM over the associated data `parts` (taken in order, as if
   * concatenated) with an empty plaintext. Plaintext mode's record tag (PROTOCOL.md §4.4).
   */
  readonly tagParts: (nonce: Uint8Array, parts: ReadonlyArray<Uint8Array>) => Either.Either<Uint8Array, CryptoError>
  /** Checks a `tagParts` tag in constant time; `Left(DecryptFailed)` without detail when it does not verify. */
  readonly verifyParts: (
    nonce: Uint8Array,
    parts: ReadonlyArray<Uint8Array>,
    tag: Uint8Array
  ) => Either.Either<void, CryptoError>
}

export interface Sha256Hasher {
  readonly update: (data: Uint8Array) => void
  readonly digest: () => Uint8Array
}

/** How busy the P-521 work of a `Crypto` is: jobs running and jobs waiting for a slot. */
export interface CryptoLoad {
  readonly inFlight: number
  readonly queued: number
  readonly concurrency: number
  readonly maxQueue: number
}

export interface CryptoService {
  /** A fresh ephemeral P-521 key pair, generated off the event loop. */
  readonly generateKeyPair: Effect.Effect<EcdhKeyPair, CryptoError>
  /** Imports a peer's raw SEC1 point, rejecting anything that is not a valid uncompressed P-521 point. */
  readonly importPublicKey: (raw: Uint8Array) => Effect.Effect<EcdhPublicKey, CryptoError>
  /** ECDH: the 66-byte big-endian x-coordinate of `private · peer`, computed off the event loop. */
  readonly deriveSharedSecret: (own: EcdhKeyPair, peer: EcdhPublicKey) => Effect.Effect<Uint8Array, CryptoError>
  /** HKDF-SHA256 (RFC 5869), extract then expand. */
  readonly hkdf: (
    ikm: Uint8Array,
    salt: Uint8Array,
    info: Uint8Array,
    length: number
  ) => Effect.Effect<Uint8Array, CryptoError>
  /**
   * AES-256-GCM with a 32-byte key; `Left(InvalidLength)` for any other key size. Synchronous because
   * a key update installs a new key inside the frame path (PROTOCOL.md §7.2).
   */
  readonly aead: (key: Uint8Array) => Either.Either<Aead, CryptoError>
  readonly sha256: (data: Uint8Array) => Uint8Array
  /** Incremental SHA-256, for payloads that arrive in pieces (PROTOCOL.md §9.2). */
  readonly sha256Hasher: () => Sha256Hasher
  readonly hmacSha256: (key: Uint8Array, data: Uint8Array) => Uint8Array
  readonly randomBytes: (length: number) => Effect.Effect<Uint8Array>
  /**
   * Ed25519 (RFC 8032) over `data` with an identity key's private half (PROTOCOL.md §3.7): 64 bytes.
   * Deterministic by construction, so golden transcripts need nothing of the seed for it.
   */
  readonly signEd25519: (privateKey: KeyObject, data: Uint8Array) => Either.Either<Uint8Array, CryptoError>
  /**
   * Whether `signature` is an Ed25519 signature of `data` by the 32-byte raw `publicKey`; `false` for
   * anything malformed (a key that is not a point, wrong lengths), never a failure.
   */
  readonly verifyEd25519: (publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array) => boolean
  /** Constant-time equality; different lengths compare unequal without leaking where they differ. */
  readonly timingSafeEqual: (a: Uint8Array, b: Uint8Array) => boolean
  /** The P-521 work queue's state, when the implementation has one (the server's admission control reads it). */
  readonly load?: (() => CryptoLoad) | undefined
}

export class Crypto extends Context.Tag("cvg-core/Crypto")<Crypto, CryptoService>() {}
