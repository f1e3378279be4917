// A README.md snippet, verbatim: test/readme.test.ts checks that it stays so. `tsc --noEmit` type-checks
// it against src/ ("cvg-core/rpc" resolves there through tsconfig.json's `paths`), and scripts/smoke.mjs
// against the packed and installed package. Never run.

import { Rpc, RpcClient, RpcGroup, RpcSerialization, RpcServer } from "@effect/rpc"
import { Effect, Layer, Schema, Stream } from "effect"
import { layerClientProtocol, layerServerProtocol } from "cvg-core/rpc"

class Counter extends RpcGroup.make(
  Rpc.make("Count", { payload: { to: Schema.Number }, success: Schema.Number, stream: true })
) {}

// Any RpcServer, with cvg as its protocol: serve it with Layer.launch(ServerLive).
export const ServerLive = RpcServer.layer(Counter).pipe(
  Layer.provide(Counter.toLayer({ Count: ({ to }) => Stream.range(1, to) })),
  Layer.provide(layerServerProtocol({ port: 5000, password: "secret" })),
  Layer.provide(RpcSerialization.layerMsgPack)
)

// One connection and one handshake for as long as the Layer lives.
const ClientLive = layerClientProtocol({ port: 5000, password: "secret" }).pipe(
  Layer.provide(RpcSerialization.layerMsgPack)
)

export const program = Effect.gen(function*() {
  const client = yield* RpcClient.make(Counter)
  yield* Stream.runForEach(client.Count({ to: 3 }), (n) => Effect.log(n))
}).pipe(Effect.scoped, Effect.provide(ClientLive))
