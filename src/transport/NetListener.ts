/**
 * The server's TCP listener: binds, accepts, and runs one fiber per connection, interrupting them all
 * when it stops.
 *
 * It replaces `@effect/platform-node`'s `NodeSocketServer` on the live path for what an idle
 * connection costs (docs/resources.md, "Memory of an idle session"): the platform's accept loop
 * builds a platform `Socket` per connection and runs the handler under `provideService`, and both
 * stay with the connection for its whole life, although the session reads and writes the raw
 * `net.Socket` (src/transport/Transport.ts). Here a connection is its `net.Socket` and its fiber.
 */
import { SocketServerError, type TcpAddress } from "@effect/platform/SocketServer"
import { Deferred, Effect, Exit, FiberSet, Scope } from "effect"
import * as Net from "node:net"

export interface NetListener {
  readonly address: TcpAddress
  /**
   * Runs `handler` in a fiber of its own for each connection until interrupted, then interrupts them
   * and waits for them; fails if the listener fails. Connections accepted before `run` are handled
   * first; those accepted once it has stopped are closed at once.
   */
  readonly run: <R>(handler: (conn: Net.Socket) => Effect.Effect<void, never, R>) => Effect.Effect<never, SocketServerError, R>
}

/**
 * A connection's error before anything of ours listens to it (it waits for its fiber, or for `run`)
 * must not throw out of the event loop; the transport reads `conn.errored` when it starts. One
 * function for every connection, not a closure each.
 */
const ignoreEarlyError = () => {}

const destroy = (conn: Net.Socket) => {
  conn.destroy()
}

/** Binds `host:port`; the listener closes with the scope. A bind error fails with `SocketServerError` "Open". */
export const listenTcp = (options: {
  readonly host: string
  readonly port: number
  readonly noDelay: boolean
}): Effect.Effect<NetListener, SocketServerError, Scope.Scope> =>
  Effect.gen(function*() {
    const failed = yield* Deferred.make<never, SocketServerError>()
    const pending: Array<Net.Socket> = []
    let onConnection = (conn: Net.Socket) => {
      pending.push(conn)
    }
    /** From the moment the server stops: what is accepted meanwhile is closed at once, as is what waited. */
    const stopAccepting = () => {
      onConnection = destroy
      for (const conn of pending.splice(0)) conn.destroy()
    }
    const server = Net.createServer({ noDelay: options.noDelay }, (conn) => {
      conn.on("error", ignoreEarlyError)
      onConnection(conn)
    })
    yield* Effect.acquireRelease(
      Effect.async<void, SocketServerError>((resume) => {
        const onError = (cause: Error) => resume(Effect.fail(new SocketServerError({ reason: "Open", cause })))
        server.once("error", onError)
        server.listen({ host: options.host, port: options.port }, () => {
          server.off("error", onError)
          server.on("error", (cause) => Deferred.unsafeDone(failed, Exit.fail(new SocketServerError({ reason: "Unknown", cause }))))
          resume(Effect.void)
        })
      }),
      () => Effect.async<void>((resume) => {
        // `close` calls back once every connection has ended: one still waiting for `run` never would.
        stopAccepting()
        server.close(() => resume(Effect.void))
      })
    )
    const bound = server.address()
    const address: TcpAddress = bound === null || typeof bound === "string"
      ? { _tag: "TcpAddress", hostname: "", port: 0 }
      : { _tag: "TcpAddress", hostname: bound.address, port: bound.port }

    const run = <R>(handler: (conn: Net.Socket) => Effect.Effect<void, never, R>): Effect.Effect<never, SocketServerError, R> =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const fibers = yield* Scope.extend(FiberSet.make<void, never>(), scope)
        const fork = yield* FiberSet.runtime(fibers)<R>()
        return yield* Effect.async<never>(() => {
          onConnection = (conn) => {
            fork(handler(conn))
          }
          for (const conn of pending.splice(0)) onConnection(conn)
          // Stopping: the connections' fibers may take a while to close their sessions, and a peer
          // that reconnects meanwhile must not be left waiting in `pending` for a `run` that is over.
          return Effect.suspend(() => {
            stopAccepting()
            return Scope.close(scope, Exit.void)
          })
        }).pipe(Effect.raceFirst(Deferred.await(failed)))
      })

    return { address, run }
  })
