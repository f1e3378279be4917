/**
 * The key schedule (PROTOCOL.md §4.2), written as RFC 5869 HKDF on top of the service's HMAC-SHA256.
 *
 * Every output is at most one SHA-256 block, so HKDF-Expand is a single HMAC: `T(1) = HMAC(prk, info ‖ 0x01)`.
 * Writing it that way keeps the whole schedule synchronous, which matters for key updates: they
 * happen inside the frame path, where no Effect may run (docs/performance.md).
 */
import type { CryptoService } from "../crypto/Crypto.js"
import { concatBytes } from "../internal/bytes.js"

const encoder = new TextEncoder()
const label = (name: string): Uint8Array => encoder.encode(`cvg1 ${name}`)

export const Labels = {
  clientHandshake: label("c2s handshake"),
  serverHandshake: label("s2c handshake"),
  derived: label("derived"),
  clientTraffic: label("c2s traffic"),
  serverTraffic: label("s2c traffic"),
  serverFinished: label("s finished"),
  clientFinished: label("c finished"),
  key: label("key"),
  iv: label("iv"),
  update: label("update")
} as const

/** HKDF-Extract (RFC 5869 §2.2). */
export const extract = (crypto: CryptoService, salt: Uint8Array, ikm: Uint8Array): Uint8Array =>
  crypto.hmacSha256(salt, ikm)

/** HKDF-Expand (RFC 5869 §2.3) for lengths up to 32 bytes. */
export const expand = (crypto: CryptoService, prk: Uint8Array, info: Uint8Array, length: number): Uint8Array =>
  crypto.hmacSha256(prk, concatBytes([info, Uint8Array.of(1)])).subarray(0, length)

/** One direction's AEAD key and static IV, from its traffic secret (PROTOCOL.md §4.3). */
export interface TrafficKeys {
  readonly secret: Uint8Array
  readonly key: Uint8Array
  readonly iv: Uint8Array
}

export const trafficKeys = (crypto: CryptoService, secret: Uint8Array): TrafficKeys => ({
  secret,
  key: expand(crypto, secret, Labels.key, 32),
  iv: expand(crypto, secret, Labels.iv, 12)
})

/** The next generation after a KEY_UPDATE (PROTOCOL.md §7.2): the old secret is never used again. */
export const nextTrafficKeys = (crypto: CryptoService, current: Pick<TrafficKeys, "secret">): TrafficKeys =>
  trafficKeys(crypto, expand(crypto, current.secret, Labels.update, 32))

/**
 * What the ECDH secret and the hellos give (PROTOCOL.md §4.2): the keys that seal the rest of the
 * handshake, and the salt of the second stage. They do not depend on the password, so that a client
 * can check the server's identity (§3.7) before anything password-bound is involved.
 */
export interface HandshakeSecrets {
  readonly prk: Uint8Array
  readonly clientHandshake: TrafficKeys
  readonly serverHandshake: TrafficKeys
  readonly derived: Uint8Array
}

export const deriveHandshakeSecrets = (
  crypto: CryptoService,
  sharedSecret: Uint8Array,
  helloTranscriptHash: Uint8Array
): HandshakeSecrets => {
  const prk = extract(crypto, helloTranscriptHash, sharedSecret)
  return {
    prk,
    clientHandshake: trafficKeys(crypto, expand(crypto, prk, Labels.clientHandshake, 32)),
    serverHandshake: trafficKeys(crypto, expand(crypto, prk, Labels.serverHandshake, 32)),
    derived: expand(crypto, prk, Labels.derived, 32)
  }
}

/** The second stage (§4.2): the finished keys and the session's traffic keys, bound to the PAKE's ISK. */
export interface SessionSecrets {
  readonly master: Uint8Array
  readonly clientFinishedKey: Uint8Array
  readonly serverFinishedKey: Uint8Array
  readonly clientTraffic: TrafficKeys
  readonly serverTraffic: TrafficKeys
}

/**
 * `isk` is CPace's 64-byte ISK when both hellos carried a share (§5), else empty: the capability bits
 * inside H1 already say which, so the two cases cannot be confused.
 */
export const deriveSessionSecrets = (crypto: CryptoService, handshake: HandshakeSecrets, isk: Uint8Array): SessionSecrets => {
  const master = extract(crypto, handshake.derived, isk)
  return {
    master,
    clientFinishedKey: expand(crypto, master, Labels.clientFinished, 32),
    serverFinishedKey: expand(crypto, master, Labels.serverFinished, 32),
    clientTraffic: trafficKeys(crypto, expand(crypto, master, Labels.clientTraffic, 32)),
    serverTraffic: trafficKeys(crypto, expand(crypto, master, Labels.serverTraffic, 32))
  }
}

/** Per-record nonce (PROTOCOL.md §4.4): the static IV xor the 64-bit big-endian sequence number. */
export const recordNonce = (iv: Uint8Array, sequence: number, out: Uint8Array): Uint8Array => {
  out.set(iv)
  // Sequence numbers stay below 2^32 (PROTOCOL.md §7.2 caps them at 2^24), so the top four bytes are the IV's.
  out[8]! ^= (sequence >>> 24) & 0xff
  out[9]! ^= (sequence >>> 16) & 0xff
  out[10]! ^= (sequence >>> 8) & 0xff
  out[11]! ^= sequence & 0xff
  return out
}
