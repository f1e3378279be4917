/**
 * A `Crypto` whose randomness and ephemeral key pairs come from a seed, so that a handshake run twice
 * produces the same bytes: FOR GOLDEN TRANSCRIPTS AND TESTS ONLY. Anyone who knows the seed knows
 * every key it makes; never use it for real traffic.
 *
 * Everything except `randomBytes` and `generateKeyPair` is the `node:crypto` implementation.
 *
 * The stream (so that other implementations can reproduce the transcripts in PROTOCOL.md):
 * block_i = SHA-256("cvg-core/DeterministicCrypto/v1" ‖ 0x00 ‖ UTF-8(seed) ‖ u64be(i)), i = 0, 1, ...;
 * the stream is block_0 ‖ block_1 ‖ ..., and each call consumes the next bytes of it, so calls are
 * reproducible in order. `randomBytes(k)` takes k bytes. `generateKeyPair` takes 82 bytes c
 * (big-endian) and uses the private scalar d = (c mod (n - 1)) + 1, as in FIPS 186-5 A.2.1, which puts
 * d in [1, n-1] with negligible bias.
 */
import { Effect, Layer } from "effect"
import { Crypto } from "./Crypto.js"
import type { CryptoService, EcdhKeyPair, CryptoError } from "./Crypto.js"
import * as NodeCrypto from "./NodeCrypto.js"

const DOMAIN = new TextEncoder().encode("cvg-core/DeterministicCrypto/v1\u0000")
const SCALAR_LENGTH = 66
/** 64 bits beyond the scalar, per FIPS 186-5 A.2.1, so the reduction's bias is negligible. */
const SCALAR_DRAW_LENGTH = SCALAR_LENGTH + 16

const toScalar = (bytes: Uint8Array): Uint8Array => {
  const c = BigInt(`0x${Buffer.from(bytes).toString("hex")}`)
  const d = (c % (NodeCrypto.P521_ORDER - 1n)) + 1n
  return Buffer.from(d.toString(16).padStart(SCALAR_LENGTH * 2, "0"), "hex")
}

export const make = (seed: string): Effect.Effect<CryptoService> =>
  Effect.gen(function*() {
    const node = yield* NodeCrypto.make
    const prefix = Buffer.concat([DOMAIN, new TextEncoder().encode(seed)])
    // The stream's state lives in this closure, so every `make` starts again at block 0.
    let counter = 0n
    let pending: Uint8Array = new Uint8Array(0)

    const draw = (length: number): Uint8Array => {
      const out = new Uint8Array(length)
      let filled = 0
      while (filled < length) {
        if (pending.length === 0) {
          const index = Buffer.alloc(8)
          index.writeBigUInt64BE(counter)
          counter += 1n
          pending = node.sha256(Buffer.concat([prefix, index]))
        }
        const take = Math.min(pending.length, length - filled)
        out.set(pending.subarray(0, take), filled)
        pending = pending.subarray(take)
        filled += take
      }
      return out
    }

    const randomBytes = (length: number): Effect.Effect<Uint8Array> => Effect.sync(() => draw(length))

    // The draw happens when the effect runs, not when it is built, so each run takes fresh bytes.
    const generateKeyPair: Effect.Effect<EcdhKeyPair, CryptoError> = Effect.suspend(() =>
      NodeCrypto.keyPairFromPrivateScalar(toScalar(draw(SCALAR_DRAW_LENGTH)))
    )

    return { ...node, randomBytes, generateKeyPair }
  })

export const layer = (seed: string): Layer.Layer<Crypto> => Layer.effect(Crypto, make(seed))
