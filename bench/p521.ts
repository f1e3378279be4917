/**
 * The P-521 limit for handshakes (DESIGN.md §7): how many key agreements per second this machine's
 * cores can do with the cheapest calls `node:crypto` offers (synchronous `generateKeyPairSync`,
 * public key export and `diffieHellman`), one worker thread per core, for `durationMs`. A handshake
 * needs one agreement on each side, so the handshake limit is half of that.
 */
import * as NodeCrypto from "node:crypto"
import { availableParallelism } from "node:os"
import { performance } from "node:perf_hooks"
import { Worker } from "node:worker_threads"
import type { P521LimitOptions, P521LimitResult } from "./protocol.js"

const AGREEMENT_LOOP = `
const { parentPort, workerData } = require("node:worker_threads")
const crypto = require("node:crypto")
const peer = crypto.generateKeyPairSync("ec", { namedCurve: "P-521" }).publicKey
const deadline = Date.now() + workerData.durationMs
let completed = 0
while (Date.now() < deadline) {
  const { publicKey, privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-521" })
  publicKey.export({ format: "jwk" })
  crypto.diffieHellman({ privateKey, publicKey: peer })
  completed++
}
parentPort.postMessage(completed)
`

const runWorker = (durationMs: number) =>
  new Promise<number>((resolve, reject) => {
    const worker = new Worker(AGREEMENT_LOOP, { eval: true, workerData: { durationMs } })
    worker.once("message", (completed: number) => resolve(completed))
    worker.once("error", reject)
  })

const sequentialMs = (n: number, step: () => unknown) => {
  const start = performance.now()
  for (let i = 0; i < n; i++) step()
  return (performance.now() - start) / n
}

export const measureP521Limit = async (options: P521LimitOptions): Promise<P521LimitResult> => {
  const keygen = () => NodeCrypto.generateKeyPairSync("ec", { namedCurve: "P-521" })
  const own = keygen()
  const peer = keygen()
  const keygenMs = sequentialMs(10, keygen)
  const deriveMs = sequentialMs(10, () => NodeCrypto.diffieHellman({ privateKey: own.privateKey, publicKey: peer.publicKey }))

  const start = performance.now()
  const counts = await Promise.all(Array.from({ length: availableParallelism() }, () => runWorker(options.durationMs)))
  const seconds = (performance.now() - start) / 1000
  const completed = counts.reduce((a, b) => a + b, 0)
  return { agreementsPerSecond: completed / seconds, completed, seconds, keygenMs, deriveMs }
}
