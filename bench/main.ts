/**
 * `npm run bench`: the figures of docs/performance.md for raw node:net, node:tls, cvg encrypted and cvg
 * plaintext, measured side by side in one run, with ratios to the anchors and the targets.
 *
 *   npm run bench                      full run (3 rounds, 256 MiB bulk, 1 GiB memory stream, 5 s timings)
 *   npm run bench -- --quick           under a minute: 1 round, small sizes, 1 s timings
 *   npm run bench -- --scenarios bulk,rtt --systems tls,cvg --rounds 5 --size 512M --duration 3s
 *   npm run bench -- --profile bench/results/prof   worker processes write .cpuprofile files there
 *
 * Progress goes to stderr; the table to stdout; the JSON to bench/results/<timestamp>.json.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { parseBytes as parseBytesWith, parseDuration as parseDurationWith, parseFlags, parseList as parseListWith } from "./args.js"
import { buildRows, renderTable } from "./report.js"
import { type Config, type Context, p521LimitOnce, Pool, progress, type RunLog, runScenario, SCENARIO_NAMES, type ScenarioName } from "./scenarios.js"
import { SYSTEM_NAMES, type SystemName } from "./systems/types.js"
import { prepareLaunch } from "./workers.js"

const benchDir = Path.dirname(fileURLToPath(import.meta.url))

const USAGE = `usage: npm run bench -- [options]
  --quick                 small sizes, 1 round, 1 s timings (whole run under a minute on 2 cores)
  --scenarios a,b         of ${SCENARIO_NAMES.join(",")} (default: all)
  --systems a,b           of ${SYSTEM_NAMES.join(",")} (default: all)
  --size N                bulk bytes, e.g. 256M, 1G, 1048576 (default 256M; quick 32M)
  --memory-size N         bytes streamed for the memory figure (default 1G; quick 128M)
  --duration T            each timed measurement, e.g. 5s, 800ms (default 5s; quick 1s)
  --rounds N              rounds; the median and min-max are reported (default 3; quick 1)
  --concurrency N         handshakes in flight for the handshake figure and its limit (default 16)
  --no-one-process        skip the one-process variants of bulk and round trip
  --no-bundle             run workers under tsx instead of an esbuild bundle
  --profile DIR           workers run with --cpu-prof and write their profiles to DIR
  --max-minutes N         hard stop for the whole run (default 45; quick 3)`

const fail = (message: string): never => {
  process.stderr.write(`${message}\n\n${USAGE}\n`)
  process.exit(2)
}

const parseArgs = (argv: ReadonlyArray<string>) => {
  const flags = parseFlags(argv, {
    booleans: ["quick", "no-one-process", "no-bundle"],
    known: ["quick", "scenarios", "systems", "size", "memory-size", "duration", "rounds", "concurrency", "no-one-process", "no-bundle", "profile", "max-minutes"],
    usage: USAGE
  }, fail)
  const text = flags.text
  const int = flags.int
  const parseBytes = (t: string) => parseBytesWith(t, fail)
  const parseDuration = (t: string) => parseDurationWith(t, fail)
  const parseList = <T extends string>(t: string, allowed: ReadonlyArray<T>, what: string) => parseListWith(t, allowed, what, fail)
  const quick = flags.has("quick")
  const config: Config = {
    quick,
    rounds: int("rounds", quick ? 1 : 3),
    systems: text("systems") === undefined ? [...SYSTEM_NAMES] : parseList(text("systems")!, SYSTEM_NAMES, "system"),
    scenarios: text("scenarios") === undefined ? [...SCENARIO_NAMES] : parseList(text("scenarios")!, SCENARIO_NAMES, "scenario"),
    bulkBytes: text("size") === undefined ? (quick ? 32 : 256) * 2 ** 20 : parseBytes(text("size")!),
    memoryBytes: text("memory-size") === undefined ? (quick ? 128 * 2 ** 20 : 2 ** 30) : parseBytes(text("memory-size")!),
    durationMs: text("duration") === undefined ? (quick ? 1000 : 5000) : parseDuration(text("duration")!),
    chunk: 2 ** 20,
    sendPacket: 16 * 2 ** 20,
    payload: 64,
    inflightDepth: 256,
    handshakeConcurrency: int("concurrency", 16),
    contentionHandshakes: 50,
    oneProcess: !flags.has("no-one-process")
  }
  return {
    config,
    bundle: !flags.has("no-bundle"),
    profileDir: text("profile") === undefined ? undefined : Path.resolve(text("profile")!),
    maxMinutes: int("max-minutes", quick ? 3 : 45)
  }
}

const main = async () => {
  const { config, bundle, profileDir, maxMinutes } = parseArgs(process.argv.slice(2))
  // Every loop below is bounded by its own timeouts; this is the backstop if one of them is not.
  setTimeout(() => {
    process.stderr.write(`bench: gave up after ${maxMinutes} minutes\n`)
    process.exit(3)
  }, maxMinutes * 60_000).unref()

  const resultsDir = Path.join(benchDir, "results")
  if (profileDir !== undefined) Fs.mkdirSync(profileDir, { recursive: true })
  const { launch, how } = prepareLaunch({
    source: Path.join(benchDir, "worker.ts"),
    buildDir: Path.join(resultsDir, ".build"),
    bundle,
    profileDir,
    env: { BENCH_TLS_DIR: Path.join(benchDir, "tls") }
  })
  const cpus = Os.cpus()
  const machine = {
    date: new Date().toISOString(),
    node: process.version,
    openssl: process.versions.openssl,
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    platform: `${Os.platform()} ${Os.release()}`,
    workers: how
  }
  progress(`bench: ${machine.node}, ${machine.cpu} x${machine.cores}, workers: ${how}`)
  progress(
    `config: rounds ${config.rounds}, bulk ${config.bulkBytes / 2 ** 20} MiB, memory stream ${config.memoryBytes / 2 ** 20} MiB, ` +
      `timings ${config.durationMs} ms, systems ${config.systems.join(",")}, scenarios ${config.scenarios.join(",")}`
  )

  const log: RunLog = { samples: [], errors: [], notes: [] }
  const pool = new Pool(launch)
  const ctx: Context = { config, pool, log }
  const wantsCvg = config.systems.some((s) => s === "cvg" || s === "cvg-plain")
  try {
    for (let round = 1; round <= config.rounds; round++) {
      for (const scenario of config.scenarios) {
        progress(`round ${round}/${config.rounds}: ${scenario}`)
        if (scenario === "handshake" && wantsCvg) {
          try {
            await p521LimitOnce(ctx, round)
          } catch (error) {
            log.errors.push({ scenario, system: "node:crypto", round, error: String(error) })
          }
        }
        for (const system of config.systems) await runScenario(ctx, scenario as ScenarioName, system as SystemName, round)
        // Idle processes of a finished scenario would only add noise to the next one.
        if (scenario === "contention") await pool.discard("handshake-load")
      }
    }
  } finally {
    await pool.stopAll()
  }

  const rows = buildRows(log)
  const table = renderTable(rows)
  const title =
    `cvg-core bench ${machine.date}, Node ${machine.node} (OpenSSL ${machine.openssl}), ${machine.cpu} x${machine.cores}\n` +
    `rounds ${config.rounds}, bulk ${config.bulkBytes / 2 ** 20} MiB, memory stream ${config.memoryBytes / 2 ** 20} MiB, ` +
    `timings ${config.durationMs / 1000} s, handshake concurrency ${config.handshakeConcurrency}; MB = 10^6 bytes; workers: ${how}`
  process.stdout.write(`\n${title}\n\n${table}\n`)
  if (log.notes.length > 0) process.stdout.write(`\nnotes:\n${log.notes.map((n) => `  ${n}`).join("\n")}\n`)
  if (log.errors.length > 0) {
    process.stdout.write(`\nerrors:\n${log.errors.map((e) => `  round ${e.round} ${e.scenario} ${e.system}: ${e.error}`).join("\n")}\n`)
  }

  Fs.mkdirSync(resultsDir, { recursive: true })
  const file = Path.join(resultsDir, `${machine.date.replace(/[:.]/g, "-")}.json`)
  Fs.writeFileSync(file, `${JSON.stringify({ machine, config, rows, samples: log.samples, notes: log.notes, errors: log.errors }, null, 2)}\n`)
  process.stdout.write(`\nresults: ${Path.relative(process.cwd(), file)}\n`)
  if (profileDir !== undefined) process.stdout.write(`profiles: ${profileDir}\n`)
  process.exit(log.errors.length > 0 ? 1 : 0)
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  process.exit(1)
})
