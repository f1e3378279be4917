import crypto from "node:crypto"
const { subtle } = crypto.webcrypto
const alg = { name: "ECDH", namedCurve: "P-521" }
const kp = await subtle.generateKey(alg, false, ["deriveBits"])
const raw = new Uint8Array(await subtle.exportKey("raw", kp.publicKey))
console.log("raw len", raw.length, raw[0])
const p = (1n << 521n) - 1n
const toB = (n) => { const h = n.toString(16).padStart(132, "0"); return Buffer.from(h, "hex") }
const x = BigInt("0x" + Buffer.from(raw.subarray(1, 67)).toString("hex"))
const y = BigInt("0x" + Buffer.from(raw.subarray(67)).toString("hex"))
const mk = (X, Y) => Buffer.concat([Buffer.from([4]), toB(X), toB(Y)])
const tryImp = async (name, b) => { try { await subtle.importKey("raw", b, alg, true, []); console.log(name, "ACCEPTED") } catch (e) { console.log(name, "rejected", e.message) } }
await tryImp("good", raw)
await tryImp("y+1", mk(x, y + 1n))
await tryImp("0,0", mk(0n, 0n))
await tryImp("neg y", mk(x, p - y))
await tryImp("y+p (133 bytes?)", mk(x, y + p).length === 133 ? mk(x, y + p) : "skip")
await tryImp("x+p", mk(x + p, y).length === 133 ? mk(x + p, y) : Buffer.alloc(0))
const comp = crypto.ECDH.convertKey(raw, "secp521r1", undefined, undefined, "compressed")
await tryImp("compressed", comp)
await tryImp("hybrid", Buffer.concat([Buffer.from([6 | (Number(y & 1n))]), raw.subarray(1)]))
await tryImp("inf", Buffer.from([0]))
// timing
let t = performance.now()
for (let i = 0; i < 20; i++) await subtle.generateKey(alg, false, ["deriveBits"])
console.log("gen ms", (performance.now() - t) / 20)
const pub = await subtle.importKey("raw", raw, alg, true, [])
t = performance.now()
for (let i = 0; i < 20; i++) await subtle.deriveBits({ name: "ECDH", public: pub }, kp.privateKey, 528)
console.log("derive ms", (performance.now() - t) / 20)
t = performance.now()
const e = crypto.createECDH("secp521r1"); for (let i = 0; i < 20; i++) e.setPrivateKey(crypto.randomBytes(65))
console.log("setPrivateKey ms", (performance.now() - t) / 20)
t = performance.now()
for (let i = 0; i < 1000; i++) crypto.hkdfSync("sha256", Buffer.alloc(66), Buffer.alloc(32), Buffer.alloc(20), 32)
console.log("hkdfSync us", (performance.now() - t))
try { crypto.hkdfSync("sha256", Buffer.alloc(1), Buffer.alloc(0), Buffer.alloc(1025), 32); console.log("info 1025 ok") } catch (e) { console.log("info1025", e.message) }
console.log("hkdf 0", crypto.hkdfSync("sha256", Buffer.alloc(1), Buffer.alloc(0), Buffer.alloc(0), 0).byteLength)
try { e.setPrivateKey(Buffer.alloc(66)); console.log("zero ok") } catch (er) { console.log("zero", er.message) }
try { e.setPrivateKey(Buffer.alloc(66, 0xff)); console.log("ff ok") } catch (er) { console.log("ff", er.message) }
