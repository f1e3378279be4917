/**
 * A `Crypto` for tests that run hundreds of handshakes (the cut-at-every-byte sweep): `node:crypto`
 * for everything, except that the ephemeral key pair is made once per layer and reused, and each
 * imported peer key and ECDH result is remembered. The protocol's state machine is exactly the same; only
 * the P-521 cost is paid once instead of per handshake. Never for anything but tests.
 */
import { Effect, Layer } from "effect"
import { Crypto, type CryptoService, NodeCrypto } from "../../src/index.js"
import type { EcdhKeyPair, EcdhPublicKey } from "../../src/crypto/Crypto.js"

export const makeReusingCrypto: Effect.Effect<CryptoService, unknown> = Effect.gen(function*() {
  const node = yield* NodeCrypto.make
  const keyPair: EcdhKeyPair = yield* node.generateKeyPair
  const secrets = new Map<string, Uint8Array>()
  const imported = new Map<string, EcdhPublicKey>()
  return {
    ...node,
    generateKeyPair: Effect.succeed(keyPair),
    importPublicKey: (raw) => {
      const id = Buffer.from(raw).toString("hex")
      const known = imported.get(id)
      if (known !== undefined) return Effect.succeed(known)
      return Effect.tap(node.importPublicKey(raw), (key) => Effect.sync(() => imported.set(id, key)))
    },
    deriveSharedSecret: (own, peer) => {
      const id = Buffer.from(peer.raw).toString("hex")
      const known = own === keyPair ? secrets.get(id) : undefined
      if (known !== undefined) return Effect.succeed(known)
      return Effect.tap(node.deriveSharedSecret(own, peer), (secret) =>
        Effect.sync(() => {
          if (own === keyPair) secrets.set(id, secret)
        }))
    }
  }
})

/** One service per call: give the client and the server one each. */
export const reusingCryptoLayer = (service: CryptoService): Layer.Layer<Crypto> => Layer.succeed(Crypto, service)
