/** Messages between the stress orchestrator (main.ts) and its worker processes (worker.ts), over Node IPC. */
import type { AttackName } from "./attacks.js"

export interface Ports {
  /** The echo server: `session.serve` answers every packet with its own payload. */
  readonly echo: number
  /** The same server options, but the handler receives one packet and then never reads again. */
  readonly stall: number
}

export interface LegitOptions {
  readonly port: number
  readonly password: string
  /** Handshake loops run at once (connect, handshake, close, again). */
  readonly handshakeConcurrency: number
  /** One 64-byte request per this many ms on the open session. */
  readonly rttIntervalMs: number
  /** A request not answered in this long counts as a timeout (and is recorded at this latency). */
  readonly rttTimeoutMs: number
  /** Hard stop if `legitStop` never comes. */
  readonly lifetimeMs: number
}

/** `[end time (epoch ms), duration (ms), 1 = ok | 0 = failed]` per handshake attempt. */
export type HandshakeSample = readonly [number, number, number]
/** `[send time (epoch ms), round trip (µs), 1 = answered | 0 = timed out or failed]` per request. */
export type RttSample = readonly [number, number, number]

export interface LegitSamples {
  readonly handshakes: ReadonlyArray<HandshakeSample>
  readonly handshakeErrors: Readonly<Record<string, number>>
  readonly rtt: ReadonlyArray<RttSample>
  readonly rttErrors: Readonly<Record<string, number>>
  /** Times the round-trip session had to be opened again (the first open not counted). */
  readonly rttReconnects: number
}

export interface AttackOptions {
  readonly attack: AttackName
  readonly ports: Ports
  readonly password: string
  /** Sessions for `silent-sessions`; connections for `silent-tcp`. */
  readonly sessions: number
  /** The session attacks stop opening sessions after this long and go on with what is open. */
  readonly setupMaxMs: number
  /** Bytes the streaming attacks send at most (each stops at its time limit too). */
  readonly maxBytes: number
  /** Hard stop if `attackStop` never comes. */
  readonly lifetimeMs: number
}

/** What an attacker did, for the report: counters by name, and how its connections ended. */
export interface AttackReport {
  readonly attack: AttackName
  readonly counters: Readonly<Record<string, number>>
  /** Why connections ended, as seen by the attacker, by error tag (and reason). */
  readonly ends: Readonly<Record<string, number>>
}

/** The server's memory at one moment (bytes). */
export interface ServerMemory {
  /** What V8 has committed for its young generation, read before any collection. */
  readonly youngCommitted: number
  /** JS heap in use plus external memory (ArrayBuffers, Node's buffers): after a full collection when asked for. */
  readonly heapAndExternal: number
}

export type Command =
  | { readonly op: "startServer"; readonly password: string }
  | { readonly op: "legitStart"; readonly options: LegitOptions }
  | { readonly op: "legitPause"; readonly paused: boolean }
  | { readonly op: "legitStop" }
  | { readonly op: "attackStart"; readonly options: AttackOptions }
  | { readonly op: "attackStatus" }
  | { readonly op: "attackStop" }
  /** The server's memory, for `silent-sessions`; `collect`: after a full collection (the server runs with `--expose-gc`). */
  | { readonly op: "memory"; readonly collect: boolean }
  | { readonly op: "exit" }

export interface Answers {
  readonly startServer: Ports
  /** Resolves once the round-trip session is open (or failed to open: then `error`). */
  readonly legitStart: { readonly error?: string }
  /** Handshake loops wait while paused (the round-trip session goes on). */
  readonly legitPause: null
  readonly legitStop: LegitSamples
  /** Resolves once the attack is in place (for the session attacks, once every session is open). */
  readonly attackStart: { readonly engagedAt: number; readonly setup: string }
  /** `spent`: the attack has sent its whole byte budget (or has none) and only holds from here on. */
  readonly attackStatus: { readonly spent: boolean }
  readonly attackStop: AttackReport
  readonly memory: ServerMemory
  readonly exit: null
}
