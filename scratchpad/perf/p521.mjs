import * as c from "node:crypto"
const N = 100
let t = performance.now()
const pairs = []
for (let i = 0; i < N; i++) pairs.push(c.generateKeyPairSync("ec", { namedCurve: "P-521" }))
console.log("sync keygen", ((performance.now() - t) / N).toFixed(2), "ms")
t = performance.now()
for (let i = 0; i < N; i++) c.diffieHellman({ privateKey: pairs[i].privateKey, publicKey: pairs[(i + 1) % N].publicKey })
console.log("sync derive", ((performance.now() - t) / N).toFixed(2), "ms")
const raw = pairs.map(p => p.publicKey.export({ format: "jwk" }))
t = performance.now()
for (let i = 0; i < N; i++) c.createPublicKey({ key: raw[i], format: "jwk" })
console.log("import jwk", ((performance.now() - t) / N * 1000).toFixed(1), "us")
const s = c.webcrypto.subtle
t = performance.now()
const wk = []
for (let i = 0; i < 20; i++) wk.push(await s.generateKey({ name: "ECDH", namedCurve: "P-521" }, false, ["deriveBits"]))
console.log("webcrypto keygen", ((performance.now() - t) / 20).toFixed(2), "ms")
t = performance.now()
for (let i = 0; i < 20; i++) await s.deriveBits({ name: "ECDH", public: wk[(i + 1) % 20].publicKey }, wk[i].privateKey, 528)
console.log("webcrypto derive", ((performance.now() - t) / 20).toFixed(2), "ms")
t = performance.now()
for (let i = 0; i < 20; i++) c.diffieHellman({ privateKey: c.KeyObject.from(wk[i].privateKey), publicKey: c.KeyObject.from(wk[(i + 1) % 20].publicKey) })
console.log("sync derive on webcrypto keys", ((performance.now() - t) / 20).toFixed(2), "ms")
