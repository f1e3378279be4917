/** CPU cost of one side's CPace work (cpaceStart + cpaceFinish), to size it against the handshake's P-521 work. */
import { Either } from "effect"
import { cpaceFinish, cpaceStart } from "../../src/crypto/CPace.js"

const ascii = (s: string) => new TextEncoder().encode(s)
const input = { prs: ascii("pw"), ci: ascii("ci"), sid: new Uint8Array(32), ad: ascii("ad") }
const run = (n: number) => {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) {
    const a = cpaceStart(input, "initiator")
    const b = cpaceStart(input, "responder")
    if (Either.isLeft(cpaceFinish(a, b.share, input.ad))) throw new Error("refused")
  }
  return Number(process.hrtime.bigint() - t0) / 1e6 / n
}
run(50)
const samples = [run(200), run(200), run(200)].sort((x, y) => x - y)
// Each iteration is two starts and one finish: ~1.5 sides; report per side start+finish.
console.log(`per iteration (2 starts + 1 finish): median ${samples[1]!.toFixed(3)} ms; samples ${samples.map((s) => s.toFixed(3)).join(" ")}`)
