/**
 * A misbehaving plaintext-mode peer for session tests: a client `Crypto` that lets a test add frames
 * of its own to the client's byte stream with valid AES-GMAC tags (PROTOCOL.md §4.4), so that the
 * server's session rules (§7, §9, §10) are reached instead of the tag check.
 *
 * How: the wrapper learns each key's static IV as the key schedule derives it (the `cvg1 key` and
 * `cvg1 iv` expansions of one traffic secret, PROTOCOL.md §4.3), and follows the client's send key:
 * the key `tagParts` was last called with, or, once the handshake installs the traffic keys (§3.5), the
 * first key created after that, which is the new send key (the record layer creates it before the
 * receive key). It keeps, per key, how many records the library tagged and how many the test
 * injected, and shifts the library's later nonces past the injected ones: the server sees one gapless
 * sequence. Never for anything but tests, and not across key updates of the receive direction.
 */
import { Effect, Either, Layer } from "effect"
import { Crypto, type CryptoService, NodeCrypto } from "../../src/index.js"
import type { Aead } from "../../src/crypto/Crypto.js"
import { AEAD_TAG_LENGTH } from "../../src/crypto/Crypto.js"
import { recordNonce } from "../../src/handshake/KeySchedule.js"
import { frameHeader } from "../../src/wire/Frame.js"

interface SendKey {
  readonly inner: Aead
  iv: Uint8Array | undefined
  tagged: number
  injected: number
}

export interface TaggingCrypto {
  readonly layer: Layer.Layer<Crypto>
  /** Turns a plaintext frame `length ‖ type ‖ body` into its tagged form under the client's current send key. */
  readonly tag: (frame: Uint8Array) => Uint8Array
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")
const KEY_INFO = hex(new Uint8Array([...new TextEncoder().encode("cvg1 key"), 1]))
const IV_INFO = hex(new Uint8Array([...new TextEncoder().encode("cvg1 iv"), 1]))

export const makeTaggingCrypto: Effect.Effect<TaggingCrypto> = Effect.gen(function*() {
  const node = yield* NodeCrypto.make
  let current: SendKey | undefined
  // A key created since the last `tagParts` call: the next send key (see above).
  let sinceLastTag = 0
  const keyBySecret = new Map<string, string>()
  const ivByKey = new Map<string, Uint8Array>()
  const nonceAt = (iv: Uint8Array, sequence: number) => recordNonce(iv, sequence, new Uint8Array(12))

  const crypto: CryptoService = {
    ...node,
    hmacSha256: (key, data) => {
      const out = node.hmacSha256(key, data)
      const info = hex(data)
      if (info === KEY_INFO) keyBySecret.set(hex(key), hex(out.subarray(0, 32)))
      if (info === IV_INFO) {
        const aeadKey = keyBySecret.get(hex(key))
        if (aeadKey !== undefined) ivByKey.set(aeadKey, Uint8Array.from(out.subarray(0, 12)))
      }
      return out
    },
    aead: (key) =>
      Either.map(node.aead(key), (inner): Aead => {
        const state: SendKey = { inner, iv: ivByKey.get(hex(key)), tagged: 0, injected: 0 }
        if (sinceLastTag++ === 0 && current !== undefined) current = state
        return {
          ...inner,
          tagParts: (nonce, parts) => {
            if (state.iv === undefined) state.iv = Uint8Array.from(nonce)
            current = state
            sinceLastTag = 0
            return inner.tagParts(nonceAt(state.iv, state.tagged++ + state.injected), parts)
          }
        }
      })
  }

  const tag = (frame: Uint8Array): Uint8Array => {
    const key = current
    if (key === undefined || key.iv === undefined) throw new Error("the client has not tagged a record yet")
    const body = frame.subarray(5)
    const header = frameHeader(frame[4]!, body.length + AEAD_TAG_LENGTH)
    const mac = Either.getOrThrow(key.inner.tagParts(nonceAt(key.iv, key.tagged + key.injected++), [header, body]))
    const out = new Uint8Array(header.length + body.length + mac.length)
    out.set(header, 0)
    out.set(body, header.length)
    out.set(mac, header.length + body.length)
    return out
  }

  return { layer: Layer.succeed(Crypto, crypto), tag }
})
