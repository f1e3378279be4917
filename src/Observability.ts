/**
 * What cvg-core reports through Effect's own tracing, metrics and logging, so that any exporter an
 * application installs (`@effect/opentelemetry`, or Effect's defaults) sees it without cvg-core
 * depending on one (README "Observability").
 *
 * Spans: `cvg.handshake` (one per handshake, with what was negotiated and how it ended), and
 * `cvg.request` / `cvg.call` (one per request). Attributes never carry keys, passwords, nonces or MACs.
 *
 * Metrics are module-level descriptors; their values live in Effect's metric registry. The ones
 * updated on the frame path (bytes, records, rekeys) are untagged and updated synchronously with
 * `unsafeUpdate`, which for an untagged metric is a cached hook and an addition: no Effect, and no
 * allocation. Tagged metrics (handshakes, refusals, budget exhaustions) are updated once per
 * connection at most, where building the tagged key costs nothing that matters.
 */
import { Context, DefaultServices, Effect, Metric, MetricLabel, Tracer } from "effect"

/** Span names. */
export const SPAN_HANDSHAKE = "cvg.handshake"
export const SPAN_REQUEST = "cvg.request"
export const SPAN_CALL = "cvg.call"

/**
 * Effect's default tracer, which keeps its spans in memory and shows them to nobody: a span per
 * request under it costs a third of the request (docs/performance.md) and can be seen by no one.
 * Any other tracer (`@effect/opentelemetry`, a test's) gets every span.
 */
const defaultTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

/** Span options on the request path: the call site would be a line of ours, not the user's, and is not worth an Error each. */
export interface RequestSpanOptions {
  readonly kind: Tracer.SpanKind
  readonly attributes: Record<string, unknown>
}

/**
 * Runs a request under span `name`, skipped when only Effect's default tracer would receive it.
 * `parent`: inner spans nest in it (`cvg.call`, whose `cvg.request` is inside); otherwise the span
 * is only started and ended around `effect`, which costs a third of making it the parent.
 */
export const requestSpan = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  name: string,
  parent: boolean,
  options: () => RequestSpanOptions
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) => {
    if (tracer === defaultTracer) return effect
    const spanOptions = { ...options(), captureStackTrace: false }
    return parent ? Effect.withSpan(effect, name, spanOptions) : Effect.useSpan(name, spanOptions, () => effect)
  })

/** Log annotation keys set on every log line of a connection. */
export const LOG_PEER = "cvg.peer"
export const LOG_SESSION = "cvg.session"

/** Handshakes, tagged `role` (client/server), `outcome` (success/failure) and `reason` (`ok`, or the error's tag and reason). */
export const handshakes = Metric.counter("cvg.handshakes", {
  description: "Handshakes completed or failed, by role, outcome and reason",
  incremental: true
})

/** Sessions open now, in this process (both roles). */
export const activeSessions = Metric.gauge("cvg.sessions.active", { description: "Sessions open now" })

export const bytesIn = Metric.counter("cvg.bytes.in", { description: "Bytes read from sockets (framed, as on the wire)", incremental: true })
export const bytesOut = Metric.counter("cvg.bytes.out", { description: "Bytes written to sockets (framed, as on the wire)", incremental: true })
export const recordsSealed = Metric.counter("cvg.records.sealed", { description: "Records sealed with AES-256-GCM, or tagged with AES-GMAC in plaintext mode", incremental: true })
export const rekeys = Metric.counter("cvg.rekeys", { description: "Key updates sent (PROTOCOL.md §7.2)", incremental: true })

/** Connections the server turned away, tagged `reason`: `maxConnections`, `busy` (P-521 queue full) or `evicted`. */
export const refusedConnections = Metric.counter("cvg.connections.refused", {
  description: "Connections refused or evicted by admission control, by reason",
  incremental: true
})

/** Charges the byte budget refused, tagged `reason`: `ConnectionLimit` or `PoolExhausted` (PROTOCOL.md §10). */
export const budgetExhaustions = Metric.counter("cvg.budget.exhausted", {
  description: "Sessions ended because their byte budget or the server's pool was exhausted",
  incremental: true
})

/** @internal */
/** The empty tag list: shared, so that the untagged hot-path updates allocate nothing. */
export const NO_TAGS: ReadonlyArray<MetricLabel.MetricLabel> = []

/** @internal */
/** Adds `n` to an untagged counter, synchronously (frame path). */
export const count = (metric: Metric.Metric.Counter<number>, n: number): void => metric.unsafeUpdate(n, NO_TAGS)

/** @internal */
/** Moves the active-sessions gauge by `delta`, synchronously. */
export const moveActiveSessions = (delta: number): void => activeSessions.unsafeModify(delta, NO_TAGS)

/** @internal */
/** Counts one tagged event, synchronously (a rare event: the tag list is built here). */
export const countTagged = (metric: Metric.Metric.Counter<number>, tags: Record<string, string>): void =>
  metric.unsafeUpdate(1, Object.entries(tags).map(([key, value]) => MetricLabel.make(key, value)))

/**
 * How an error is named in metric tags and span attributes: its tag, and its reason when it has
 * one (`AuthFailed.WrongPassword`). Never its detail, which may quote what the peer sent.
 */
export const errorName = (error: unknown): string => {
  if (typeof error !== "object" || error === null || !("_tag" in error)) return "unknown"
  const tag = String(error._tag)
  return "reason" in error && typeof error.reason === "string" ? `${tag}.${error.reason}` : tag
}

/** @internal */
/** Process-wide session ids for log annotations and spans: short, unique per process, and not secret. */
let lastSessionId = 0
export const nextSessionId = (): string => `s${(++lastSessionId).toString(36)}`
