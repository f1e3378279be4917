import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import type * as Socket from "@effect/platform/Socket"
import { Deferred, Effect, Exit } from "effect"
import type * as Net from "node:net"

const program = Effect.scoped(Effect.gen(function* () {
  const server = yield* NodeSocketServer.make({ port: 0, host: "127.0.0.1" })
  const address = server.address
  if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("no tcp")
  const accepted = yield* Deferred.make<readonly [Socket.Socket, Net.Socket]>()
  yield* Effect.forkScoped(server.run((s) => Effect.flatMap(NodeSocket.NetSocket, (conn) => Deferred.succeed(accepted, [s, conn] as const)).pipe(Effect.zipRight(Effect.never))))
  const client = yield* NodeSocket.makeNet({ port: address.port, host: "127.0.0.1" })
  const t0 = Date.now()
  const log = (m: string) => console.log(`+${Date.now() - t0}ms ${m}`)
  yield* Effect.fork(client.run((b) => log(`client got ${b.length}`)).pipe(Effect.exit, Effect.tap((e) => log(`client run: ${Exit.isSuccess(e) ? "ok" : JSON.stringify(e.cause)}`))))
  const [s, conn] = yield* Deferred.await(accepted)
  yield* Effect.fork(s.run((b) => log(`server got ${b.length}`)).pipe(Effect.exit, Effect.tap((e) => log(`server run: ${Exit.isSuccess(e) ? "ok" : JSON.stringify(e.cause)}`))))
  yield* Effect.sleep(20)
  const cw = yield* client.writer
  yield* cw(new Uint8Array(100))
  yield* Effect.sleep(20)
  conn.resetAndDestroy()
  yield* Effect.sleep(50)
  yield* cw(new Uint8Array(100)).pipe(Effect.timeout(100), Effect.exit, Effect.tap((e) => log(`client write after cut ${JSON.stringify(e)}`)))
}))
Effect.runPromise(program).then(() => console.log("done"), (e) => console.log("fail", e))
