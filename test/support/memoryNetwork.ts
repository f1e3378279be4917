/**
 * A cvg client and server that connect over in-memory socket pairs instead of TCP, through the
 * public API only (`MemorySocket.makePair`, `ClientSession.session`, `ServerSession.session`): each
 * `connect` makes a pair, hands one side to the server and handshakes on the other. The server has
 * the shape of `listen`'s `Server`, so anything built on a cvg server runs on it unchanged.
 */
import * as Socket from "@effect/platform/Socket"
import { Effect, FiberSet, Queue, type Scope } from "effect"
import { ClientSession, type ConnectError, NodeCrypto, type Server, ServerSession, type Session } from "cvg-core"
import { MemorySocket } from "cvg-core/testing"
import type { SideOptions } from "./sessions.js"

export interface MemoryNetwork {
  readonly server: Server
  readonly connect: (options: SideOptions) => Effect.Effect<Session, ConnectError, Scope.Scope>
  /** Connections the server has accepted so far (one handshake each). */
  readonly accepted: () => number
  /** Server sessions currently open, newest last. */
  readonly sessions: () => ReadonlyArray<Session>
}

export const memoryNetwork = (
  serverOptions: SideOptions,
  faults?: MemorySocket.FaultOptions
): Effect.Effect<MemoryNetwork, never, Scope.Scope> =>
  Effect.gen(function*() {
    const incoming = yield* Effect.acquireRelease(Queue.unbounded<Socket.Socket>(), Queue.shutdown)
    let accepted = 0
    const open = new Set<Session>()

    const server: Server = {
      address: { _tag: "TcpAddress", hostname: "memory", port: 0 },
      run: <E, R>(handler: (session: Session) => Effect.Effect<unknown, E, R>) =>
        Effect.scoped(Effect.gen(function*() {
          const connections = yield* FiberSet.make()
          const runConnection = yield* FiberSet.runtime(connections)<Exclude<R, Scope.Scope>>()
          // Like the TCP server: each connection in a fiber of its own, its failure touching no other.
          const serveOne = (socket: Socket.Socket) =>
            Effect.scoped(Effect.gen(function*() {
              const session = yield* ServerSession.session(serverOptions).pipe(
                Effect.provideService(Socket.Socket, socket),
                Effect.provide(NodeCrypto.layer)
              )
              accepted++
              open.add(session)
              yield* Effect.addFinalizer(() => Effect.sync(() => open.delete(session)))
              yield* handler(session)
            })).pipe(Effect.catchAllCause((cause) => Effect.logDebug("memory connection ended", cause)))
          return yield* Effect.forever(Effect.map(Queue.take(incoming), (socket) => runConnection(serveOne(socket))))
        }))
    }

    const connect = (options: SideOptions) =>
      Effect.gen(function*() {
        const [client, serverSide] = yield* MemorySocket.makePair(faults)
        yield* Queue.offer(incoming, serverSide)
        return yield* ClientSession.session(options).pipe(
          Effect.provideService(Socket.Socket, client),
          Effect.provide(NodeCrypto.layer)
        )
      })

    return { server, connect, accepted: () => accepted, sessions: () => [...open] }
  })
