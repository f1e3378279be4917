/**
 * The typed layers over cvg, for the round-trip and in-flight figures only (their bulk and
 * handshake costs are cvg's): `cvg-typed` is an `Api` call (PROTOCOL.md §12) of a 64-byte string, and
 * `rpc-cvg` the same request as an `@effect/rpc` RPC through `cvg-core/rpc`, both encrypted. Each
 * is compared with `cvg`'s raw `request` in the same run: the difference is the cost of typing.
 */
import { Rpc, RpcClient, RpcGroup, RpcSerialization, RpcServer } from "@effect/rpc"
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import { performance } from "node:perf_hooks"
import { Api, connect, serve } from "../../src/index.js"
import { layerClientProtocol, layerServerProtocol } from "../../src/rpc.js"
import { startDaemon } from "./daemon.js"
import { notMeasured } from "./idlayer.js"
import type { BenchSystem, EchoConnection, InflightOptions, RoundTripOptions, Target } from "./types.js"

class Echo extends Schema.TaggedRequest<Echo>()("Echo", {
  payload: { text: Schema.String },
  success: Schema.String,
  failure: Schema.Never
}) {}
const EchoApi = Api.make({ requests: [Echo] })

class EchoRpcs extends RpcGroup.make(Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String })) {}

/** Sequential calls and `depth` calls in flight, for any `call` returning an Effect. */
const echoConnection = (
  call: (text: string) => Effect.Effect<unknown, unknown>,
  close: () => Promise<void>,
  describe: string
): EchoConnection => ({
  describe,
  roundTrips: (options: RoundTripOptions) =>
    Effect.runPromise(Effect.gen(function*() {
      const text = "a".repeat(options.payload)
      const latencies: Array<number> = []
      const deadline = performance.now() + options.durationMs
      while (latencies.length < options.count && performance.now() < deadline) {
        const started = performance.now()
        yield* call(text)
        latencies.push((performance.now() - started) * 1000)
      }
      return latencies
    })),
  inflight: (options: InflightOptions) =>
    Effect.runPromise(Effect.gen(function*() {
      const text = "a".repeat(options.payload)
      const start = performance.now()
      const deadline = start + options.durationMs
      let completed = 0
      const worker = Effect.gen(function*() {
        while (performance.now() < deadline) {
          yield* call(text)
          completed++
        }
      })
      yield* Effect.forEach(Array.from({ length: options.depth }), () => worker, { concurrency: "unbounded", discard: true })
      return { completed, seconds: (performance.now() - start) / 1000 }
    })),
  close
})

export const cvgTyped: BenchSystem = {
  name: "cvg-typed",
  startServer: () =>
    startDaemon((announce) =>
      serve({ port: 0, encryption: "required", onListen: (address) => announce(address.port) }, (session) =>
        EchoApi.serve(session, { Echo: ({ text }) => Effect.succeed(text) }))
    ),
  openEcho: async (target: Target) => {
    const session = await Effect.runPromise(connect({ host: target.host, port: target.port, encryption: "required" }))
    const client = EchoApi.client(session)
    return echoConnection((text) => client.call(new Echo({ text })), () => Effect.runPromise(session.close), `${session.info.suite}, Api call`)
  },
  bulk: notMeasured("bulk"),
  handshakes: notMeasured("the handshake rate")
}

export const rpcCvg: BenchSystem = {
  name: "rpc-cvg",
  startServer: () =>
    startDaemon((announce) =>
      Layer.launch(
        RpcServer.layer(EchoRpcs).pipe(
          Layer.provide(EchoRpcs.toLayer({ Echo: ({ text }) => Effect.succeed(text) })),
          Layer.provide(layerServerProtocol({ port: 0, encryption: "required", onListen: (address) => announce(address.port) })),
          Layer.provide(RpcSerialization.layerMsgPack)
        )
      )
    ),
  openEcho: async (target: Target) => {
    // The protocol Layer is built in the connection's own scope: provided to `RpcClient.make` alone,
    // it would close the session as soon as the client exists.
    const scope = Effect.runSync(Scope.make())
    const protocol = layerClientProtocol({ host: target.host, port: target.port, encryption: "required" }).pipe(
      Layer.provide(RpcSerialization.layerMsgPack)
    )
    const client = await Effect.runPromise(
      Effect.flatMap(Layer.build(protocol), (context) => Effect.provide(RpcClient.make(EchoRpcs), context)).pipe(Scope.extend(scope))
    )
    return echoConnection((text) => client.Echo({ text }), () => Effect.runPromise(Scope.close(scope, Exit.void)), "@effect/rpc (msgpack) over cvg, encrypted")
  },
  bulk: notMeasured("bulk"),
  handshakes: notMeasured("the handshake rate")
}
