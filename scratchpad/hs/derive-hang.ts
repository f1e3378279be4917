/**
 * Looks for WebCrypto P-521 jobs that never settle outside vitest. In test/handshake.test.ts's cut
 * sweep (C->S cut after 175-178 bytes, concurrency 4, test/support/fastCrypto.ts) one deriveBits job
 * per pool stays in flight for good (seen through `load()`), on the base commit as well; not
 * reproduced here so far. `npx tsx scratchpad/hs/derive-hang.ts`
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
