// How much does P-521 derive block the event loop? Tick counter (setInterval 1 ms) during 20 derives.
import crypto from "node:crypto"
import { monitorEventLoopDelay } from "node:perf_hooks"
const { subtle } = crypto.webcrypto
const alg = { name: "ECDH", namedCurve: "P-521" }
const N = 20
const a = await subtle.generateKey(alg, false, ["deriveBits"])
const b = await subtle.generateKey(alg, false, ["deriveBits"])
const bRaw = Buffer.from(await subtle.exportKey("raw", b.publicKey))
const bPub = await subtle.importKey("raw", bRaw, alg, true, [])
const ka = crypto.generateKeyPairSync("ec", { namedCurve: "secp521r1" })
const kb = crypto.generateKeyPairSync("ec", { namedCurve: "secp521r1" })

async function measure(name, body) {
  let ticks = 0
  const h = monitorEventLoopDelay({ resolution: 1 }); h.enable()
  const timer = setInterval(() => { ticks++ }, 1)
  await new Promise((r) => setTimeout(r, 5))
  ticks = 0
  const t0 = performance.now()
  await body()
  const ms = performance.now() - t0
  clearInterval(timer); h.disable()
  console.log(`${name}: ${ms.toFixed(1)} ms wall, ${ticks} ticks of 1 ms timer (ideal ~${Math.floor(ms)}), max loop delay ${(h.max / 1e6).toFixed(1)} ms`)
}
for (let round = 0; round < 2; round++) {
  await measure(`webcrypto deriveBits x${N} sequential`, async () => { for (let i = 0; i < N; i++) await subtle.deriveBits({ name: "ECDH", public: bPub }, a.privateKey, 528) })
  await measure(`webcrypto deriveBits x${N} concurrent`, async () => { await Promise.all(Array.from({ length: N }, () => subtle.deriveBits({ name: "ECDH", public: bPub }, a.privateKey, 528))) })
  await measure(`sync crypto.diffieHellman x${N}`, async () => { for (let i = 0; i < N; i++) crypto.diffieHellman({ privateKey: ka.privateKey, publicKey: kb.publicKey }) })
  await measure(`webcrypto generateKey x${N} sequential`, async () => { for (let i = 0; i < N; i++) await subtle.generateKey(alg, false, ["deriveBits"]) })
  await measure(`sync createECDH.setPrivateKey x${N}`, async () => { const e = crypto.createECDH("secp521r1"); for (let i = 0; i < N; i++) e.setPrivateKey(crypto.randomBytes(65)) })
}
