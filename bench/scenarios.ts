/**
 * The scenarios of docs/performance.md, each run for one system in one round. They only orchestrate:
 * the measuring happens in the worker processes, next to the sockets.
 */
import { performance } from "node:perf_hooks"
import type { CpuTime } from "./protocol.js"
import { ECHO_ONLY, HANDSHAKE_ONLY, type SystemName, type Target } from "./systems/types.js"
import { Worker, type WorkerLaunch } from "./workers.js"

export const SCENARIO_NAMES = ["bulk", "rtt", "inflight", "handshake", "contention", "memory"] as const
export type ScenarioName = (typeof SCENARIO_NAMES)[number]

export interface Config {
  readonly quick: boolean
  readonly rounds: number
  readonly systems: ReadonlyArray<SystemName>
  readonly scenarios: ReadonlyArray<ScenarioName>
  /** Bytes per bulk transfer. */
  readonly bulkBytes: number
  /** Bytes streamed through for the memory figure. */
  readonly memoryBytes: number
  /** Length of every timed measurement (round trips, in-flight, handshakes). */
  readonly durationMs: number
  /** Piece handed to the socket or stream per write. */
  readonly chunk: number
  /** Packet size for cvg's chunked `send` variant. */
  readonly sendPacket: number
  readonly payload: number
  readonly inflightDepth: number
  readonly handshakeConcurrency: number
  readonly contentionHandshakes: number
  readonly oneProcess: boolean
}

export interface Sample {
  readonly figure: string
  readonly system: string
  readonly variant: string
  readonly round: number
  readonly value: number
}

export interface RunLog {
  readonly samples: Array<Sample>
  readonly errors: Array<{ readonly scenario: string; readonly system: string; readonly round: number; readonly error: string }>
  readonly notes: Array<string>
}

const started = performance.now()
export const progress = (message: string) => {
  const t = ((performance.now() - started) / 1000).toFixed(1).padStart(6)
  process.stderr.write(`[${t}s] ${message}\n`)
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const MB = 1e6

/** Worker processes by role, spawned on first use and kept for the run unless something failed. */
export class Pool {
  private readonly workers = new Map<string, Worker>()
  private readonly ports = new Map<string, number>()

  constructor(private readonly launch: WorkerLaunch) {}

  async worker(role: string): Promise<Worker> {
    const existing = this.workers.get(role)
    if (existing !== undefined) return existing
    const worker = new Worker(role, this.launch)
    this.workers.set(role, worker)
    await worker.ready
    return worker
  }

  /** A server for `system` in the worker `role` (its own process unless `role` says otherwise). */
  async server(system: SystemName, role = `server-${system}`): Promise<Target> {
    const key = `${role}/${system}`
    const known = this.ports.get(key)
    if (known !== undefined) return { host: "127.0.0.1", port: known }
    const worker = await this.worker(role)
    const { port } = await worker.call({ op: "startServer", system }, 30_000)
    this.ports.set(key, port)
    return { host: "127.0.0.1", port }
  }

  async discard(role: string): Promise<void> {
    const worker = this.workers.get(role)
    this.workers.delete(role)
    for (const key of [...this.ports.keys()]) if (key.startsWith(`${role}/`)) this.ports.delete(key)
    if (worker !== undefined) await worker.stop()
  }

  /** Kills roles used by a scenario that failed, so a wedged process cannot poison later ones. */
  async reset(roles: ReadonlyArray<string>): Promise<void> {
    for (const role of roles) {
      this.workers.get(role)?.kill()
      await this.discard(role)
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.workers.keys()].map((role) => this.discard(role)))
  }
}

export interface Context {
  readonly config: Config
  readonly pool: Pool
  readonly log: RunLog
}

const record = (ctx: Context, figure: string, system: string, variant: string, round: number, value: number) => {
  ctx.log.samples.push({ figure, system, variant, round, value })
}

const bulkTimeout = (bytes: number) => 30_000 + (bytes / (5 * MB)) * 1000
const timedTimeout = (ctx: Context) => ctx.config.durationMs * 3 + 30_000

const isCvg = (system: SystemName) => system === "cvg" || system === "cvg-plain"

/** Microseconds of CPU a process spent between two `cpu` snapshots. */
const cpuSpent = (before: CpuTime, after: CpuTime) => after.userUs - before.userUs + (after.systemUs - before.systemUs)

/**
 * CPU time (every thread, user + system) of the client and the server process around `measure`.
 * The snapshots travel over IPC, which costs well under a millisecond against seconds measured.
 */
const withCpu = async <A>(client: Worker, server: Worker, measure: () => Promise<A>) => {
  const snapshot = () => Promise.all([client.call({ op: "cpu" }, 10_000), server.call({ op: "cpu" }, 10_000)])
  const before = await snapshot()
  const result = await measure()
  const after = await snapshot()
  return { result, clientUs: cpuSpent(before[0], after[0]), serverUs: cpuSpent(before[1], after[1]) }
}

// --- bulk ------------------------------------------------------------------------------------

const bulkOnce = async (ctx: Context, system: SystemName, round: number, inproc: boolean) => {
  const { config, pool } = ctx
  const clientRole = inproc ? `oneproc-${system}` : `client-${system}`
  const target = await pool.server(system, inproc ? clientRole : `server-${system}`)
  const client = await pool.worker(clientRole)
  const variants = isCvg(system) ? (["stream", "send"] as const) : (["stream"] as const)
  for (const variant of variants) {
    const chunk = variant === "send" ? config.sendPacket : config.chunk
    if (round === 1) {
      // Warm-up, so that one-round runs do not measure the JIT.
      await client.call({ op: "bulk", system, target, options: { bytes: Math.min(config.bulkBytes, 16 * 1024 * 1024), variant, chunk } }, bulkTimeout(config.bulkBytes))
    }
    const result = await client.call({ op: "bulk", system, target, options: { bytes: config.bulkBytes, variant, chunk } }, bulkTimeout(config.bulkBytes))
    const rate = result.bytes / result.seconds / MB
    const where = inproc ? "1proc" : "2proc"
    record(ctx, "bulk_MBps", system, `${where}:${variant}`, round, rate)
    progress(`  bulk ${system} ${where} ${variant}: ${rate.toFixed(0)} MB/s`)
  }
}

// --- round trips and in-flight -----------------------------------------------------------------

const rttOnce = async (ctx: Context, system: SystemName, round: number, inproc: boolean) => {
  const { config, pool } = ctx
  const clientRole = inproc ? `oneproc-${system}` : `client-${system}`
  const target = await pool.server(system, inproc ? clientRole : `server-${system}`)
  const client = await pool.worker(clientRole)
  const { handle, describe } = await client.call({ op: "openEcho", system, target }, 30_000)
  try {
    await client.call({ op: "roundTrips", handle, options: { count: 500, durationMs: 300, payload: config.payload } }, timedTimeout(ctx))
    const summary = await client.call(
      { op: "roundTrips", handle, options: { count: 10_000_000, durationMs: config.durationMs, payload: config.payload } },
      timedTimeout(ctx)
    )
    const where = inproc ? "1proc" : "2proc"
    record(ctx, "rtt_p50_us", system, where, round, summary.p50)
    record(ctx, "rtt_p99_us", system, where, round, summary.p99)
    progress(`  rtt ${system} ${where} (${describe}): p50 ${summary.p50.toFixed(0)} us, p99 ${summary.p99.toFixed(0)} us, n=${summary.count}`)
  } finally {
    await client.call({ op: "closeEcho", handle }, 10_000)
  }
}

const inflightOnce = async (ctx: Context, system: SystemName, round: number) => {
  const { config, pool } = ctx
  const target = await pool.server(system)
  const server = await pool.worker(`server-${system}`)
  const client = await pool.worker(`client-${system}`)
  const { handle } = await client.call({ op: "openEcho", system, target }, 30_000)
  try {
    const options = { depth: config.inflightDepth, payload: config.payload }
    if (round === 1) await client.call({ op: "inflight", handle, options: { ...options, durationMs: 300 } }, timedTimeout(ctx))
    const { result, clientUs, serverUs } = await withCpu(client, server, () =>
      client.call({ op: "inflight", handle, options: { ...options, durationMs: config.durationMs } }, timedTimeout(ctx)))
    const rps = result.completed / result.seconds
    record(ctx, "inflight_rps", system, "2proc", round, rps)
    const perRequest = (us: number) => (result.completed > 0 ? us / result.completed : Number.NaN)
    record(ctx, "inflight_cpu_us_per_req", system, "client+server", round, perRequest(clientUs + serverUs))
    record(ctx, "inflight_cpu_us_per_req", system, "client", round, perRequest(clientUs))
    record(ctx, "inflight_cpu_us_per_req", system, "server", round, perRequest(serverUs))
    progress(
      `  inflight ${system}: ${rps.toFixed(0)} req/s (${result.completed} in ${result.seconds.toFixed(2)} s), ` +
        `CPU ${perRequest(clientUs + serverUs).toFixed(2)} us/request (client ${perRequest(clientUs).toFixed(2)}, server ${perRequest(serverUs).toFixed(2)})`
    )
  } finally {
    await client.call({ op: "closeEcho", handle }, 10_000)
  }
}

// --- handshakes ----------------------------------------------------------------------------

const handshakeOnce = async (ctx: Context, system: SystemName, round: number) => {
  const { config, pool } = ctx
  if (system === "raw") return
  const target = await pool.server(system)
  const server = await pool.worker(`server-${system}`)
  const client = await pool.worker(`client-${system}`)
  const variants = system === "tls" ? [false, true] : [false]
  for (const p521 of variants) {
    const options = { concurrency: config.handshakeConcurrency, durationMs: config.durationMs, p521 }
    const { result, clientUs, serverUs } = await withCpu(client, server, () =>
      client.call({ op: "handshakes", system, target, options }, timedTimeout(ctx)))
    const rate = result.completed / result.seconds
    const variant = system === "tls" ? (p521 ? "P-521" : "X25519") : "P-521"
    record(ctx, "handshakes_per_s", system, variant, round, rate)
    // CPU per handshake depends far less than the rate on what else the machine's cores are doing.
    // A cluster's server CPU is in processes of its own, which the server worker's figure leaves out.
    if (result.completed > 0 && system !== "cvg-cluster") {
      record(ctx, "handshake_cpu_ms", system, variant, round, (clientUs + serverUs) / 1000 / result.completed)
    }
    if (result.failed > 0) ctx.log.notes.push(`round ${round}: ${system} ${variant} handshakes: ${result.failed} failed (first: ${result.firstError ?? "?"})`)
    const cpuMs = result.completed > 0 ? (clientUs + serverUs) / 1000 / result.completed : Number.NaN
    progress(`  handshakes ${system} ${variant}: ${rate.toFixed(1)}/s (${result.completed} ok, ${result.failed} failed), CPU ${cpuMs.toFixed(1)} ms/handshake`)
  }
}

/** The limit: P-521 key agreements per second in a fresh, otherwise idle process. */
export const p521LimitOnce = async (ctx: Context, round: number) => {
  const worker = await ctx.pool.worker("p521-limit")
  const result = await worker.call(
    { op: "p521Limit", options: { concurrency: ctx.config.handshakeConcurrency, durationMs: ctx.config.durationMs } },
    timedTimeout(ctx)
  )
  record(ctx, "p521_agreements_per_s", "node:crypto", "one side", round, result.agreementsPerSecond)
  // A handshake needs one agreement on each side, and both sides share this machine's cores.
  record(ctx, "p521_limit_handshakes_per_s", "node:crypto", "both sides", round, result.agreementsPerSecond / 2)
  record(ctx, "p521_keygen_ms", "node:crypto", "sequential", round, result.keygenMs)
  record(ctx, "p521_derive_ms", "node:crypto", "sequential", round, result.deriveMs)
  progress(
    `  P-521 limit: ${result.agreementsPerSecond.toFixed(1)} agreements/s at concurrency ${ctx.config.handshakeConcurrency} ` +
      `(keygen ${result.keygenMs.toFixed(1)} ms, derive ${result.deriveMs.toFixed(1)} ms sequential)`
  )
}

// --- round trips under a handshake flood -----------------------------------------------------

const contentionOnce = async (ctx: Context, system: SystemName, round: number) => {
  const { config, pool } = ctx
  if (system === "raw") return
  const target = await pool.server(system)
  const client = await pool.worker(`client-${system}`)
  // The flood comes from a third process, so it loads the server, not the measuring client.
  const loader = await pool.worker("handshake-load")
  const { handle } = await client.call({ op: "openEcho", system, target }, 30_000)
  try {
    const rtt = (durationMs: number) =>
      client.call({ op: "roundTrips", handle, options: { count: 10_000_000, durationMs, payload: config.payload } }, timedTimeout(ctx))
    await rtt(300)
    const idle = await rtt(config.durationMs)
    const ramp = Math.min(1000, config.durationMs / 2)
    const load = loader.call(
      { op: "handshakes", system, target, options: { concurrency: config.contentionHandshakes, durationMs: config.durationMs + ramp } },
      timedTimeout(ctx) + ramp
    )
    await sleep(ramp)
    const loaded = await rtt(config.durationMs)
    const flood = await load
    record(ctx, "contention_p99_us", system, "idle", round, idle.p99)
    record(ctx, "contention_p99_us", system, "loaded", round, loaded.p99)
    record(ctx, "contention_p50_us", system, "idle", round, idle.p50)
    record(ctx, "contention_p50_us", system, "loaded", round, loaded.p50)
    record(ctx, "contention_handshakes_per_s", system, "loaded", round, flood.completed / flood.seconds)
    if (flood.failed > 0) ctx.log.notes.push(`round ${round}: ${system} contention flood: ${flood.failed} handshakes failed (first: ${flood.firstError ?? "?"})`)
    progress(
      `  contention ${system}: p99 idle ${idle.p99.toFixed(0)} us, with ${config.contentionHandshakes} handshakes ` +
        `${loaded.p99.toFixed(0)} us (p50 ${loaded.p50.toFixed(0)} us, n=${loaded.count}; ` +
        `${(flood.completed / flood.seconds).toFixed(1)} handshakes/s, ${flood.failed} failed)`
    )
  } finally {
    await client.call({ op: "closeEcho", handle }, 10_000)
  }
}

// --- peak memory -----------------------------------------------------------------------------

const memoryOnce = async (ctx: Context, system: SystemName, round: number) => {
  const { config, pool } = ctx
  // Fresh processes: getrusage's maxRSS is a lifetime high-water mark.
  const serverRole = `mem-server-${system}`
  const clientRole = `mem-client-${system}`
  try {
    const target = await pool.server(system, serverRole)
    const client = await pool.worker(clientRole)
    const server = await pool.worker(serverRole)
    const result = await client.call(
      { op: "bulk", system, target, options: { bytes: config.memoryBytes, variant: "stream", chunk: config.chunk } },
      bulkTimeout(config.memoryBytes)
    )
    const [clientUsage, serverUsage] = await Promise.all([client.call({ op: "usage" }, 10_000), server.call({ op: "usage" }, 10_000)])
    const peak = (u: typeof clientUsage) => Math.max(u.maxRss, u.sampledPeakRss) / MB
    record(ctx, "peak_rss_MB", system, "client", round, peak(clientUsage))
    record(ctx, "peak_rss_MB", system, "server", round, peak(serverUsage))
    record(ctx, "startup_rss_MB", system, "client", round, clientUsage.startupRss / MB)
    record(ctx, "startup_rss_MB", system, "server", round, serverUsage.startupRss / MB)
    progress(
      `  memory ${system}: ${(config.memoryBytes / 2 ** 20).toFixed(0)} MiB at ${(result.bytes / result.seconds / MB).toFixed(0)} MB/s; ` +
        `peak RSS client ${peak(clientUsage).toFixed(0)} MB (startup ${(clientUsage.startupRss / MB).toFixed(0)}), ` +
        `server ${peak(serverUsage).toFixed(0)} MB (startup ${(serverUsage.startupRss / MB).toFixed(0)})`
    )
  } finally {
    await pool.discard(clientRole)
    await pool.discard(serverRole)
  }
}

// --- dispatch --------------------------------------------------------------------------------

/** Roles whose processes a failure in `scenario` may have wedged. */
const rolesOf = (scenario: ScenarioName, system: SystemName): Array<string> => {
  const base = [`server-${system}`, `client-${system}`]
  switch (scenario) {
    case "bulk":
    case "rtt":
      return [...base, `oneproc-${system}`]
    case "contention":
      return [...base, "handshake-load"]
    case "memory":
      return [`mem-server-${system}`, `mem-client-${system}`]
    default:
      return base
  }
}

export const runScenario = async (ctx: Context, scenario: ScenarioName, system: SystemName, round: number): Promise<void> => {
  // The typed layers' bulk, handshake and memory figures are cvg's own; the anchors are peers for
  // these two figures only.
  if (ECHO_ONLY.has(system) && scenario !== "rtt" && scenario !== "inflight") return
  if (HANDSHAKE_ONLY.has(system) && scenario !== "handshake") return
  try {
    switch (scenario) {
      case "bulk":
        await bulkOnce(ctx, system, round, false)
        if (ctx.config.oneProcess) await bulkOnce(ctx, system, round, true)
        return
      case "rtt":
        await rttOnce(ctx, system, round, false)
        if (ctx.config.oneProcess) await rttOnce(ctx, system, round, true)
        return
      case "inflight":
        return await inflightOnce(ctx, system, round)
      case "handshake":
        return await handshakeOnce(ctx, system, round)
      case "contention":
        return await contentionOnce(ctx, system, round)
      case "memory":
        return await memoryOnce(ctx, system, round)
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    ctx.log.errors.push({ scenario, system, round, error: message })
    progress(`  ERROR ${scenario} ${system} round ${round}: ${message}`)
    await ctx.pool.reset(rolesOf(scenario, system))
  }
}
