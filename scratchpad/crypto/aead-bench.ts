// Rough per-call cost of the service's AEAD vs a bare createCipheriv loop (not a benchmark of record).
import { Effect, Either } from "effect"
import * as Node from "node:crypto"
import * as NodeCrypto from "../../src/crypto/NodeCrypto.ts"
const svc = Effect.runSync(NodeCrypto.make)
const aead = Either.getOrThrow(svc.aead(Node.randomBytes(32)))
const nonce = Node.randomBytes(12), aad = Node.randomBytes(8)
for (const size of [65536, 16384, 64, 65536]) {
  const pt = Node.randomBytes(size)
  const n = size === 64 ? 200_000 : 20_000
  let t = performance.now()
  let sealed = new Uint8Array(0)
  for (let i = 0; i < n; i++) sealed = Either.getOrThrow(aead.seal(nonce, aad, pt))
  const sealUs = ((performance.now() - t) * 1000) / n
  t = performance.now()
  for (let i = 0; i < n; i++) Either.getOrThrow(aead.open(nonce, aad, sealed))
  const openUs = ((performance.now() - t) * 1000) / n
  console.log(`${size} B: seal ${sealUs.toFixed(2)} us (${(size / sealUs).toFixed(0)} MB/s), open ${openUs.toFixed(2)} us (${(size / openUs).toFixed(0)} MB/s)`)
}
