/**
 * P-521 key generation and ECDH in worker threads (internal to `NodeCrypto`).
 *
 * Why not WebCrypto on libuv's threadpool: its `deriveBits` costs about 5.7-7.5 ms of CPU per P-521
 * agreement here against 2.7 ms for the synchronous `diffieHellman`, and the threadpool's four
 * threads take every core of a small machine from the event loop during a handshake flood. Workers
 * run the cheap synchronous calls off the event loop, and there are `cores - 1` of them (at least
 * one), so open sessions always keep a core (DESIGN.md §7).
 *
 * The worker source is a string evaluated in the thread, so it works the same from TypeScript
 * sources, a bundle or compiled output. Workers are unref'd: they never keep a process alive.
 */
import { KeyObject } from "node:crypto"
import { availableParallelism } from "node:os"
import { Worker } from "node:worker_threads"

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads")
const crypto = require("node:crypto")
const SIZE = 66
const coordinate = (b64) => {
  const bytes = Buffer.from(b64, "base64url")
  const out = Buffer.alloc(SIZE)
  bytes.copy(out, SIZE - bytes.length)
  return out
}
parentPort.on("message", (job) => {
  try {
    if (job.op === "keygen") {
      const { publicKey, privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-521" })
      const jwk = publicKey.export({ format: "jwk" })
      const raw = Buffer.concat([Buffer.of(4), coordinate(jwk.x), coordinate(jwk.y)])
      parentPort.postMessage({ id: job.id, publicKey: new Uint8Array(raw), privateKey })
    } else {
      const secret = crypto.diffieHellman({ privateKey: job.privateKey, publicKey: job.publicKey })
      parentPort.postMessage({ id: job.id, secret: new Uint8Array(secret) })
    }
  } catch (error) {
    parentPort.postMessage({ id: job.id, error: String(error && error.message || error) })
  }
})
`

interface Reply {
  readonly id: number
  readonly publicKey?: Uint8Array
  readonly privateKey?: KeyObject
  readonly secret?: Uint8Array
  readonly error?: string
}

interface Job {
  readonly resolve: (reply: Reply) => void
  readonly reject: (error: Error) => void
}

interface Slot {
  worker: Worker | undefined
  readonly jobs: Map<number, Job>
}

const slots: Array<Slot> = Array.from({ length: Math.max(1, availableParallelism() - 1) }, () => ({
  worker: undefined,
  jobs: new Map()
}))
let nextId = 0

/** A dead worker fails its jobs and is replaced on next use. */
const start = (slot: Slot): Worker => {
  const worker = new Worker(WORKER_SOURCE, { eval: true })
  worker.unref()
  const failAll = (error: Error) => {
    if (slot.worker === worker) slot.worker = undefined
    for (const job of slot.jobs.values()) job.reject(error)
    slot.jobs.clear()
  }
  worker.on("message", (reply: Reply) => {
    const job = slot.jobs.get(reply.id)
    if (job === undefined) return
    slot.jobs.delete(reply.id)
    job.resolve(reply)
  })
  worker.on("error", failAll)
  worker.on("exit", (code) => failAll(new Error(`P-521 worker exited with code ${code}`)))
  slot.worker = worker
  return worker
}

const run = (message: Record<string, unknown>): Promise<Reply> =>
  new Promise<Reply>((resolve, reject) => {
    // The least busy worker takes the job; jobs queue inside a worker, in order.
    let slot = slots[0]!
    for (const candidate of slots) if (candidate.jobs.size < slot.jobs.size) slot = candidate
    const worker = slot.worker ?? start(slot)
    const id = nextId++
    slot.jobs.set(id, { resolve, reject })
    worker.postMessage({ ...message, id })
  })

const fromReply = (reply: Reply): Reply => {
  if (reply.error !== undefined) throw new Error(reply.error)
  return reply
}

export const generateKeyPair = async (): Promise<{ readonly publicKey: Uint8Array; readonly privateKey: KeyObject }> => {
  const reply = fromReply(await run({ op: "keygen" }))
  if (reply.publicKey === undefined || !(reply.privateKey instanceof KeyObject)) throw new Error("malformed keygen reply")
  return { publicKey: reply.publicKey, privateKey: reply.privateKey }
}

export const deriveSharedSecret = async (privateKey: KeyObject, publicKey: KeyObject): Promise<Uint8Array> => {
  const reply = fromReply(await run({ op: "derive", privateKey, publicKey }))
  if (reply.secret === undefined) throw new Error("malformed derive reply")
  return reply.secret
}
