/**
 * Observability through Effect (README "Observability"): a handshake, a request and a typed call
 * run in memory under a collecting tracer and logger, and their spans, metrics and log annotations
 * are checked by name and attribute. Everything recorded is then searched for the password and for
 * anything shaped like key material: neither may appear.
 */
import { describe, expect, it } from "@effect/vitest"
import type { PushMetricExporter, ResourceMetrics } from "@opentelemetry/sdk-metrics"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { Effect, HashMap, Logger, Metric, MetricState, Option, Schema, Tracer } from "effect"
import { Api, connectScoped, type Session } from "cvg-core"
import { SUITE } from "../src/handshake/Handshake.js"
import { PROTOCOL_VERSION } from "../src/wire/Messages.js"
import { PacketType } from "../src/wire/PacketType.js"
import { otelLayer, program as otelExample } from "../examples/otel.js"
import { bounded, memorySessions, packet, randomPayload, startServer, str } from "./support/sessions.js"

const PASSWORD = "correct horse battery staple 7f3a"

class Echo extends Schema.TaggedRequest<Echo>()("Echo", { failure: Schema.Never, success: Schema.String, payload: { text: Schema.String } }) {}
const EchoApi = Api.make({ requests: [Echo] })

interface Recorded {
  readonly spans: Array<Tracer.Span>
  readonly logs: Array<{ readonly message: string; readonly annotations: Record<string, unknown> }>
}

/**
 * A tracer that keeps every span Effect's own tracer makes, and a logger that keeps every line with
 * its annotations; `run` runs an effect under both.
 */
const recorder = Effect.gen(function*() {
  const native = yield* Effect.tracer
  const recorded: Recorded = { spans: [], logs: [] }
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = native.span(name, parent, context, links, startTime, kind, options)
      recorded.spans.push(span)
      return span
    },
    context: (f, fiber) => native.context(f, fiber)
  })
  const logger = Logger.make(({ annotations, message }) => {
    recorded.logs.push({ message: String(message), annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
  })
  const run = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    effect.pipe(Effect.withTracer(tracer), Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
  return { recorded, run }
})

/** A counter's or gauge's value summed over the series whose tags include `tags`. */
const metricValue = (name: string, tags: Record<string, string> = {}) =>
  Effect.map(Metric.snapshot, (pairs) => {
    let total = 0
    for (const pair of pairs) {
      if (pair.metricKey.name !== name) continue
      const labels = new Map(pair.metricKey.tags.map((label) => [label.key, label.value]))
      if (!Object.entries(tags).every(([key, value]) => labels.get(key) === value)) continue
      const state = pair.metricState
      if (MetricState.isCounterState(state)) total += Number(state.count)
      else if (MetricState.isGaugeState(state)) total += Number(state.value)
    }
    return total
  })

const spanNamed = (recorded: Recorded, name: string) => recorded.spans.filter((span) => span.name === name)
const attributes = (span: Tracer.Span) => Object.fromEntries(span.attributes)

/**
 * Every recorded span attribute, span event, log annotation and metric tag: none may hold the
 * password, and every value is a boolean, a number, or a short string (no byte arrays, nothing
 * long enough to be a key, nonce or MAC in hex or base64).
 */
const expectNoSecrets = (recorded: Recorded, labels: ReadonlyArray<string>) => {
  const values: Array<unknown> = []
  for (const span of recorded.spans) values.push(...span.attributes.values())
  for (const log of recorded.logs) values.push(...Object.values(log.annotations))
  values.push(...labels)
  for (const value of values) {
    expect(["boolean", "number", "string"]).toContain(typeof value)
    if (typeof value === "string") expect(value.length, value).toBeLessThan(48)
  }
  const everything = JSON.stringify({
    spans: recorded.spans.map((span) => ({ name: span.name, attributes: attributes(span) })),
    logs: recorded.logs,
    labels
  })
  expect(everything).not.toContain(PASSWORD)
  expect(everything).not.toContain("horse")
  expect(everything).not.toMatch(/[0-9a-f]{32}/i)
  for (const key of recorded.spans.flatMap((span) => [...span.attributes.keys()])) {
    expect(key).not.toMatch(/key$|nonce|secret|mac|proof|iv$/i)
  }
}

const metricLabels = Effect.map(Metric.snapshot, (pairs) =>
  pairs.filter((pair) => pair.metricKey.name.startsWith("cvg.")).flatMap((pair) => pair.metricKey.tags.map((tag) => `${tag.key}=${tag.value}`)))

/** The server: echoes requests, answers typed `Echo` calls, and logs a line for each. */
const serveEcho = (session: Session) =>
  EchoApi.serve(session, {
    Echo: ({ text }) => Effect.as(Effect.logInfo("echo call"), text)
  })

describe("observability", () => {
  it.scopedLive("a handshake and a request: spans with negotiated attributes, metrics, log annotations, no secret", () =>
    Effect.gen(function*() {
      const { recorded, run } = yield* recorder
      const before = {
        clientOk: yield* metricValue("cvg.handshakes", { role: "client", outcome: "success", reason: "ok" }),
        serverOk: yield* metricValue("cvg.handshakes", { role: "server", outcome: "success", reason: "ok" }),
        active: yield* metricValue("cvg.sessions.active"),
        bytesIn: yield* metricValue("cvg.bytes.in"),
        bytesOut: yield* metricValue("cvg.bytes.out"),
        sealed: yield* metricValue("cvg.records.sealed")
      }

      const side = { encryption: "required", password: PASSWORD } as const
      const { client, server } = yield* run(memorySessions({
        client: { ...side, peer: "server.example:4000" },
        server: { ...side, peer: "10.0.0.7:51234" }
      }))
      expect(yield* metricValue("cvg.sessions.active")).toBe(before.active + 2)

      // A plain request, answered by a handler that logs, then a typed call.
      yield* run(Effect.forkScoped(server.serve((request) =>
        request.type === PacketType.COMMAND
          ? Effect.as(Effect.logInfo("echo packet"), packet(request.id, PacketType.COMMAND, request.payload))
          : Effect.succeed(undefined)
      )))
      const reply = yield* run(client.request(packet(client.nextId(), PacketType.COMMAND, "ping")))
      expect(str(reply.payload)).toBe("ping")

      // --- spans: one handshake per side, with what was negotiated ------------------------------
      const handshakes = spanNamed(recorded, "cvg.handshake")
      expect(handshakes.map((span) => span.attributes.get("cvg.role")).sort()).toEqual(["client", "server"])
      for (const span of handshakes) {
        const role = span.attributes.get("cvg.role")
        expect(span.kind).toBe(role)
        expect(span.status._tag).toBe("Ended")
        expect(attributes(span)).toEqual({
          "cvg.role": role,
          "cvg.protocol.version": PROTOCOL_VERSION,
          "cvg.encryption.local": "required",
          "cvg.encryption.peer": "required",
          "cvg.password.configured": true,
          "cvg.server_key.configured": false,
          "cvg.peer": role === "client" ? "server.example:4000" : "10.0.0.7:51234",
          "cvg.encrypted": true,
          "cvg.password": true,
          "cvg.server_key.trust": "none",
          "cvg.suite": SUITE,
          "cvg.outcome": "success",
          "cvg.reason": "ok"
        })
      }

      // --- spans: one per request, naming its id, type and session ------------------------------
      const requests = spanNamed(recorded, "cvg.request")
      expect(requests).toHaveLength(1)
      expect(attributes(requests[0]!)).toEqual({
        "cvg.request.id": reply.id,
        "cvg.packet.type": PacketType.COMMAND,
        "cvg.session": client.info.id,
        "cvg.stream": false
      })
      expect(requests[0]!.kind).toBe("client")
      expect(requests[0]!.status._tag).toBe("Ended")

      // --- metrics --------------------------------------------------------------------------------
      expect(yield* metricValue("cvg.handshakes", { role: "client", outcome: "success", reason: "ok" })).toBe(before.clientOk + 1)
      expect(yield* metricValue("cvg.handshakes", { role: "server", outcome: "success", reason: "ok" })).toBe(before.serverOk + 1)
      // Both sides' sockets are in this process: each side's bytes out are the other's bytes in.
      const bytesIn = (yield* metricValue("cvg.bytes.in")) - before.bytesIn
      const bytesOut = (yield* metricValue("cvg.bytes.out")) - before.bytesOut
      expect(bytesIn).toBeGreaterThan(0)
      expect(bytesIn).toBe(bytesOut)
      // At least the request and its reply, and the client's and server's FINISHED, were sealed.
      expect((yield* metricValue("cvg.records.sealed")) - before.sealed).toBeGreaterThanOrEqual(4)

      // --- log annotations: peer and session on what the handler logged -------------------------
      const handled = recorded.logs.find((log) => log.message.includes("echo packet"))
      expect(handled?.annotations).toMatchObject({ "cvg.peer": "10.0.0.7:51234", "cvg.session": server.info.id })
      expect(server.info.id).not.toBe(client.info.id)

      expectNoSecrets(recorded, yield* metricLabels)

      yield* client.close
      yield* server.closed
      expect(yield* metricValue("cvg.sessions.active")).toBe(before.active)
    }).pipe(bounded("handshake and request observed")))

  it.scopedLive("a typed call: a cvg.call span with the cvg.request span of its exchange inside", () =>
    Effect.gen(function*() {
      const { recorded, run } = yield* recorder
      const { client, server } = yield* run(memorySessions({
        client: { encryption: "required", password: PASSWORD },
        server: { encryption: "required", password: PASSWORD }
      }))
      yield* run(Effect.forkScoped(serveEcho(server)))
      expect(yield* run(EchoApi.client(client).call(new Echo({ text: "hello" })))).toBe("hello")

      const calls = spanNamed(recorded, "cvg.call")
      expect(calls).toHaveLength(1)
      expect(attributes(calls[0]!)).toEqual({ "cvg.call": "Echo", "cvg.session": client.info.id })
      const request = spanNamed(recorded, "cvg.request")[0]!
      expect(Option.map(request.parent, (parent) => parent.spanId)).toEqual(Option.some(calls[0]!.spanId))
      expect(recorded.logs.find((log) => log.message.includes("echo call"))?.annotations).toMatchObject({ "cvg.session": server.info.id })
      expectNoSecrets(recorded, yield* metricLabels)
    }).pipe(bounded("typed call observed")))

  it.scopedLive("a failed handshake: counted by outcome and reason, its span says why, the password nowhere", () =>
    Effect.gen(function*() {
      const { recorded, run } = yield* recorder
      // With CPace the client finds a wrong password first, from SERVER_FINISHED (PROTOCOL.md §5).
      const wrong = { role: "client", outcome: "failure", reason: "AuthFailed.WrongPassword" }
      const before = yield* metricValue("cvg.handshakes", wrong)
      const failed = yield* run(Effect.flip(memorySessions({
        client: { encryption: "required", password: "not the password" },
        server: { encryption: "required", password: PASSWORD }
      })))
      expect(failed._tag).toBe("AuthFailed")
      expect(yield* metricValue("cvg.handshakes", wrong)).toBe(before + 1)
      const client = spanNamed(recorded, "cvg.handshake").find((span) => span.attributes.get("cvg.role") === "client")!
      expect(attributes(client)).toMatchObject({ "cvg.outcome": "failure", "cvg.reason": "AuthFailed.WrongPassword" })
      expect(client.status._tag === "Ended" && client.status.exit._tag).toBe("Failure")
      expect(attributes(client)).not.toHaveProperty("cvg.suite")
      expectNoSecrets(recorded, yield* metricLabels)
      expect(JSON.stringify(recorded.spans.map(attributes))).not.toContain("not the password")
    }).pipe(bounded("failed handshake observed")))

  it.scopedLive("rekeys and budget exhaustions are counted", () =>
    Effect.gen(function*() {
      const rekeysBefore = yield* metricValue("cvg.rekeys")
      const { client, server } = yield* memorySessions({
        client: { encryption: "required", password: PASSWORD, rekeyAfter: 3 },
        server: { encryption: "required", password: PASSWORD, rekeyAfter: 3 }
      })
      yield* Effect.forkScoped(server.serve((request) => Effect.succeed(packet(request.id, PacketType.COMMAND, "ok"))))
      for (let i = 0; i < 5; i++) yield* client.request(packet(client.nextId(), PacketType.COMMAND, "x"))
      expect((yield* metricValue("cvg.rekeys")) - rekeysBefore).toBeGreaterThanOrEqual(2)

      const exhaustedBefore = yield* metricValue("cvg.budget.exhausted", { reason: "ConnectionLimit" })
      const small = yield* memorySessions({ server: { maxBufferedBytes: 1024 * 1024 } })
      // The server takes nothing: the packets stay charged until the budget refuses one.
      yield* Effect.ignore(Effect.forEach(Array.from({ length: 8 }, (_, i) => i), (i) =>
        small.client.send(packet(i, PacketType.COMMAND, randomPayload(256 * 1024))), { discard: true }))
      const end = yield* small.server.closed
      expect(end._tag).toBe("ProtocolError")
      expect(yield* metricValue("cvg.budget.exhausted", { reason: "ConnectionLimit" })).toBe(exhaustedBefore + 1)
    }).pipe(bounded("rekeys and budgets counted")))
})

describe("observability over TCP", () => {
  it.scopedLive("a connection over maxConnections is counted as refused, and the server's handshake span names its peer", () =>
    Effect.gen(function*() {
      const { recorded, run } = yield* recorder
      const refused = { reason: "maxConnections" }
      const before = yield* metricValue("cvg.connections.refused", refused)
      const side = { encryption: "required", password: PASSWORD } as const
      const { port } = yield* run(startServer({ ...side, maxConnections: 1 }, (session) => session.serve((p) => Effect.succeed(p))))
      const first = yield* connectScoped({ port, ...side })
      const second = yield* Effect.flip(Effect.scoped(connectScoped({ port, ...side })))
      expect(second).toMatchObject({ _tag: "PeerAlert", reason: "LimitExceeded" })
      expect(yield* metricValue("cvg.connections.refused", refused)).toBe(before + 1)
      const server = spanNamed(recorded, "cvg.handshake").find((span) => span.attributes.get("cvg.role") === "server")
      expect(String(server?.attributes.get("cvg.peer"))).toMatch(/127\.0\.0\.1:\d+$/)
      yield* first.close
    }).pipe(bounded("refused connection counted")))
})

describe("examples/otel.ts", () => {
  it.live("spans and metrics reach the OpenTelemetry SDK through @effect/opentelemetry, unchanged", () =>
    Effect.gen(function*() {
      // Exporters that keep what they are given (the SDK's in-memory ones forget it at shutdown).
      const spans: Array<ReadableSpan> = []
      const metrics: Array<ResourceMetrics> = []
      const spanExporter: SpanExporter = {
        export: (batch, done) => {
          spans.push(...batch)
          done({ code: 0 })
        },
        shutdown: () => Promise.resolve()
      }
      const metricExporter: PushMetricExporter = {
        export: (batch, done) => {
          metrics.push(batch)
          done({ code: 0 })
        },
        forceFlush: () => Promise.resolve(),
        shutdown: () => Promise.resolve()
      }
      const result = yield* otelExample.pipe(Effect.provide(otelLayer({ spans: spanExporter, metrics: metricExporter })))
      expect(result.refused).toBe("AuthFailed")

      const handshakes = spans.filter((span) => span.name === "cvg.handshake")
      expect(handshakes.filter((span) => span.attributes["cvg.outcome"] === "success")).toHaveLength(2)
      // Both ends of the refused handshake say why; the client found it (CPace, PROTOCOL.md §5).
      expect(handshakes.filter((span) => span.attributes["cvg.reason"] === "AuthFailed.WrongPassword").map((span) => span.attributes["cvg.role"]))
        .toContain("client")
      expect(spans.filter((span) => span.name === "cvg.request")).toHaveLength(3)

      const exported = metrics.flatMap((batch) => batch.scopeMetrics.flatMap((scope) => scope.metrics))
      const names = new Set(exported.map((metric) => metric.descriptor.name))
      for (const name of ["cvg.handshakes", "cvg.sessions.active", "cvg.bytes.in", "cvg.bytes.out", "cvg.records.sealed"]) {
        expect(names).toContain(name)
      }
      const everything = JSON.stringify({ spans: spans.map((span) => span.attributes), metrics: exported.map((metric) => metric.dataPoints) })
      expect(everything).not.toContain("correct horse")
      expect(everything).not.toContain("not the password")
    }).pipe(bounded("examples/otel.ts")))
})
