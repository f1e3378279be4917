/**
 * cvg-core's spans and metrics exported with `@effect/opentelemetry`, unchanged: the library only
 * uses Effect's own `withSpan` and `Metric`, so installing the OpenTelemetry SDK as a Layer is all
 * an application does. Here a server and a client run in one process over loopback TCP, with a
 * password; the client sends a few requests, then a second client tries a wrong password. Spans
 * (`cvg.handshake`, `cvg.request`) are printed by the console span exporter as they end, and the
 * metrics (`cvg.handshakes`, `cvg.bytes.in`, ...) by the console metric exporter at shutdown.
 *
 * Needs the dev dependencies `@effect/opentelemetry`, `@opentelemetry/sdk-trace-base`,
 * `@opentelemetry/sdk-metrics` (and their peers).
 *
 * Run: npx tsx examples/otel.ts
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { ConsoleMetricExporter, PeriodicExportingMetricReader, type PushMetricExporter } from "@opentelemetry/sdk-metrics"
import { ConsoleSpanExporter, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base"
import { Deferred, Effect, Fiber } from "effect"
import { connect, Packet, PacketType, serve } from "../src/index.js"

const password = process.env["CVG_PASSWORD"] ?? "correct horse battery staple"

/** The OpenTelemetry SDK as a Layer: spans to `spans` as each ends, metrics to `metrics` at shutdown. */
export const otelLayer = (exporters: { readonly spans: SpanExporter; readonly metrics: PushMetricExporter }) =>
  NodeSdk.layer(() => ({
    resource: { serviceName: "cvg-example" },
    spanProcessor: new SimpleSpanProcessor(exporters.spans),
    // Long interval: the reader's shutdown, when the Layer is released, exports what was counted.
    metricReader: new PeriodicExportingMetricReader({ exporter: exporters.metrics, exportIntervalMillis: 60_000 })
  }))

/** A server that echoes, a client with three requests, and a client with the wrong password. */
export const program = Effect.gen(function*() {
  const listening = yield* Deferred.make<number>()
  const server = yield* Effect.fork(
    serve(
      { port: 0, encryption: "required", password, onListen: (address) => Deferred.succeed(listening, address.port) },
      (session) => session.serve((request) => Effect.succeed(new Packet({ id: request.id, type: request.type, payload: request.payload })))
    )
  )
  const port = yield* Deferred.await(listening)

  const session = yield* connect({ port, encryption: "required", password })
  for (const word of ["one", "two", "three"]) {
    yield* session.request(new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload: new TextEncoder().encode(word) }))
  }
  yield* session.close

  const refused = yield* Effect.flip(connect({ port, encryption: "required", password: "not the password" }))
  yield* Effect.logInfo(`the wrong password: ${refused._tag}`)

  yield* Fiber.interrupt(server)
  return { refused: refused._tag }
})

export const main = program.pipe(
  Effect.provide(otelLayer({ spans: new ConsoleSpanExporter(), metrics: new ConsoleMetricExporter() }))
)

if (import.meta.url === `file://${process.argv[1]}`) {
  Effect.runPromise(main).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    }
  )
}
