/** Messages between the orchestrator (main.ts) and its worker processes (worker.ts), over Node IPC. */
import type { LatencySummary } from "./stats.js"
import type {
  BulkOptions,
  BulkResult,
  HandshakeOptions,
  HandshakeResult,
  InflightOptions,
  InflightResult,
  RoundTripOptions,
  SystemName,
  Target
} from "./systems/types.js"

export interface P521LimitOptions {
  readonly concurrency: number
  readonly durationMs: number
}

export interface P521LimitResult {
  /** generateKey + exportKey + importKey + deriveBits sequences per second at `concurrency`. */
  readonly agreementsPerSecond: number
  readonly completed: number
  readonly seconds: number
  /** One at a time, for reference with the figures in docs/performance.md. */
  readonly keygenMs: number
  readonly deriveMs: number
}

export interface Usage {
  /** Kernel high-water mark (getrusage), bytes. */
  readonly maxRss: number
  /** Highest `rss` seen by the 20 ms sampler (memory workers only), bytes. */
  readonly sampledPeakRss: number
  readonly rss: number
  /** RSS right after the worker loaded its modules, bytes. */
  readonly startupRss: number
}

/** `process.cpuUsage()` of a worker: every thread of the process, user and system, microseconds. */
export interface CpuTime {
  readonly userUs: number
  readonly systemUs: number
}

export type Command =
  | { readonly op: "startServer"; readonly system: SystemName }
  | { readonly op: "stopServer"; readonly system: SystemName }
  | { readonly op: "openEcho"; readonly system: SystemName; readonly target: Target }
  | { readonly op: "roundTrips"; readonly handle: number; readonly options: RoundTripOptions }
  | { readonly op: "inflight"; readonly handle: number; readonly options: InflightOptions }
  | { readonly op: "closeEcho"; readonly handle: number }
  | { readonly op: "bulk"; readonly system: SystemName; readonly target: Target; readonly options: BulkOptions }
  | { readonly op: "handshakes"; readonly system: SystemName; readonly target: Target; readonly options: HandshakeOptions }
  | { readonly op: "p521Limit"; readonly options: P521LimitOptions }
  | { readonly op: "usage" }
  | { readonly op: "cpu" }
  | { readonly op: "exit" }

/** What each command answers with. */
export interface Answers {
  readonly startServer: { readonly port: number }
  readonly stopServer: null
  readonly openEcho: { readonly handle: number; readonly describe: string }
  readonly roundTrips: LatencySummary
  readonly inflight: InflightResult
  readonly closeEcho: null
  readonly bulk: BulkResult
  readonly handshakes: HandshakeResult
  readonly p521Limit: P521LimitResult
  readonly usage: Usage
  readonly cpu: CpuTime
  readonly exit: null
}
