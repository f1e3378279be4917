/**
 * The worker threads that run P-521 key generation and ECDH for `NodeCrypto` (internal).
 *
 * Why threads: the synchronous `generateKeyPairSync` and `diffieHellman` cost about half the CPU of
 * WebCrypto's threadpool jobs (docs/performance.md), but on the event loop they would hold every open
 * session for milliseconds per handshake. So they run here, at most `cores − 1` threads (at least 1),
 * shared by every `NodeCrypto` instance of the process the way libuv's threadpool was; each instance
 * still caps and queues its own jobs (`NodeCrypto.ts`, PROTOCOL.md §10.5).
 *
 * Why no thread ever exports a key it generated (docs/performance.md, "The worker-thread hang"): in
 * Node 20, `KeyObject.export({ format: "jwk" })` holds the key's mutex while it allocates the
 * coordinate strings. If that allocation starts a scavenge, V8 finalizes the now-unreachable
 * `generateKeyPairSync` job that made the key, and the job's destructor takes the same mutex on the
 * same thread: the thread deadlocks for good, `terminate()` never settles, and every job queued to
 * it waits forever. That was the earlier attempt's hang in the bench's reused processes (rare per call,
 * certain over thousands). Here the public key is encoded (SPKI DER) by the generation job itself,
 * while the job is still reachable, and test/crypto.threads.test.ts forces a scavenge at every
 * allocation of each job to prove that no job can deadlock this way.
 *
 * Threads are `unref`'d: they never keep a process alive. They start on the first job, and they are
 * terminated once they have had no work for `idleMs` while no `NodeCrypto` Layer holds them: a thread
 * costs ~70 ms of CPU to start, and `connect` builds and releases a Layer per handshake, so releasing
 * the last Layer lets them linger instead of ending them at once.
 */
import { availableParallelism } from "node:os"
import { Worker } from "node:worker_threads"

/**
 * @internal The jobs, as evaluated in every thread: `serve(job)` answers one job with one message.
 * Kept apart from the listener so that the deadlock test runs exactly this code.
 */
export const JOBS_SOURCE = String.raw`
const { parentPort } = require("node:worker_threads")
const crypto = require("node:crypto")
const KEYGEN = { namedCurve: "secp521r1", publicKeyEncoding: { type: "spki", format: "der" } }
const run = (job) => {
  if (job.op === "keygen") {
    // The SPKI bytes are encoded inside the job (see the module comment: never export afterwards).
    const pair = crypto.generateKeyPairSync("ec", KEYGEN)
    return { spki: pair.publicKey, privateKey: pair.privateKey }
  }
  if (job.op === "derive") return { secret: crypto.diffieHellman({ privateKey: job.privateKey, publicKey: job.publicKey }) }
  throw new Error("unknown job " + String(job.op))
}
const serve = (job) => {
  let reply
  try {
    reply = Object.assign({ id: job.id }, run(job))
  } catch (error) {
    reply = { id: job.id, error: String((error && error.message) || error) }
  }
  parentPort.postMessage(reply)
}
`

const WORKER_SOURCE = `${JOBS_SOURCE}\nparentPort.on("message", serve)\n`

export type Request =
  | { readonly op: "keygen" }
  | { readonly op: "derive"; readonly privateKey: unknown; readonly publicKey: unknown }

/** What a thread answers; its fields are checked by the caller (structured clone loses the types). */
export interface Reply {
  readonly id: number
  readonly spki?: unknown
  readonly privateKey?: unknown
  readonly secret?: unknown
  readonly error?: unknown
}

export type Outcome = { readonly ok: true; readonly reply: Reply } | { readonly ok: false; readonly error: string }

interface Job {
  readonly id: number
  readonly request: Request
  readonly done: (outcome: Outcome) => void
  cancelled: boolean
}

interface Thread {
  readonly worker: Worker
  current: Job | undefined
  stuck: ReturnType<typeof setTimeout> | undefined
}

/** A job running longer than this is not waited for, and its thread is abandoned (PROTOCOL.md §10.5). */
const STUCK_MS = 10_000
const DEFAULT_IDLE_MS = 5_000

const size = Math.max(1, availableParallelism() - 1)
const threads: Array<Thread> = []
const queue: Array<Job> = []
let holders = 0
let nextId = 0
let idleMs = DEFAULT_IDLE_MS
let idleTimer: ReturnType<typeof setTimeout> | undefined

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const drop = (thread: Thread): void => {
  const at = threads.indexOf(thread)
  if (at >= 0) threads.splice(at, 1)
  if (thread.stuck !== undefined) clearTimeout(thread.stuck)
  thread.stuck = undefined
}

/** The thread is gone or useless: its job fails, and the next dispatch starts a replacement. */
const fail = (thread: Thread, error: string): void => {
  drop(thread)
  const job = thread.current
  thread.current = undefined
  // A thread that is merely stuck may still be running; a deadlocked one ignores this.
  void thread.worker.terminate().catch(() => undefined)
  if (job !== undefined) job.done({ ok: false, error })
  dispatch()
}

const spawn = (): Thread | string => {
  let worker: Worker
  try {
    // No execArgv: a parent's loaders (tsx) or profilers would make every thread far heavier.
    worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], stdin: false })
  } catch (cause) {
    return `P-521 thread did not start: ${messageOf(cause)}`
  }
  worker.unref()
  const thread: Thread = { worker, current: undefined, stuck: undefined }
  worker.on("message", (reply: Reply) => {
    const job = thread.current
    if (job === undefined || reply.id !== job.id) return
    if (thread.stuck !== undefined) clearTimeout(thread.stuck)
    thread.stuck = undefined
    thread.current = undefined
    job.done({ ok: true, reply })
    dispatch()
  })
  worker.on("error", (error) => fail(thread, `P-521 thread failed: ${error.message}`))
  worker.on("exit", (code) => fail(thread, `P-521 thread exited with code ${code}`))
  threads.push(thread)
  return thread
}

const start = (thread: Thread, job: Job): void => {
  try {
    thread.worker.postMessage({ ...job.request, id: job.id })
  } catch (cause) {
    // The job could not be cloned: its own fault, not the thread's, which stays free.
    job.done({ ok: false, error: `P-521 job not sent: ${messageOf(cause)}` })
    return
  }
  thread.current = job
  thread.stuck = setTimeout(() => {
    if (thread.current === job) fail(thread, `P-521 thread: no result after ${STUCK_MS} ms`)
  }, STUCK_MS)
  thread.stuck.unref()
}

const dispatch = (): void => {
  while (queue.length > 0) {
    const job = queue[0]!
    if (job.cancelled) {
      queue.shift()
      continue
    }
    let thread = threads.find((t) => t.current === undefined)
    if (thread === undefined && threads.length < size) {
      const spawned = spawn()
      if (typeof spawned === "string") {
        queue.shift()
        job.done({ ok: false, error: spawned })
        continue
      }
      thread = spawned
    }
    if (thread === undefined) return
    queue.shift()
    start(thread, job)
  }
  scheduleIdle()
}

const busy = () => queue.length > 0 || threads.some((t) => t.current !== undefined)

const terminateIdle = (): void => {
  idleTimer = undefined
  if (holders > 0 || busy()) return
  for (const thread of [...threads]) {
    drop(thread)
    thread.worker.removeAllListeners("exit")
    void thread.worker.terminate().catch(() => undefined)
  }
}

const scheduleIdle = (): void => {
  if (idleTimer !== undefined) {
    clearTimeout(idleTimer)
    idleTimer = undefined
  }
  if (holders > 0 || busy() || threads.length === 0) return
  idleTimer = setTimeout(terminateIdle, idleMs)
  idleTimer.unref()
}

/**
 * Runs one job on a thread; `done` is called exactly once, unless the returned cancel is called first
 * while the job still waits for a thread (a started job runs to its end, and its answer is dropped).
 */
export const run = (request: Request, done: (outcome: Outcome) => void): (() => void) => {
  const job: Job = { id: nextId++, request, done, cancelled: false }
  queue.push(job)
  dispatch()
  return () => {
    job.cancelled = true
  }
}

/** Keeps the threads while held; the returned release lets them go once idle for `idleMs`. */
export const hold = (): (() => void) => {
  holders++
  scheduleIdle()
  let released = false
  return () => {
    if (released) return
    released = true
    holders--
    scheduleIdle()
  }
}

/** @internal For tests: threads alive, jobs waiting, Layers holding. */
export const stats = () => ({
  threads: threads.length,
  busy: threads.filter((t) => t.current !== undefined).length,
  queued: queue.length,
  holders,
  size
})

/** @internal For tests: how long unheld threads linger without work. */
export const setIdleMs = (ms: number): void => {
  idleMs = ms
  scheduleIdle()
}
