/** Measures the client's cost of the handshake puzzle against the server's P-521 work for one hello. */
import * as NodeCrypto from "node:crypto"
const challenge = NodeCrypto.randomBytes(16)
const helloHash = NodeCrypto.randomBytes(32)
const input = Buffer.alloc(56)
challenge.copy(input, 0); helloHash.copy(input, 16)
const N = 200_000
const c0 = process.cpuUsage()
for (let i = 0; i < N; i++) { input.writeUInt32BE(0, 48); input.writeUInt32BE(i, 52); NodeCrypto.createHash("sha256").update(input).digest() }
const c1 = process.cpuUsage(c0)
const perHash = ((c1.user + c1.system) * 1000) / N
console.log(`sha256 of 56 bytes: ${perHash.toFixed(0)} ns of CPU`)
for (const d of [12, 13, 14, 15, 16, 17, 18]) console.log(`difficulty ${d}: expected ${(2 ** d * perHash / 1e6).toFixed(1)} ms`)
const subtle = NodeCrypto.webcrypto.subtle
const P = { name: "ECDH", namedCurve: "P-521" } as const
const run = async () => {
  const peer = await subtle.generateKey(P, false, ["deriveBits"])
  const t0 = process.cpuUsage()
  const r0 = process.hrtime.bigint()
  for (let i = 0; i < 20; i++) {
    const own = await subtle.generateKey(P, false, ["deriveBits"])
    await subtle.deriveBits({ name: "ECDH", public: peer.publicKey }, own.privateKey, 528)
  }
  const cpu = process.cpuUsage(t0)
  console.log(`server P-521 per hello (keygen + derive): ${((cpu.user + cpu.system) / 20 / 1000).toFixed(1)} ms CPU, ${(Number(process.hrtime.bigint() - r0) / 20 / 1e6).toFixed(1)} ms wall`)
}
run()
