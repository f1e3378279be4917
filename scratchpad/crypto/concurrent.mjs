import crypto from "node:crypto"
const { subtle } = crypto.webcrypto
const alg = { name: "ECDH", namedCurve: "P-521" }
const N = 20
const pairs = await Promise.all(Array.from({ length: N }, async () => {
  const a = await subtle.generateKey(alg, false, ["deriveBits"])
  const b = await subtle.generateKey(alg, true, ["deriveBits"])
  return [a.privateKey, await subtle.importKey("raw", Buffer.from(await subtle.exportKey("raw", b.publicKey)), alg, true, [])]
}))
let ticks = 0; const timer = setInterval(() => ticks++, 1)
await new Promise((r) => setTimeout(r, 5)); ticks = 0
const t = performance.now()
await Promise.all(pairs.map(([priv, pub]) => subtle.deriveBits({ name: "ECDH", public: pub }, priv, 528)))
const ms = performance.now() - t
clearInterval(timer)
console.log(`deriveBits x${N} concurrent, distinct keys: ${ms.toFixed(1)} ms wall (${(ms / N).toFixed(2)} ms/op), ${ticks} ticks`)
