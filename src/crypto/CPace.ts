/**
 * CPace, the balanced PAKE of draft-irtf-cfrg-cpace-21, cipher suite CPACE-RISTR255-SHA512
 * (group ristretto255 of RFC 9496, hash SHA-512), in the draft's initiator-responder setting:
 * the client is the initiator A, the server the responder B (PROTOCOL.md §5).
 *
 * Why these pieces come from where they do: SHA-512 is `node:crypto`, like every other primitive of
 * the protocol; only the group (decoding, encoding, element derivation, scalar multiplication) comes
 * from `@noble/curves`, because `node:crypto` has no ristretto255 and field arithmetic must not be
 * hand-rolled (README, dependencies). noble's scalar multiplication is constant-time, as the draft's
 * "Side channel attacks" section asks.
 *
 * The functions are pure and synchronous (one hash-to-group and two scalar multiplications per side,
 * well under a millisecond) and never throw: a refused peer share comes back as `Left`, which the
 * handshake maps to its own typed error.
 */
import { ristretto255, ristretto255_hasher } from "@noble/curves/ed25519.js"
import { Either } from "effect"
import { createHash, randomBytes } from "node:crypto"

/** The suite's name as the draft spells it (§"CPace cipher suites"). */
export const CPACE_SUITE = "CPACE-RISTR255-SHA512"
/** The draft this module implements, so that documents and tests can name it. */
export const CPACE_DRAFT = "draft-irtf-cfrg-cpace-21"

/** A ristretto255 encoding: 32 bytes (G_Ristretto255.field_size_bytes). */
export const CPACE_SHARE_LENGTH = 32
/** ISK is one SHA-512 output (H.b_in_bytes). */
export const CPACE_ISK_LENGTH = 64

const DSI = new TextEncoder().encode("CPaceRistretto255")
const DSI_ISK = new TextEncoder().encode("CPaceRistretto255_ISK")
/** SHA-512's input block size, H.s_in_bytes: the zero padding fills the first block (draft §generator_string). */
const SHA512_BLOCK = 128
const GROUP_SIZE_BYTES = 32
/** G.I, the public encoding of the neutral element. */
const IDENTITY = new Uint8Array(CPACE_SHARE_LENGTH)

/** Where the secret scalar's bytes come from; `node:crypto`'s CSPRNG unless a test pins it. */
export type CPaceRandom = (length: number) => Uint8Array

export type CPaceRole = "initiator" | "responder"

export interface CPaceInput {
  /** The password-related string: here the password's bytes (never logged, never sent). */
  readonly prs: Uint8Array
  /** Channel identifier, known to both sides and never sent (draft §"CPace inputs"). */
  readonly ci: Uint8Array
  /** Session identifier, public and unique per session. */
  readonly sid: Uint8Array
  /** This side's associated data (ADa for the initiator, ADb for the responder), sent in clear. */
  readonly ad: Uint8Array
}

/**
 * Why a peer's share was refused (draft §"CPace protocol instructions": abort when K = G.I).
 * `InvalidShare`: not 32 bytes, or not a canonical ristretto255 encoding; `IdentityShare`: the
 * encoding of the neutral element, which would make K = G.I for every password.
 */
export type CPaceRejection = "InvalidShare" | "IdentityShare"

/**
 * One side's state between sending its share and receiving the peer's. The scalar is an ECMAScript
 * private field so that neither `util.inspect`, JSON nor a structured log can print it; each state
 * is used for one `cpaceFinish` only (the draft's "Nonce values": scalars MUST NOT be reused).
 */
export class CPaceState {
  readonly #scalar: bigint
  constructor(
    readonly role: CPaceRole,
    scalar: bigint,
    /** This side's share, the 32-byte encoding to send. */
    readonly share: Uint8Array,
    readonly sid: Uint8Array,
    readonly ad: Uint8Array
  ) {
    this.#scalar = scalar
  }
  /** @internal for `cpaceFinish` only. */
  static scalarOf(state: CPaceState): bigint {
    return state.#scalar
  }
}

// ---------------------------------------------------------------------------------------------
// The draft's string utilities (Appendix "CPace function definitions").

/** LEB128 length followed by the bytes. */
export const prependLen = (data: Uint8Array): Uint8Array => {
  const length: Array<number> = []
  let n = data.length
  do {
    length.push(n < 128 ? n : (n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  } while (n > 0)
  const out = new Uint8Array(length.length + data.length)
  out.set(length, 0)
  out.set(data, length.length)
  return out
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

export const lvCat = (...parts: ReadonlyArray<Uint8Array>): Uint8Array => concat(parts.map(prependLen))

/** transcript_ir(Ya, ADa, Yb, ADb): the initiator's message always first. */
export const transcriptIr = (ya: Uint8Array, ada: Uint8Array, yb: Uint8Array, adb: Uint8Array): Uint8Array =>
  concat([lvCat(ya, ada), lvCat(yb, adb)])

/** generator_string(DSI, PRS, CI, sid, s_in_bytes) with SHA-512's block size. */
export const generatorString = (prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Uint8Array => {
  const zpad = Math.max(0, SHA512_BLOCK - 1 - prependLen(prs).length - prependLen(DSI).length)
  return lvCat(DSI, prs, new Uint8Array(zpad), ci, sid)
}

const sha512 = (data: Uint8Array): Uint8Array => new Uint8Array(createHash("sha512").update(data).digest())

type Point = InstanceType<typeof ristretto255.Point>

/**
 * RFC 9496 §4.3.4 element derivation (64 bytes to a point). noble types it as optional on its
 * hasher interface but defines it for ristretto255; a release without it would be a broken
 * dependency, refused when this module loads rather than on a connection.
 */
const elementDerivation: (bytes: Uint8Array) => Point = (() => {
  const derive = ristretto255_hasher.deriveToCurve
  if (derive === undefined) throw new Error("@noble/curves lacks ristretto255 element derivation (RFC 9496)")
  return (bytes) => derive(bytes)
})()

/** G.calculate_generator: SHA-512 of the generator string, then RFC 9496 element derivation. */
const generator = (prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Point =>
  elementDerivation(sha512(generatorString(prs, ci, sid)))

/** The generator's public encoding, for the draft's test vector only: it is secret in a real run. */
export const calculateGeneratorEncoding = (prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Uint8Array =>
  generator(prs, ci, sid).toBytes()

const littleEndian = (bytes: Uint8Array): bigint => {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] ?? 0)
  return n
}

/**
 * G.sample_scalar as the draft recommends for ristretto255: 32 random bytes with the bits above
 * group_size_bits = 252 cleared, read little-endian. Such a value is below the group order; zero
 * (probability 2^-252) is drawn again, since noble refuses it and it would send the identity.
 */
const sampleScalar = (random: CPaceRandom): bigint => {
  for (;;) {
    const bytes = Uint8Array.from(random(GROUP_SIZE_BYTES).subarray(0, GROUP_SIZE_BYTES))
    bytes[GROUP_SIZE_BYTES - 1] = (bytes[GROUP_SIZE_BYTES - 1] ?? 0) & 0x0f
    const scalar = littleEndian(bytes)
    if (scalar !== 0n) return scalar
  }
}

const defaultRandom: CPaceRandom = (length) => new Uint8Array(randomBytes(length))

/**
 * G.scalar_mult_vfy(y, X): decode X, multiply, encode; G.I when X does not decode. Exported for the
 * draft's invalid-point vectors; the protocol goes through `cpaceFinish`.
 */
export const scalarMultVfy = (scalar: bigint, encoded: Uint8Array): Uint8Array => {
  if (encoded.length !== CPACE_SHARE_LENGTH) return IDENTITY
  try {
    return ristretto255.Point.fromBytes(encoded).multiply(scalar).toBytes()
  } catch {
    // noble throws on a non-canonical or off-group encoding: that is the draft's "decode fails".
    return IDENTITY
  }
}

const isIdentity = (encoded: Uint8Array): boolean => {
  // Constant time in the contents: K is secret.
  let acc = encoded.length ^ CPACE_SHARE_LENGTH
  for (const byte of encoded) acc |= byte
  return acc === 0
}

/**
 * Computes this side's share Y = y·g, g derived from the password, the channel identifier and the
 * session identifier. `random` exists for the draft's test vectors; production leaves it out.
 */
export const cpaceStart = (input: CPaceInput, role: CPaceRole, random: CPaceRandom = defaultRandom): CPaceState => {
  const scalar = sampleScalar(random)
  const share = generator(input.prs, input.ci, input.sid).multiply(scalar).toBytes()
  return new CPaceState(role, scalar, share, Uint8Array.from(input.sid), Uint8Array.from(input.ad))
}

/**
 * Derives ISK = SHA-512(lv_cat(DSI ‖ "_ISK", sid, K) ‖ transcript_ir(Ya, ADa, Yb, ADb)) from the
 * peer's share and associated data, or refuses the share. Both sides get the same 64 bytes exactly
 * when they used the same password, CI, sid and saw the same shares and ADs; a wrong password is
 * not detected here (CPace has no confirmation of its own) but by the key confirmation that follows
 * (PROTOCOL.md §3.3, the Finished MACs).
 *
 * K itself never leaves this function: the draft's "Key derivation" forbids exposing it, since K
 * would let an offline dictionary test guesses.
 */
export const cpaceFinish = (
  state: CPaceState,
  peerShare: Uint8Array,
  peerAd: Uint8Array
): Either.Either<Uint8Array, CPaceRejection> => {
  if (peerShare.length !== CPACE_SHARE_LENGTH) return Either.left("InvalidShare")
  let peer: Point
  try {
    peer = ristretto255.Point.fromBytes(peerShare)
  } catch {
    return Either.left("InvalidShare")
  }
  const k = peer.multiply(CPaceState.scalarOf(state)).toBytes()
  // ristretto255 has prime order, so K = G.I exactly when the peer sent the identity's encoding.
  if (isIdentity(k)) return Either.left("IdentityShare")
  const transcript = state.role === "initiator"
    ? transcriptIr(state.share, state.ad, peerShare, peerAd)
    : transcriptIr(peerShare, peerAd, state.share, state.ad)
  return Either.right(sha512(concat([lvCat(DSI_ISK, state.sid, k), transcript])))
}
