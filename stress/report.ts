/**
 * From raw samples to the figures of one attack, the targets of issue 8, and the printed table.
 * Every figure is computed here from timestamps, so that how it is taken is in one place
 * (stress/README.md says the same in prose).
 */
import { percentile } from "../bench/stats.js"
import { ATTACKS, type AttackName } from "./attacks.js"
import type { AttackReport, LegitSamples, ServerMemory } from "./protocol.js"

const MB = 1e6

/** Wall-clock marks of one attack run, in epoch ms. */
export interface Phases {
  readonly beforeStart: number
  readonly beforeEnd: number
  /** The attacker was told to start; `duringStart` is when it reported the attack in place. */
  readonly setupStart: number
  readonly duringStart: number
  /** The attacker was told to stop; `afterStart` is when it reported every connection closed. */
  readonly duringEnd: number
  readonly afterStart: number
  readonly afterEnd: number
}

/** `[time (epoch ms), VmRSS (bytes)]`. */
export type RssSample = readonly [number, number]

/** A garbage collection of the server's main thread, from its `--trace-gc`: `[time (epoch ms), full, pause ms]`. */
export type GcSample = readonly [number, boolean, number]

/** The server's garbage collections during the attack: what pauses every connection at once. */
export interface GcFigures {
  readonly full: number
  readonly fullPauseMs: number
  readonly minor: number
  readonly minorPauseMs: number
  readonly longestMs: number
}

export interface PhaseFigures {
  readonly seconds: number
  readonly handshakesPerSecond: number
  readonly handshakeFailures: number
  readonly rttCount: number
  /** Round trip, ms: requests sent in the phase; an unanswered one counts at its timeout. */
  readonly rttP50: number
  readonly rttP99: number
  readonly rttMax: number
  readonly rttFailures: number
}

export interface Target {
  readonly name: string
  readonly value: string
  readonly limit: string
  readonly pass: boolean
}

/** What one idle session costs, KB (10^3 bytes) each, from the sessions the attacker opened. */
export interface IdleSessionFigures {
  /** The server's RSS growth from before the setup to the second half of the during phase. */
  readonly rssKB: number
  /** Of that growth, V8's young generation: sized by the handshakes' allocation, not by what is held. */
  readonly youngKB: number | undefined
  /** JS heap and external memory after a full collection, sessions open minus sessions closed. */
  readonly liveKB: number | undefined
}

export interface AttackResult {
  readonly attack: AttackName
  readonly round: number
  readonly what: string
  readonly setup: string
  readonly phases: Phases | undefined
  readonly server: {
    readonly startupMB: number
    readonly peakMB: number
    readonly peakAboveStartupMB: number
    /** Highest RSS before the attack started (the legitimate client's own load). */
    readonly peakBeforeAttackMB: number
    /** RSS at the end of the after phase, above startup: what the attack left behind. */
    readonly endAboveStartupMB: number
    readonly samples: number
    /** `died (code, signal)`, `killed at the safety cap`, or undefined while it lived. */
    readonly fate: string | undefined
    readonly logLines: number
  }
  readonly legit: {
    readonly before: PhaseFigures | undefined
    readonly setup: PhaseFigures | undefined
    readonly during: PhaseFigures | undefined
    readonly after: PhaseFigures | undefined
    /** During / before handshakes per second. */
    readonly ratio: number
    /** Seconds from the end of the attack to the first 1 s window at ≥ 90% of the before rate. */
    readonly recoverySeconds: number | undefined
    readonly handshakeErrors: Readonly<Record<string, number>>
    readonly rttErrors: Readonly<Record<string, number>>
    readonly rttReconnects: number
  }
  /**
   * Every 500 ms from the start of the before phase: `[seconds from the attack's start, legit
   * handshakes completed, failed, round-trip p99 ms, server max RSS MB]`, for plotting.
   */
  readonly series: ReadonlyArray<readonly [number, number, number, number, number]>
  /** Idle sessions only. */
  readonly idleSession: IdleSessionFigures | undefined
  /** The server's garbage collections in the during phase, and in the before phase for comparison. */
  readonly gc: { readonly before: GcFigures | undefined; readonly during: GcFigures | undefined }
  readonly attacker: AttackReport | undefined
  readonly targets: ReadonlyArray<Target>
  readonly errors: ReadonlyArray<string>
}

const RECOVERY_WINDOW_MS = 1000
const RECOVERY_STEP_MS = 100

const phaseFigures = (samples: LegitSamples, from: number, to: number): PhaseFigures | undefined => {
  if (!(to > from)) return undefined
  const seconds = (to - from) / 1000
  let ok = 0
  let failed = 0
  for (const [end, , success] of samples.handshakes) {
    if (end < from || end >= to) continue
    if (success === 1) ok++
    else failed++
  }
  const latencies: Array<number> = []
  let rttFailures = 0
  for (const [start, us, answered] of samples.rtt) {
    if (start < from || start >= to) continue
    latencies.push(us / 1000)
    if (answered === 0) rttFailures++
  }
  return {
    seconds,
    handshakesPerSecond: ok / seconds,
    handshakeFailures: failed,
    rttCount: latencies.length,
    rttP50: percentile(latencies, 50),
    rttP99: percentile(latencies, 99),
    rttMax: latencies.length === 0 ? Number.NaN : Math.max(...latencies),
    rttFailures
  }
}

const recovery = (samples: LegitSamples, phases: Phases, baseline: number): number | undefined => {
  if (!(baseline > 0)) return undefined
  const ends = samples.handshakes.filter(([, , ok]) => ok === 1).map(([end]) => end)
  for (let t = phases.afterStart; t + RECOVERY_WINDOW_MS <= phases.afterEnd; t += RECOVERY_STEP_MS) {
    const n = ends.filter((end) => end >= t && end < t + RECOVERY_WINDOW_MS).length
    if (n / (RECOVERY_WINDOW_MS / 1000) >= 0.9 * baseline) return (t - phases.afterStart) / 1000
  }
  return undefined
}

const SERIES_STEP_MS = 500

const seriesOf = (samples: LegitSamples | undefined, rss: ReadonlyArray<RssSample>, phases: Phases | undefined): AttackResult["series"] => {
  if (phases === undefined) return []
  const out: Array<readonly [number, number, number, number, number]> = []
  for (let t = phases.beforeStart; t < phases.afterEnd; t += SERIES_STEP_MS) {
    const inStep = <S extends readonly [number, ...Array<number>]>(list: ReadonlyArray<S>) => list.filter(([at]) => at >= t && at < t + SERIES_STEP_MS)
    const handshakes = inStep(samples?.handshakes ?? [])
    const memory = inStep(rss).map(([, b]) => b)
    out.push([
      Math.round(t - phases.duringStart) / 1000,
      handshakes.filter(([, , ok]) => ok === 1).length,
      handshakes.filter(([, , ok]) => ok === 0).length,
      Math.round(percentile(inStep(samples?.rtt ?? []).map(([, us]) => us / 1000), 99) * 10) / 10,
      memory.length === 0 ? Number.NaN : Math.round(Math.max(...memory) / MB)
    ])
  }
  return out
}

const median = (values: ReadonlyArray<number>) => percentile(values, 50)

const rssIn = (rss: ReadonlyArray<RssSample>, from: number, to: number) => rss.filter(([t]) => t >= from && t < to).map(([, b]) => b)

const gcIn = (gc: ReadonlyArray<GcSample>, from: number | undefined, to: number | undefined): GcFigures | undefined => {
  if (from === undefined || to === undefined || !(to > from)) return undefined
  const within = gc.filter(([t]) => t >= from && t < to)
  const full = within.filter(([, isFull]) => isFull)
  const minor = within.filter(([, isFull]) => !isFull)
  const sum = (samples: ReadonlyArray<GcSample>) => samples.reduce((total, [, , ms]) => total + ms, 0)
  return {
    full: full.length,
    fullPauseMs: sum(full),
    minor: minor.length,
    minorPauseMs: sum(minor),
    longestMs: within.reduce((longest, [, , ms]) => Math.max(longest, ms), 0)
  }
}

export const computeResult = (input: {
  readonly attack: AttackName
  readonly round: number
  readonly setup: string
  readonly phases: Phases | undefined
  readonly startupRss: number
  readonly rss: ReadonlyArray<RssSample>
  readonly gc: ReadonlyArray<GcSample>
  readonly memory: { readonly before?: ServerMemory | undefined; readonly open?: ServerMemory | undefined; readonly closed?: ServerMemory | undefined }
  readonly fate: string | undefined
  readonly logLines: number
  readonly legit: LegitSamples | undefined
  readonly attacker: AttackReport | undefined
  readonly errors: ReadonlyArray<string>
}): AttackResult => {
  const { phases, rss, startupRss } = input
  const values = rss.map(([, b]) => b)
  const peak = values.length === 0 ? Number.NaN : Math.max(...values)
  const beforeAttack = phases === undefined ? [] : rssIn(rss, 0, phases.setupStart)
  const last = rss[rss.length - 1]
  const legitSamples = input.legit
  const figures = (from: number | undefined, to: number | undefined) =>
    legitSamples === undefined || from === undefined || to === undefined ? undefined : phaseFigures(legitSamples, from, to)
  const before = figures(phases?.beforeStart, phases?.beforeEnd)
  const during = figures(phases?.duringStart, phases?.duringEnd)
  const after = figures(phases?.afterStart, phases?.afterEnd)
  const setup = phases === undefined || phases.duringStart - phases.setupStart < 1000 ? undefined : figures(phases.setupStart, phases.duringStart)
  const ratio = (during?.handshakesPerSecond ?? Number.NaN) / (before?.handshakesPerSecond ?? Number.NaN)
  const recoverySeconds = legitSamples === undefined || phases === undefined || before === undefined
    ? undefined
    : recovery(legitSamples, phases, before.handshakesPerSecond)

  const opened = input.attacker?.counters["sessions opened"] ?? 0
  const { before: memBefore, closed: memClosed, open: memOpen } = input.memory
  const each = (bytes: number) => bytes / opened / 1000
  const idleSession: IdleSessionFigures | undefined = input.attack === "silent-sessions" && phases !== undefined && opened > 0
    ? {
      rssKB: each(
        median(rssIn(rss, (phases.duringStart + phases.duringEnd) / 2, phases.duringEnd)) -
          median(rssIn(rss, phases.beforeEnd - 1000, phases.setupStart))
      ),
      youngKB: memBefore === undefined || memOpen === undefined ? undefined : each(memOpen.youngCommitted - memBefore.youngCommitted),
      liveKB: memOpen === undefined || memClosed === undefined ? undefined : each(memOpen.heapAndExternal - memClosed.heapAndExternal)
    }
    : undefined

  const peakAbove = (peak - startupRss) / MB
  const targets: Array<Target> = [
    { name: "server peak RSS above startup", value: `${peakAbove.toFixed(0)} MB`, limit: "< 400 MB", pass: peakAbove < 400 && input.fate === undefined }
  ]
  if (input.attack === "hello-200") {
    targets.push({ name: "legit handshakes during / before", value: pct(ratio), limit: ">= 30%", pass: ratio >= 0.3 })
    targets.push({
      name: "legit back to >= 90% after",
      value: recoverySeconds === undefined ? "not within the after phase" : `${recoverySeconds.toFixed(1)} s`,
      limit: "<= 2 s",
      pass: recoverySeconds !== undefined && recoverySeconds <= 2
    })
  }
  if (ATTACKS[input.attack].authenticated) {
    const p99 = during?.rttP99 ?? Number.NaN
    targets.push({ name: "legit round-trip p99 during", value: `${p99.toFixed(1)} ms`, limit: "< 20 ms", pass: p99 < 20 })
  }
  if (input.attack === "silent-sessions") {
    targets.push({
      name: "RSS per idle session",
      value: idleSession === undefined ? "no sessions" : `${idleSession.rssKB.toFixed(1)} KB`,
      limit: "< 50 KB",
      pass: idleSession !== undefined && idleSession.rssKB < 50
    })
    const live = idleSession?.liveKB
    targets.push({
      name: "live memory per idle session (JS heap and buffers after a full collection)",
      value: live === undefined ? "not measured" : `${live.toFixed(1)} KB`,
      limit: "< 50 KB",
      pass: live !== undefined && live < 50
    })
  }

  return {
    attack: input.attack,
    round: input.round,
    what: ATTACKS[input.attack].what,
    setup: input.setup,
    phases,
    server: {
      startupMB: startupRss / MB,
      peakMB: peak / MB,
      peakAboveStartupMB: peakAbove,
      peakBeforeAttackMB: beforeAttack.length === 0 ? Number.NaN : Math.max(...beforeAttack) / MB,
      endAboveStartupMB: last === undefined ? Number.NaN : (last[1] - startupRss) / MB,
      samples: rss.length,
      fate: input.fate,
      logLines: input.logLines
    },
    legit: {
      before,
      setup,
      during,
      after,
      ratio,
      recoverySeconds,
      handshakeErrors: legitSamples?.handshakeErrors ?? {},
      rttErrors: legitSamples?.rttErrors ?? {},
      rttReconnects: legitSamples?.rttReconnects ?? 0
    },
    series: seriesOf(legitSamples, rss, phases),
    idleSession,
    gc: { before: gcIn(input.gc, phases?.beforeStart, phases?.beforeEnd), during: gcIn(input.gc, phases?.duringStart, phases?.duringEnd) },
    attacker: input.attacker,
    targets,
    errors: input.errors
  }
}

const pct = (ratio: number) => (Number.isFinite(ratio) ? `${(ratio * 100).toFixed(0)}%` : "-")
const num = (value: number | undefined, digits = 0) => (value === undefined || !Number.isFinite(value) ? "-" : value.toFixed(digits))

const byteSize = (bytes: number) => (bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 2 ** 10).toFixed(1)} KiB`)

const pad = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? "").length)))
  return rows
    .map((row, r) =>
      r === 1
        ? widths.map((w) => "-".repeat(w)).join("-|-")
        : row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(" | ")
    )
    .join("\n")
}

/** One row per attack run: memory, legitimate handshakes and round trips, and pass/fail. */
export const renderTable = (results: ReadonlyArray<AttackResult>): string => {
  const header = [
    "attack",
    "startup MB",
    "peak MB",
    "peak-startup",
    "end-startup",
    "hs/s before",
    "during",
    "after",
    "during/before",
    "recovery s",
    "p99 ms before",
    "during",
    "after",
    "targets"
  ]
  const rows = results.map((r) => [
    `${r.round > 1 ? `${r.attack}#${r.round}` : r.attack}${r.server.fate === undefined ? "" : ` (${r.server.fate})`}`,
    num(r.server.startupMB),
    num(r.server.peakMB),
    num(r.server.peakAboveStartupMB),
    num(r.server.endAboveStartupMB),
    num(r.legit.before?.handshakesPerSecond, 1),
    num(r.legit.during?.handshakesPerSecond, 1),
    num(r.legit.after?.handshakesPerSecond, 1),
    pct(r.legit.ratio),
    r.legit.recoverySeconds === undefined ? "never" : r.legit.recoverySeconds.toFixed(1),
    num(r.legit.before?.rttP99, 1),
    num(r.legit.during?.rttP99, 1),
    num(r.legit.after?.rttP99, 1),
    r.targets.map((t) => (t.pass ? "pass" : "FAIL")).join(" ")
  ])
  return pad([header, header, ...rows])
}

/** Each target with its value, limit and verdict, then what went wrong. */
export const renderDetails = (results: ReadonlyArray<AttackResult>): string =>
  results
    .map((r) => {
      const lines = [`${r.attack}${r.round > 1 ? ` #${r.round}` : ""}: ${r.what}; ${r.setup}`]
      for (const t of r.targets) lines.push(`  ${t.pass ? "pass" : "FAIL"}  ${t.name}: ${t.value} (target ${t.limit})`)
      const idle = r.idleSession
      if (idle !== undefined) {
        const young = idle.youngKB === undefined ? "" : `, of which ${idle.youngKB.toFixed(1)} KB is V8's young generation growing`
        const live = idle.liveKB === undefined ? "" : `; live after a full collection ${idle.liveKB.toFixed(1)} KB (Node's native socket not included)`
        lines.push(`  idle sessions, each: RSS ${idle.rssKB.toFixed(1)} KB${young}${live}`)
      }
      const fails = Object.entries(r.legit.handshakeErrors).map(([k, v]) => `${k} x${v}`).join(", ")
      if (fails !== "") lines.push(`  legit handshake failures: ${fails}`)
      const rttFails = Object.entries(r.legit.rttErrors).map(([k, v]) => `${k} x${v}`).join(", ")
      if (rttFails !== "") lines.push(`  legit request failures: ${rttFails}${r.legit.rttReconnects > 0 ? `; session reopened ${r.legit.rttReconnects}x` : ""}`)
      if (r.attacker !== undefined) {
        const counters = Object.entries(r.attacker.counters).map(([k, v]) => `${k} ${k.includes("bytes") ? byteSize(v) : v}`).join(", ")
        lines.push(`  attacker: ${counters}`)
        const ends = Object.entries(r.attacker.ends).map(([k, v]) => `${k} x${v}`).join(", ")
        if (ends !== "") lines.push(`  attack connections ended: ${ends}`)
      }
      const gc = (figures: GcFigures) =>
        `${figures.full} full (${figures.fullPauseMs.toFixed(0)} ms), ${figures.minor} minor (${figures.minorPauseMs.toFixed(0)} ms), longest ${figures.longestMs.toFixed(1)} ms`
      if (r.gc.during !== undefined) {
        lines.push(`  server GC pauses during: ${gc(r.gc.during)}${r.gc.before === undefined ? "" : `; before: ${gc(r.gc.before)}`}`)
      }
      if (r.server.logLines > 0) lines.push(`  server log lines: ${r.server.logLines}`)
      for (const e of r.errors) lines.push(`  error: ${e}`)
      return lines.join("\n")
    })
    .join("\n")
