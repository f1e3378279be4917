// Ed25519 vs P-521 ECDSA (SHA-512) sign+verify with node:crypto: 5 runs, median per-op microseconds.
import * as C from "node:crypto"
const msg = C.randomBytes(32 + 64 + 40)
const schemes = {
  ed25519: () => C.generateKeyPairSync("ed25519"),
  "p521-ecdsa": () => C.generateKeyPairSync("ec", { namedCurve: "P-521" })
}
const alg = { ed25519: null, "p521-ecdsa": "sha512" }
const N = 300
const median = (a) => a.sort((x, y) => x - y)[a.length >> 1]
for (const [name, gen] of Object.entries(schemes)) {
  const { privateKey, publicKey } = gen()
  const signs = [], verifies = [], sizes = []
  for (let run = 0; run < 5; run++) {
    let t = process.hrtime.bigint(); let sig
    for (let i = 0; i < N; i++) sig = C.sign(alg[name], msg, privateKey)
    signs.push(Number(process.hrtime.bigint() - t) / 1000 / N)
    t = process.hrtime.bigint()
    for (let i = 0; i < N; i++) if (!C.verify(alg[name], msg, publicKey, sig)) throw new Error("bad")
    verifies.push(Number(process.hrtime.bigint() - t) / 1000 / N)
    sizes.push(sig.length)
  }
  console.log(`${name}: sign ${median(signs).toFixed(1)} µs, verify ${median(verifies).toFixed(1)} µs (median of 5 runs × ${N}); signature ${Math.max(...sizes)} B; runs sign=${signs.map(x=>x.toFixed(0))} verify=${verifies.map(x=>x.toFixed(0))}`)
}
