import { Worker } from "node:worker_threads"
const SRC = `const { parentPort } = require("node:worker_threads"); const c = require("node:crypto"); parentPort.on("message", (m) => { const k = c.generateKeyPairSync("ec", { namedCurve: "P-521" }); parentPort.postMessage({ id: m.id, pk: k.privateKey }) })`
for (let round = 0; round < 30; round++) {
  const w = new Worker(SRC, { eval: true }); w.unref()
  const t = Date.now()
  const res = await Promise.race([new Promise((r) => { w.once("message", r); w.postMessage({ id: 1 }) }), new Promise((r) => setTimeout(() => r("TIMEOUT"), 5000))])
  if (res === "TIMEOUT") console.log("round", round, "TIMEOUT")
  await w.terminate()
}
console.log("done")
