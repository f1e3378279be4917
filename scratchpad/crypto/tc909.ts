import { Effect } from "effect"
import { readFileSync } from "node:fs"
import * as NodeCrypto from "../../src/crypto/NodeCrypto.ts"
const file = JSON.parse(readFileSync("../shared/vectors/wycheproof/ecdh_secp521r1_test.json", "utf8"))
const t = file.testGroups[0].tests.find((x: { tcId: number }) => x.tcId === 909)
const svc = Effect.runSync(NodeCrypto.make)
const r = await Effect.runPromise(Effect.either(svc.importPublicKey(new Uint8Array(Buffer.from(t.public, "hex").subarray(25)))))
console.log(r._tag, r._tag === "Left" ? r.left.reason : "")
