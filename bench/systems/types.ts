/** What every benchmarked system provides, so that scenarios are written once. */

export const SYSTEM_NAMES = [
  "raw",
  "tls",
  "tls-rpc",
  "ws-tls",
  "cvg",
  "cvg-plain",
  "cvg-typed",
  "rpc-cvg",
  "cvg-cluster",
  "cvg-id",
  "cvg-pake",
  "cvg-id-pake"
] as const

/**
 * Systems measured only for round trips and requests in flight: the request/response anchors of
 * issue 11 (tls-rpc, ws-tls) and the typed layers over cvg.
 */
export const ECHO_ONLY: ReadonlySet<string> = new Set(["tls-rpc", "ws-tls", "cvg-typed", "rpc-cvg"])

/**
 * Systems measured only for the handshake rate: a cvg server on two processes (node:cluster), and
 * the handshake with a pinned server identity key, with CPace, and with both (issue 12).
 */
export const HANDSHAKE_ONLY: ReadonlySet<string> = new Set(["cvg-cluster", "cvg-id", "cvg-pake", "cvg-id-pake"])
export type SystemName = (typeof SYSTEM_NAMES)[number]

export interface Target {
  readonly host: string
  readonly port: number
}

export interface BenchServer {
  readonly port: number
  readonly close: () => Promise<void>
}

export interface RoundTripOptions {
  /** Upper bound on round trips; the run also stops at `durationMs`. */
  readonly count: number
  readonly durationMs: number
  readonly payload: number
}

export interface InflightOptions {
  readonly depth: number
  readonly durationMs: number
  readonly payload: number
}

export interface InflightResult {
  readonly completed: number
  readonly seconds: number
}

/** One open connection speaking the echo pattern. */
export interface EchoConnection {
  /** Sequential request/response; returns each round trip in microseconds. */
  readonly roundTrips: (options: RoundTripOptions) => Promise<Array<number>>
  /** `depth` requests kept in flight until the deadline; outstanding ones are drained before returning. */
  readonly inflight: (options: InflightOptions) => Promise<InflightResult>
  readonly close: () => Promise<void>
  /** What was negotiated, for the report (e.g. the TLS cipher). */
  readonly describe: string
}

/** `stream`: a stream of unknown length; `send`: large packets, chunked by the library. */
export type BulkVariant = "stream" | "send"

export interface BulkOptions {
  readonly bytes: number
  readonly variant: BulkVariant
  /** Size of each piece handed to the system. */
  readonly chunk: number
}

export interface BulkResult {
  readonly bytes: number
  /** From the first byte handed over to the server's acknowledgement of the last one. */
  readonly seconds: number
}

export interface HandshakeOptions {
  readonly concurrency: number
  readonly durationMs: number
  /** TLS only: restrict key exchange to P-521 instead of the default X25519. */
  readonly p521?: boolean
}

export interface HandshakeResult {
  readonly completed: number
  readonly failed: number
  readonly seconds: number
  readonly firstError?: string
}

export interface BenchSystem {
  readonly name: SystemName
  readonly startServer: () => Promise<BenchServer>
  readonly openEcho: (target: Target) => Promise<EchoConnection>
  readonly bulk: (target: Target, options: BulkOptions) => Promise<BulkResult>
  /** Full connect + handshake + close, `concurrency` at a time, until the deadline. */
  readonly handshakes: (target: Target, options: HandshakeOptions) => Promise<HandshakeResult>
}

export const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))
