/**
 * A misbehaving plaintext-mode peer for session tests: a client `Crypto` that lets a test add frames
 * of its own to the client's byte stream with valid AES-GMAC tags (PROTOCOL.md §4.4), so that the
 * server's session rules (§7, §9, §10) are reached instead of the tag check.
 *
 * How: plaintext records are tagged with the send key's `tagParts`, whose first call is sequence 0
 * (CLIENT_FINISHED), so its nonce is the static IV. The wrapper keeps, per key, how many records the
 * library tagged and how many the test injected, and shifts the library's later nonces past the
 * injected ones: the server sees one gapless sequence. Never for anything but tests.
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

export const makeTaggingCrypto: Effect.Effect<TaggingCrypto> = Effect.gen(function*() {
  const node = yield* NodeCrypto.make
  let current: SendKey | undefined
  const nonceAt = (iv: Uint8Array, sequence: number) => recordNonce(iv, sequence, new Uint8Array(12))

  const crypto: CryptoService = {
    ...node,
    aead: (key) =>
      Either.map(node.aead(key), (inner): Aead => {
        const state: SendKey = { inner, iv: undefined, tagged: 0, injected: 0 }
        return {
          ...inner,
          tagParts: (nonce, parts) => {
            if (state.iv === undefined) state.iv = Uint8Array.from(nonce)
            current = state
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
