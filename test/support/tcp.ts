/**
 * A connected pair of real loopback TCP sockets, as `@effect/platform` `Socket`s.
 *
 * `NodeSocket.makeNet` connects lazily, when its `run` starts, so the server's side is an Effect
 * that completes once the client has connected.
 */
import { NodeSocket, NodeSocketServer } from "@effect/platform-node"
import type * as Socket from "@effect/platform/Socket"
import { Deferred, Effect } from "effect"
import type { Scope } from "effect"
import * as Net from "node:net"
import { createServer } from "node:net"
import { netSocket } from "../../src/transport/Transport.js"

export interface TcpPair {
  readonly client: Socket.Socket
  readonly server: Effect.Effect<Socket.Socket>
  readonly port: number
}

export const tcpPair: Effect.Effect<TcpPair, unknown, Scope.Scope> = Effect.gen(function*() {
  const server = yield* NodeSocketServer.make({ port: 0, host: "127.0.0.1" })
  const accepted = yield* Deferred.make<Socket.Socket>()
  yield* server.run((socket) => Effect.zipRight(Deferred.succeed(accepted, socket), Effect.never)).pipe(
    Effect.forkScoped
  )
  const port = server.address._tag === "TcpAddress" ? server.address.port : 0
  const client = yield* NodeSocket.makeNet({ host: "127.0.0.1", port })
  return { client, server: Deferred.await(accepted), port }
})

/** A port nothing listens on (bound, then closed). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/**
 * The same pair as `connect` and `serve` drive it: raw `net.Socket`s through `netSocket`
 * (src/transport/Transport.ts), not the platform socket's `run` and `writer`.
 */
export const netTcpPair: Effect.Effect<TcpPair, unknown, Scope.Scope> = Effect.gen(function*() {
  const server = yield* NodeSocketServer.make({ port: 0, host: "127.0.0.1", noDelay: true })
  const accepted = yield* Deferred.make<Socket.Socket>()
  yield* server.run(() =>
    Effect.gen(function*() {
      // NodeSocketServer provides the accepted net.Socket (its type does not say so).
      const conn = yield* Effect.serviceOption(NodeSocket.NetSocket)
      if (conn._tag === "None") return yield* Effect.dieMessage("NodeSocketServer provides NetSocket")
      yield* Deferred.succeed(accepted, yield* netSocket(conn.value))
      return yield* Effect.never
    })
  ).pipe(Effect.forkScoped)
  const port = server.address._tag === "TcpAddress" ? server.address.port : 0
  const conn = yield* Effect.acquireRelease(
    Effect.async<Net.Socket>((resume) => {
      const conn = Net.createConnection({ host: "127.0.0.1", port, noDelay: true })
      conn.on("error", () => {})
      conn.once("connect", () => resume(Effect.succeed(conn)))
    }),
    (conn) => Effect.sync(() => conn.destroy())
  )
  return { client: yield* netSocket(conn), server: Deferred.await(accepted), port }
})
