/**
 * Looks for WebCrypto P-521 jobs that never settle (seen in vitest: a pool slot held forever by a
 * prepared-key-pair generation). `npx tsx scratchpad/hs/derive-hang.ts`
 */
import * as NodeCrypto from "node:crypto"
const subtle = NodeCrypto.webcrypto.subtle
const P = { name: "ECDH", namedCurve: "P-521" } as const
const gen = async () => {
  const pair = await subtle.generateKey(P, false, ["deriveBits"])
  const raw = await subtle.exportKey("raw", pair.publicKey)
  return { priv: pair.privateKey, raw }
}
const main = async () => {
  let pending = 0
  for (let round = 0; round < 50; round++) {
    const jobs = Array.from({ length: 4 }, () => {
      pending++
      return gen().then(() => pending--)
    })
    const t = setTimeout(() => { console.log("HANG at round", round, "pending", pending); process.exit(1) }, 5000)
    await Promise.all(jobs)
    clearTimeout(t)
  }
  console.log("no hang")
}
main()
