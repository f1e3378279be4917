/** Per-record cost of plaintext mode's tag (PROTOCOL.md §4.4): NodeCrypto's tagParts + verifyParts, 64 B and 256 KiB bodies. */
import { Effect, Either } from "effect"
import * as NodeCrypto from "../../src/crypto/NodeCrypto.js"

const crypto = Effect.runSync(NodeCrypto.make)
const aead = Either.getOrThrow(crypto.aead(new Uint8Array(32).fill(1)))
const nonce = new Uint8Array(12)
const header = new Uint8Array(5)
for (const size of [64, 256 * 1024]) {
  const body = new Uint8Array(size)
  const n = size < 1024 ? 20000 : 400
  const run = () => {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) {
      const tag = Either.getOrThrow(aead.tagParts(nonce, [header, body]))
      Either.getOrThrow(aead.verifyParts(nonce, [header, body], tag))
    }
    return Number(process.hrtime.bigint() - t0) / 1e3 / n
  }
  run()
  const samples = [run(), run(), run()].sort((a, b) => a - b)
  console.log(`${size} B body: tag + verify median ${samples[1]!.toFixed(1)} us per record (${samples.map((s) => s.toFixed(1)).join(", ")})`)
}
