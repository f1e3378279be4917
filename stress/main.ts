/**
 * `npm run stress`: the attacks of issue 8 against a real `serve`, each in fresh processes (server,
 * legitimate client, attacker), with the server's RSS sampled from /proc and the legitimate
 * client's handshakes/s and round-trip p99 before, during and after the attack.
 *
 *   npm run stress                          every attack (about 5 minutes on 2 cores)
 *   npm run stress -- --quick               shorter phases, fewer bytes and sessions (under 2 minutes)
 *   npm run stress -- --only hello-200,4    by name or by the item number of issue 8
 *
 * Progress goes to stderr; the table to stdout; the JSON to stress/results/<timestamp>.json.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { parseBytes, parseDuration, parseFlags } from "../bench/args.js"
import { progress } from "../bench/scenarios.js"
import { prepareLaunch, Worker, type WorkerLaunch } from "../bench/workers.js"
import { ATTACK_NAMES, ATTACKS, attacksOfItem, type AttackName } from "./attacks.js"
import { now } from "./legit.js"
import type { Answers, AttackReport, Command, LegitSamples, Ports, ServerMemory } from "./protocol.js"
import { type AttackResult, computeResult, type GcSample, type Phases, renderDetails, renderTable, type RssSample } from "./report.js"

const stressDir = Path.dirname(fileURLToPath(import.meta.url))

const USAGE = `usage: npm run stress -- [options]
  --quick                 short phases, 384 MiB per streaming attack, 128 silent sessions (under 2 minutes)
  --only a,b              attacks by name (${ATTACK_NAMES.join(", ")})
                          or by item of issue 8 (1-9); default: all
  --rounds N              run every attack N times (default 1)
  --before T              legitimate load alone, e.g. 3s (default 3s; quick 1s)
  --during T              attack in place (default 8s; quick 3s), and longer, up to
  --during-max T          this (default 20s; quick 5s), while a byte-budget attack is still sending
  --after T               after the attacker has gone (default 5s; quick 3s)
  --sessions N            sessions for silent-sessions (default 1024; quick 128)
  --setup-max T           session attacks stop opening sessions after this (default 120s; quick 30s)
  --max-bytes N           bytes a streaming attack sends at most, e.g. 1G (default 1536M; quick 384M)
  --legit-concurrency N   handshake loops of the legitimate client (default 2; 0: round trips only)
  --rtt-interval T        one legitimate request per T on its open session (default 2ms)
  --rss-cap N             kill the server when its RSS grows by more than this, e.g. 3G (default 3G)
  --no-bundle             run workers under tsx instead of an esbuild bundle
  --gc-trace FILE         also trace the server's incremental marking (why each full collection
                          started) and append every GC trace line, with its arrival time, to FILE
  --max-minutes N         hard stop for the whole run (default 12; quick 4)`

const fail = (message: string): never => {
  process.stderr.write(`${message}\n\n${USAGE}\n`)
  process.exit(2)
}

const parseAttacks = (text: string): Array<AttackName> => {
  const chosen = new Set<AttackName>()
  for (const item of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    if (/^\d+$/.test(item)) {
      const named = attacksOfItem(Number(item))
      if (named.length === 0) fail(`issue 8 has no attack item ${item}`)
      for (const name of named) chosen.add(name)
    } else if ((ATTACK_NAMES as ReadonlyArray<string>).includes(item)) chosen.add(item as AttackName)
    else fail(`unknown attack: ${item}`)
  }
  return ATTACK_NAMES.filter((name) => chosen.has(name))
}

export interface Config {
  readonly quick: boolean
  readonly attacks: ReadonlyArray<AttackName>
  readonly rounds: number
  readonly warmupMs: number
  readonly beforeMs: number
  readonly duringMs: number
  /** A byte-budget attack's during phase lasts until its budget is sent, up to this. */
  readonly duringMaxMs: number
  readonly afterMs: number
  readonly silentConnections: number
  readonly silentSessions: number
  readonly setupMaxMs: number
  readonly maxBytes: number
  readonly legitConcurrency: number
  readonly rttIntervalMs: number
  readonly rttTimeoutMs: number
  readonly rssCapBytes: number
  /** `--gc-trace`: where the server's raw GC trace goes, with incremental marking traced too. */
  readonly gcTrace: string | undefined
  readonly password: string
}

const parseArgs = (argv: ReadonlyArray<string>) => {
  const flags = parseFlags(argv, {
    booleans: ["quick", "no-bundle"],
    known: ["quick", "only", "rounds", "before", "during", "during-max", "after", "sessions", "setup-max", "max-bytes", "legit-concurrency", "rtt-interval", "rss-cap", "no-bundle", "max-minutes", "gc-trace"],
    usage: USAGE
  }, fail)
  const quick = flags.has("quick")
  const duration = (name: string, full: number, short: number) => {
    const text = flags.text(name)
    return text === undefined ? (quick ? short : full) : parseDuration(text, fail)
  }
  const bytes = (name: string, full: number, short: number) => {
    const text = flags.text(name)
    return text === undefined ? (quick ? short : full) : parseBytes(text, fail)
  }
  const sessions = flags.text("sessions") === undefined ? undefined : flags.int("sessions", 1)
  const rttText = flags.text("rtt-interval")
  const config: Config = {
    quick,
    attacks: flags.text("only") === undefined ? [...ATTACK_NAMES] : parseAttacks(flags.text("only")!),
    rounds: flags.int("rounds", 1),
    warmupMs: quick ? 300 : 500,
    beforeMs: duration("before", 3000, 1000),
    duringMs: duration("during", 8000, 3000),
    duringMaxMs: duration("during-max", 20_000, 5000),
    afterMs: duration("after", 5000, 3000),
    silentConnections: 1024,
    silentSessions: sessions ?? (quick ? 128 : 1024),
    setupMaxMs: duration("setup-max", 120_000, 30_000),
    maxBytes: bytes("max-bytes", 1536 * 2 ** 20, 384 * 2 ** 20),
    legitConcurrency: flags.int("legit-concurrency", 2, 0),
    // parseDuration insists on 100 ms or more, which is right for phases but not for a pace.
    rttIntervalMs: rttText === undefined ? 2 : Number(/^(\d+(?:\.\d+)?)\s*ms$/.exec(rttText.trim())?.[1] ?? fail(`--rtt-interval wants milliseconds, e.g. 2ms`)),
    rttTimeoutMs: 2000,
    rssCapBytes: bytes("rss-cap", 3 * 2 ** 30, 3 * 2 ** 30),
    gcTrace: flags.text("gc-trace"),
    password: "stress-password"
  }
  if (config.attacks.length === 0) fail("no attack selected")
  return { config, bundle: !flags.has("no-bundle"), maxMinutes: flags.int("max-minutes", quick ? 4 : 12) }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

type StressWorker = Worker<Command, Answers>

/** VmRSS of `pid` in bytes, from /proc (undefined once the process is gone). */
const readRss = (pid: number): number | undefined => {
  try {
    const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
    return m === null ? undefined : Number(m[1]) * 1024
  } catch {
    return undefined
  }
}

/** Samples the server's RSS every 50 ms; kills it past the safety cap so that a leak cannot take the machine. */
const sampleRss = (server: StressWorker, capAbove: number, onCap: () => void) => {
  const pid = server.pid
  const samples: Array<RssSample> = []
  let startup: number | undefined
  const timer = setInterval(() => {
    if (pid === undefined) return
    const rss = readRss(pid)
    if (rss === undefined) return
    samples.push([now(), rss])
    if (startup !== undefined && rss - startup > capAbove) {
      onCap()
      server.kill()
    }
  }, 50)
  return {
    samples,
    /** Takes the latest sample as the startup RSS the cap is measured from. */
    markStartup: (): number => {
      const rss = pid === undefined ? undefined : readRss(pid)
      startup = rss ?? Number.NaN
      return startup
    },
    stop: () => clearInterval(timer)
  }
}

/**
 * Reads `--trace-gc` lines as they arrive (their time is when they arrive, within a few ms of the
 * pause). P-521 worker threads have isolates of their own, whose collections pause nothing else:
 * only the isolate that collected most often, the main thread's, is kept.
 */
const traceGc = (file: string | undefined) => {
  const byIsolate = new Map<string, Array<GcSample>>()
  const line = /^\[\d+:(0x[0-9a-f]+)\]\s+\d+ ms: (Scavenge|Mark-Compact|Minor Mark-Compact)\b.*?MB, ([\d.]+) \/ [\d.]+ ms/
  return {
    consume: (text: string): boolean => {
      if (file !== undefined) Fs.appendFileSync(file, `${now()} ${text}\n`)
      const m = line.exec(text)
      if (m === null) return /^\[\d+:0x[0-9a-f]+\]\s+\d+ ms: /.test(text)
      const samples = byIsolate.get(m[1]!) ?? []
      samples.push([now(), m[2] === "Mark-Compact", Number(m[3])])
      byIsolate.set(m[1]!, samples)
      return true
    },
    samples: (): ReadonlyArray<GcSample> => [...byIsolate.values()].reduce<Array<GcSample>>((most, s) => (s.length > most.length ? s : most), [])
  }
}

/** The soft limit on open files (`ulimit -n`), from /proc; the silent attacks need about 2 x 1024 per process. */
const openFilesLimit = (): number | undefined => {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(Fs.readFileSync("/proc/self/limits", "utf8"))
    return m === null ? undefined : Number(m[1])
  } catch {
    return undefined
  }
}

const sessionsFor = (config: Config, attack: AttackName) => (attack === "silent-tcp" ? config.silentConnections : config.silentSessions)

/** One attack in fresh processes; whatever fails is recorded, never thrown. */
const runAttack = async (config: Config, launch: WorkerLaunch, attack: AttackName, round: number): Promise<AttackResult> => {
  const errors: Array<string> = []
  const note = (what: string) => (error: unknown) => {
    errors.push(`${what}: ${error instanceof Error ? error.message : String(error)}`)
    return undefined
  }
  // The server logs every failed connection (a flood is thousands): counted, the first one shown.
  // Its garbage collections are traced: a full collection pauses every connection at once, which is
  // what the legitimate round trips feel of an attack that makes the server allocate.
  const gc = traceGc(config.gcTrace)
  // `--expose-gc` only lets `silent-sessions` ask for the live memory after a full collection; it
  // changes nothing else.
  const traceFlags = ["--trace-gc", "--expose-gc", ...(config.gcTrace === undefined ? [] : ["--trace-incremental-marking"])]
  const server: StressWorker = new Worker(`server-${attack}`, { ...launch, execArgv: [...launch.execArgv, ...traceFlags] }, 1, gc.consume)
  const legit: StressWorker = new Worker(`legit-${attack}`, launch)
  const attacker: StressWorker = new Worker(`attacker-${attack}`, launch)
  let fate: string | undefined
  let serverExited = false
  let capped = false
  const rss = sampleRss(server, config.rssCapBytes, () => {
    capped = true
  })
  let startupRss = Number.NaN
  let phases: Phases | undefined
  let setup = ""
  let samples: LegitSamples | undefined
  let report: AttackReport | undefined
  // Idle sessions: the server's memory before the setup, with the sessions open, and once they are closed.
  const idle = attack === "silent-sessions"
  const memory: { before?: ServerMemory | undefined; open?: ServerMemory | undefined; closed?: ServerMemory | undefined } = {}
  const readMemory = (collect: boolean) => server.call({ op: "memory", collect }, 30_000).catch(note("server memory"))
  try {
    await Promise.all([server.ready, legit.ready, attacker.ready])
    const ports: Ports = await server.call({ op: "startServer", password: config.password }, 30_000)
    await sleep(300)
    startupRss = rss.markStartup()
    const lifetimeMs = 10 * 60_000
    const opened = await legit.call({
      op: "legitStart",
      options: {
        port: ports.echo,
        password: config.password,
        handshakeConcurrency: config.legitConcurrency,
        rttIntervalMs: config.rttIntervalMs,
        rttTimeoutMs: config.rttTimeoutMs,
        lifetimeMs
      }
    }, 30_000)
    if (opened.error !== undefined) throw new Error(`legitimate client: ${opened.error}`)
    await sleep(config.warmupMs)
    const beforeStart = now()
    await sleep(config.beforeMs)
    const beforeEnd = now()
    if (idle) memory.before = await readMemory(false)
    const setupStart = now()
    progress(`  ${attack}: attack starting`)
    // The legitimate handshakes would halve the rate at which the attacker's sessions open; the
    // setup is not measured, so they wait for it.
    await legit.call({ op: "legitPause", paused: true }, 10_000)
    const engaged = await attacker.call({
      op: "attackStart",
      options: {
        attack,
        ports,
        password: config.password,
        sessions: sessionsFor(config, attack),
        maxBytes: config.maxBytes,
        setupMaxMs: config.setupMaxMs,
        lifetimeMs
      }
    }, config.setupMaxMs + 60_000)
    await legit.call({ op: "legitPause", paused: false }, 10_000)
    setup = engaged.setup
    const duringStart = now()
    progress(`  ${attack}: in place (${setup})`)
    await sleep(config.duringMs)
    while (now() - duringStart < config.duringMaxMs) {
      const status = await attacker.call({ op: "attackStatus" }, 10_000)
      if (status.spent) break
      await sleep(200)
    }
    const duringEnd = now()
    // After the RSS window: the full collection must not change what RSS measured.
    if (idle) memory.open = await readMemory(true)
    report = await attacker.call({ op: "attackStop" }, 30_000).catch(note("attacker stop"))
    attacker.kill()
    const afterStart = now()
    await sleep(config.afterMs)
    phases = { beforeStart, beforeEnd, setupStart, duringStart, duringEnd, afterStart, afterEnd: now() }
    // After the last RSS sample, for the same reason.
    if (idle) memory.closed = await readMemory(true)
  } catch (error) {
    note("run")(error)
  } finally {
    serverExited = !server.alive
    if (legit.alive) samples = await legit.call({ op: "legitStop" }, 30_000).catch(note("legitimate client stop"))
    rss.stop()
    attacker.kill()
    legit.kill()
    if (server.alive) await server.stop()
  }
  if (capped) fate = `killed at the ${Math.round(config.rssCapBytes / 1e6)} MB safety cap`
  else if (serverExited) fate = "server died"
  return computeResult({
    attack,
    round,
    setup,
    phases,
    startupRss,
    rss: rss.samples,
    gc: gc.samples(),
    memory,
    fate,
    logLines: server.forwardedLines,
    legit: samples,
    attacker: report,
    errors
  })
}

const main = async () => {
  const { config, bundle, maxMinutes } = parseArgs(process.argv.slice(2))
  setTimeout(() => {
    process.stderr.write(`stress: gave up after ${maxMinutes} minutes\n`)
    process.exit(3)
  }, maxMinutes * 60_000).unref()

  const resultsDir = Path.join(stressDir, "results")
  const { launch, how } = prepareLaunch({
    source: Path.join(stressDir, "worker.ts"),
    buildDir: Path.join(resultsDir, ".build"),
    bundle,
    profileDir: undefined
  })
  const cpus = Os.cpus()
  const files = openFilesLimit()
  const machine = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    platform: `${Os.platform()} ${Os.release()}`,
    loadAverage: Os.loadavg(),
    openFiles: files,
    argv: process.argv.slice(2),
    workers: how
  }
  if (files !== undefined && files < 2 * Math.max(config.silentConnections, config.silentSessions) + 256) {
    progress(`warning: ulimit -n is ${files}; the silent attacks will be refused connections by the OS, not by the server`)
  }
  progress(`stress: ${machine.node}, ${machine.cpu} x${machine.cores}, load ${machine.loadAverage.map((l) => l.toFixed(1)).join(" ")}, workers: ${how}`)
  progress(
    `phases: before ${config.beforeMs} ms, during ${config.duringMs} ms, after ${config.afterMs} ms; ` +
      `streaming attacks up to ${config.maxBytes / 2 ** 20} MiB; attacks: ${config.attacks.join(",")}`
  )

  const results: Array<AttackResult> = []
  for (let round = 1; round <= config.rounds; round++) {
    for (const attack of config.attacks) {
      progress(`round ${round}/${config.rounds}: ${attack} (item ${ATTACKS[attack].items.join(", ")}: ${ATTACKS[attack].what})`)
      const result = await runAttack(config, launch, attack, round)
      results.push(result)
      progress(
        `  ${attack}: server peak ${result.server.peakAboveStartupMB.toFixed(0)} MB above startup; ` +
          `legit ${result.legit.before?.handshakesPerSecond.toFixed(1) ?? "-"} -> ${result.legit.during?.handshakesPerSecond.toFixed(1) ?? "-"} handshakes/s, ` +
          `p99 ${result.legit.during?.rttP99.toFixed(1) ?? "-"} ms during; ${result.targets.every((t) => t.pass) ? "pass" : "FAIL"}`
      )
    }
  }

  const title = `cvg-core stress ${machine.date}, Node ${machine.node}, ${machine.cpu} x${machine.cores} (load at start ${machine.loadAverage[0]?.toFixed(1)}); MB = 10^6 bytes, KB = 10^3`
  process.stdout.write(`\n${title}\n\n${renderTable(results)}\n\n${renderDetails(results)}\n`)
  const targets = results.flatMap((r) => r.targets)
  process.stdout.write(`\ntargets: ${targets.filter((t) => t.pass).length} of ${targets.length} met\n`)

  Fs.mkdirSync(resultsDir, { recursive: true })
  const file = Path.join(resultsDir, `${machine.date.replace(/[:.]/g, "-")}.json`)
  Fs.writeFileSync(file, `${JSON.stringify({ machine, config, results }, null, 2)}\n`)
  process.stdout.write(`results: ${Path.relative(process.cwd(), file)}\n`)
  process.exit(0)
}

main().catch((error: unknown) => {
  process.stderr.write(`stress failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  process.exit(1)
})
