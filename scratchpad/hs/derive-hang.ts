import * as NodeCrypto from "node:crypto"
const subtle = NodeCrypto.webcrypto.subtle
const P = { name: "ECDH", namedCurve: "P-521" } as const
const gen = async () => {
  const pair = await subtle.generateKey(P, false, ["deriveBits"])
  const raw = await subtle.exportKey("raw", pair.publicKey)
  return { priv: pair.privateKey, raw }
}
const main = async () => {
  const a = await gen(); const b = await gen()
  const aPub = await subtle.importKey("raw", a.raw, P, true, [])
  const bPub = await subtle.importKey("raw", b.raw, P, true, [])
  for (let round = 0; round < 200; round++) {
    const t = setTimeout(() => { console.log("HANG at round", round); process.exit(1) }, 3000)
    await Promise.all([
      subtle.deriveBits({ name: "ECDH", public: bPub }, a.priv, 528),
      subtle.deriveBits({ name: "ECDH", public: aPub }, b.priv, 528),
      gen(), gen(),
      subtle.importKey("raw", a.raw, P, true, []),
      subtle.importKey("raw", b.raw, P, true, []),
      subtle.deriveBits({ name: "ECDH", public: bPub }, a.priv, 528),
      subtle.deriveBits({ name: "ECDH", public: aPub }, b.priv, 528),
    ])
    clearTimeout(t)
  }
  console.log("no hang")
}
main()
