/**
 * The P-521 worker threads (src/crypto/P521Threads.ts): the hang that made the first worker-thread
 * attempt hang in the bench's reused processes, reproduced on demand, and the threads' lifecycle.
 *
 * The hang (docs/performance.md, "The worker-thread hang"): a scavenge that starts inside a call
 * holding a key's mutex finalizes the unreachable `generateKeyPairSync` job that made the key, whose
 * destructor takes the same mutex on the same thread. Whether a scavenge lands there is luck, so the
 * bench needed thousands of handshakes to hit it. The test below removes the luck: before every
 * `node:crypto` call and every `postMessage` the thread's jobs make, it fills the young generation
 * until only `margin` bytes are free, for every margin (in 8-byte steps) that the call allocates,
 * so that a scavenge starts at each allocation inside each call. A deadlock shows as a thread that
 * stops answering; the sweep runs in a child process, which is killed then, because a thread stuck
 * in a native mutex cannot be terminated and would keep the test process from exiting.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { Crypto } from "../src/crypto/Crypto.js"
import * as NodeCrypto from "../src/crypto/NodeCrypto.js"
import * as P521Threads from "../src/crypto/P521Threads.js"

/**
 * Evaluated in the thread before the jobs: wraps every function of `node:crypto`, every method of
 * its key objects and `parentPort.postMessage` so that, while `sweep.state.margin >= 0`, each call
 * first leaves `margin` bytes of young generation free. With `margin < 0` it measures instead how many
 * young-generation bytes the largest call allocates (`span`).
 */
const INSTRUMENT = String.raw`
const sweep = (() => {
  const v8 = require("node:v8")
  const { parentPort } = require("node:worker_threads")
  const crypto = require("node:crypto")
  const newSpace = () => {
    const spaces = v8.getHeapSpaceStatistics()
    for (let i = 0; i < spaces.length; i++) if (spaces[i].space_name === "new_space") return spaces[i]
    throw new Error("no new_space in v8.getHeapSpaceStatistics()")
  }
  let sink
  // Reads what is left before each piece: summing estimated piece sizes drifts off the mark.
  const leave = (margin) => {
    for (;;) {
      const n = Math.min(8192, Math.floor((newSpace().space_available_size - margin) / 8) - 8)
      if (n <= 0) break
      sink = new Array(n)
      if (n < 8192) break
    }
    sink = undefined
  }
  const state = { margin: -1, span: 0, calls: new Set() }
  const seen = new Set()
  const wrap = (owner, name, label) => {
    const original = owner[name]
    if (typeof original !== "function" || seen.has(original)) return
    seen.add(original)
    owner[name] = function (...args) {
      if (state.margin >= 0) {
        leave(state.margin)
        return original.apply(this, args)
      }
      const before = newSpace().space_used_size
      const result = original.apply(this, args)
      const grew = newSpace().space_used_size - before
      if (grew > state.span) state.span = grew
      state.calls.add(label)
      return result
    }
  }
  for (const name of Object.keys(crypto)) if (/^[a-z]/.test(name)) wrap(crypto, name, "crypto." + name)
  // Key objects' methods live on several prototypes (export is on the subclasses).
  const sample = crypto.generateKeyPairSync("ec", { namedCurve: "secp521r1" })
  for (const key of [sample.publicKey, sample.privateKey]) {
    for (let proto = Object.getPrototypeOf(key); proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
      for (const name of Object.getOwnPropertyNames(proto)) {
        const descriptor = Object.getOwnPropertyDescriptor(proto, name)
        if (name !== "constructor" && descriptor && typeof descriptor.value === "function") wrap(proto, name, proto.constructor.name + "#" + name)
      }
    }
  }
  const post = parentPort.postMessage.bind(parentPort)
  wrap(parentPort, "postMessage", "postMessage")
  return { state, post }
})()
`

/**
 * Evaluated after the jobs (which define `serve`): each job kind measured, then swept. A derive gets
 * a private key generated on this thread just before, so that its generation job is unreachable but
 * not yet collected, as in the pool.
 */
const SWEEP = String.raw`
{
  const P521 = { namedCurve: "secp521r1" }
  const peer = crypto.generateKeyPairSync("ec", P521).publicKey
  const jobs = {
    keygen: () => ({ id: 0, op: "keygen" }),
    derive: () => ({ id: 0, op: "derive", privateKey: crypto.generateKeyPairSync("ec", P521).privateKey, publicKey: peer })
  }
  for (const name of Object.keys(jobs)) {
    sweep.state.margin = -1
    sweep.state.span = 0
    for (let i = 0; i < 5; i++) serve(jobs[name]())
    const span = sweep.state.span
    for (let margin = 0; margin <= span + 512; margin += 8) {
      const job = jobs[name]()
      sweep.state.margin = margin
      serve(job)
      sweep.state.margin = -1
      if (margin % 256 === 0) sweep.post({ progress: name, margin, span })
    }
    sweep.post({ swept: name, span, calls: [...sweep.state.calls] })
  }
  sweep.post({ done: true })
}
`

/**
 * The child process: one thread running INSTRUMENT + the jobs + SWEEP. A fixed 1 MiB young
 * generation makes the free space V8 reports the place where the next scavenge starts (with the
 * default, growing one the sweep missed the deadlock), and keeps each fill cheap.
 */
const CHILD = String.raw`
const { Worker } = require("node:worker_threads")
const source = process.env.SWEEP_SOURCE
const worker = new Worker(source, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 1 } })
const say = (message) => process.stdout.write(JSON.stringify(message) + "\n")
worker.on("message", (message) => {
  if (message && (message.progress || message.swept || message.done)) say(message)
})
worker.on("error", (error) => {
  say({ error: String(error && error.message) })
  process.exit(2)
})
`

interface SweepMessage {
  readonly progress?: string
  readonly swept?: string
  readonly margin?: number
  readonly span?: number
  readonly calls?: ReadonlyArray<string>
  readonly done?: boolean
  readonly error?: string
}

/** No progress line for this long means the thread is stuck (a step is ~32 jobs of a few ms). */
const STALL_MS = 15_000
/** The whole sweep, however slow the machine. */
const SWEEP_LIMIT_MS = 100_000

const runSweep = (jobsSource: string) =>
  new Promise<{ readonly swept: ReadonlyArray<SweepMessage> }>((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", CHILD], {
      env: { ...process.env, SWEEP_SOURCE: INSTRUMENT + jobsSource + SWEEP },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const swept: Array<SweepMessage> = []
    let last: SweepMessage | undefined
    let buffered = ""
    let stderr = ""
    let settled = false
    const finish = (error: Error | undefined) => {
      if (settled) return
      settled = true
      clearInterval(watch)
      clearTimeout(limit)
      // SIGKILL: a thread stuck in a native mutex ignores everything gentler, exit included.
      child.kill("SIGKILL")
      if (error === undefined) resolve({ swept })
      else reject(error)
    }
    let lastAt = Date.now()
    const watch = setInterval(() => {
      if (Date.now() - lastAt > STALL_MS) {
        finish(new Error(`P-521 thread stopped answering after ${JSON.stringify(last)}: a job deadlocked under a scavenge`))
      }
    }, 250)
    const limit = setTimeout(() => finish(new Error(`sweep not done after ${SWEEP_LIMIT_MS} ms (last: ${JSON.stringify(last)})`)), SWEEP_LIMIT_MS)
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => {
      buffered += chunk
      let newline = buffered.indexOf("\n")
      while (newline >= 0) {
        const message = JSON.parse(buffered.slice(0, newline)) as SweepMessage
        buffered = buffered.slice(newline + 1)
        newline = buffered.indexOf("\n")
        last = message
        lastAt = Date.now()
        if (message.swept !== undefined) swept.push(message)
        if (message.error !== undefined) finish(new Error(`sweep thread failed: ${message.error}`))
        if (message.done === true) finish(undefined)
      }
    })
    child.stderr.setEncoding("utf8")
    child.stderr.on("data", (chunk: string) => {
      stderr += chunk
    })
    child.on("exit", (code) => finish(new Error(`sweep process exited with ${code} before it was done: ${stderr.slice(0, 500)}`)))
  })

describe("P-521 threads", () => {
  it("no job deadlocks when a scavenge starts at any allocation inside it (the bench's reused-process hang)", async () => {
    const { swept } = await runSweep(P521Threads.JOBS_SOURCE)
    expect(swept.map((s) => s.swept)).toEqual(["keygen", "derive"])
    // The sweep really went through the calls the jobs make.
    expect(swept[1]?.calls).toEqual(expect.arrayContaining(["crypto.generateKeyPairSync", "crypto.diffieHellman", "postMessage"]))
    for (const s of swept) expect(s.span).toBeGreaterThan(0)
  }, SWEEP_LIMIT_MS + 20_000)

  it.live("are shared by every instance, at most cores − 1, and end once idle after the last Layer is released", () =>
    Effect.gen(function*() {
      P521Threads.setIdleMs(100)
      const round = Effect.gen(function*() {
        const crypto = yield* Crypto
        expect(P521Threads.stats().holders).toBe(1)
        const pairs = yield* Effect.all(Array.from({ length: 6 }, () => crypto.generateKeyPair), { concurrency: "unbounded" })
        const secrets = yield* Effect.forEach(pairs, (pair, i) =>
          Effect.flatMap(crypto.importPublicKey(pairs[(i + 1) % pairs.length]!.publicKey), (peer) => crypto.deriveSharedSecret(pair, peer)), { concurrency: "unbounded" })
        expect(secrets.every((secret) => secret.length === 66)).toBe(true)
        const { threads, size } = P521Threads.stats()
        expect(threads).toBeGreaterThan(0)
        expect(threads).toBeLessThanOrEqual(size)
      })
      // A reused process: Layers built and released again and again, never more threads than the cap.
      for (let i = 0; i < 4; i++) yield* Effect.provide(round, NodeCrypto.layer)
      expect(P521Threads.stats().holders).toBe(0)
      // Key pairs prepared ahead may still be generating; after that, and the idle time, nothing is left.
      let waited = 0
      while (P521Threads.stats().threads > 0 && waited < 10_000) {
        yield* Effect.sleep("20 millis")
        waited += 20
      }
      expect(P521Threads.stats()).toMatchObject({ threads: 0, busy: 0, queued: 0, holders: 0 })
      // And the next job starts a thread again.
      const crypto = yield* NodeCrypto.make
      expect((yield* crypto.generateKeyPair).publicKey.length).toBe(133)
    }).pipe(Effect.ensuring(Effect.sync(() => P521Threads.setIdleMs(5_000)))))

  it("a job that cannot be sent, or that the thread rejects, fails alone; the thread keeps serving", async () => {
    const ask = (request: P521Threads.Request) =>
      new Promise<P521Threads.Outcome>((resolve) => {
        P521Threads.run(request, resolve)
      })
    const unsendable = await ask({ op: "derive", privateKey: () => undefined, publicKey: null })
    expect(unsendable.ok ? "sent" : unsendable.error).toMatch(/^P-521 job not sent/)
    const rejected = await ask({ op: "derive", privateKey: null, publicKey: null })
    expect(rejected.ok && typeof rejected.reply.error === "string").toBe(true)
    const threads = P521Threads.stats().threads
    const good = await ask({ op: "keygen" })
    expect(good.ok && good.reply.error === undefined && good.reply.spki instanceof Uint8Array).toBe(true)
    expect(P521Threads.stats().threads).toBe(threads)
  })
})
