/**
 * The server: listens on TCP, runs one handshake per connection in its own fiber under the
 * handshake timeout, then hands the session to the user's handler.
 *
 * A connection's failure is logged with the peer's address and touches no other connection. When
 * the server is interrupted, the listener closes and every open session is sent CLOSE
 * (PROTOCOL.md §7.1) before its socket is released.
 */
import { NodeSocket, NodeSocketServer } from "@effect/platform-node"
import * as Socket from "@effect/platform/Socket"
import type * as SocketServer from "@effect/platform/SocketServer"
import { Duration, Effect, Layer, Option } from "effect"
import type { Scope } from "effect"
import type { Crypto } from "../crypto/Crypto.js"
import { withDefaultCrypto } from "../client/Client.js"
import type { InvalidArgument } from "../errors.js"
import { serverHandshake, type HandshakeFailure, type HandshakeOptions } from "../handshake/Handshake.js"
import { checkServeOptions, checkSessionOptions } from "../internal/validate.js"
import { makeMemoryPool } from "../session/Budget.js"
import { makeWatchdog, SERVER_TICK } from "../session/Watchdog.js"
import { fromHandshake, type Session, type SessionOptions, type SessionSetup } from "../session/Session.js"
import { encodeFrame } from "../wire/Frame.js"
import { AlertCode, MessageType } from "../wire/Messages.js"

export interface ServeOptions extends HandshakeOptions, SessionOptions {
  /** Default `"127.0.0.1"`. */
  readonly host?: string | undefined
  /** 0 picks a free port; `address` tells which. */
  readonly port: number
  /** Connections served at once; more are refused with an alert. Default 1024. */
  readonly maxConnections?: number | undefined
  /**
   * Bytes all connections together may hold for their peers beyond each one's 64 KiB allowance
   * (PROTOCOL.md §10). A connection whose charge finds the pool empty ends with `LimitExceeded`.
   * Default 256 MiB.
   */
  readonly memoryBudget?: number | undefined
}

export const DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024
/** A server ends sessions that stay silent this long unless told otherwise (PROTOCOL.md §10). */
export const DEFAULT_SERVER_IDLE_TIMEOUT = Duration.minutes(5)

export interface Server {
  readonly address: SocketServer.TcpAddress
  /** Serves connections until interrupted. */
  readonly run: <E, R>(handler: (session: Session) => Effect.Effect<unknown, E, R>) => Effect.Effect<never, SocketServer.SocketServerError, Exclude<R, Scope.Scope>>
}

/** Handshake, then a session, over whatever `Socket` and `Crypto` the context provides. */
export const session = (
  options: HandshakeOptions & SessionSetup = {}
): Effect.Effect<Session, HandshakeFailure | InvalidArgument, Socket.Socket | Crypto | Scope.Scope> =>
  Effect.flatMap(checkSessionOptions(options), (options) => fromHandshake(serverHandshake(options), options))

const peerAddress = Effect.map(
  Effect.serviceOption(NodeSocket.NetSocket),
  Option.flatMap((conn) => Option.fromNullable(conn.remoteAddress === undefined ? undefined : `${conn.remoteAddress}:${conn.remotePort}`))
)

/**
 * Refuses a connection over the limit: one plaintext alert (PROTOCOL.md §6), then the socket is
 * released. A platform socket only writes while its `run` is going, hence the reader.
 */
const refuse = (socket: Socket.Socket) =>
  Effect.scoped(
    Effect.gen(function*() {
      const write = yield* socket.writer
      yield* Effect.forkScoped(socket.run(() => {}))
      yield* write(encodeFrame(MessageType.ALERT, Uint8Array.of(AlertCode.LIMIT_EXCEEDED)))
      yield* write(new Socket.CloseEvent())
    })
  ).pipe(Effect.timeout("1 second"), Effect.ignore)

/** Binds the listener; the returned server serves once `run` is called. */
export const listen = (options: ServeOptions): Effect.Effect<Server, SocketServer.SocketServerError | InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    yield* checkServeOptions(options)
    // Frames are already coalesced by the writer; Nagle would only add latency to replies.
    const listener = yield* NodeSocketServer.make({ host: options.host ?? "127.0.0.1", port: options.port, noDelay: true })
    const address = listener.address._tag === "TcpAddress"
      ? listener.address
      : { _tag: "TcpAddress" as const, hostname: "", port: 0 }
    const maxConnections = options.maxConnections ?? 1024
    let connections = 0
    const pool = makeMemoryPool(options.memoryBudget ?? DEFAULT_MEMORY_BUDGET)
    const watchdog = yield* makeWatchdog(SERVER_TICK)
    const idleTimeout = options.idleTimeout ?? DEFAULT_SERVER_IDLE_TIMEOUT

    // Kept flat on purpose: every wrapper here stays on the stack of each connection's fiber for as
    // long as the session lives (docs/resources.md), so the slot is a counter released by the
    // connection's scope, and the session object is handed to the handler without being held.
    const run = <E, R>(handler: (session: Session) => Effect.Effect<unknown, E, R>) =>
      listener.run((socket) =>
        Effect.scoped(
          Effect.gen(function*() {
            let admitted = false
            yield* Effect.addFinalizer(() =>
              Effect.sync(() => {
                if (admitted) connections--
              })
            )
            const peer = Option.getOrElse(yield* peerAddress, () => "unknown")
            if (connections >= maxConnections) {
              yield* Effect.logWarning("cvg-core: connection refused, limit reached").pipe(Effect.annotateLogs({ peer }))
              return yield* refuse(socket)
            }
            // Checked and taken in one synchronous step; the finalizer above gives it back.
            admitted = true
            connections++
            return yield* Effect.flatMap(
              session({ ...options, peer, pool, watchdog, idleTimeout }).pipe(
                Effect.provideService(Socket.Socket, socket),
                withDefaultCrypto
              ),
              handler
            ).pipe(
              Effect.asVoid,
              Effect.catchAllCause((cause) =>
                Effect.logWarning("cvg-core: connection failed", cause).pipe(Effect.annotateLogs({ peer }))
              )
            )
          })
        )
      )

    return { address, run }
  })

/** Serve options, plus a callback that learns the bound address (with port 0 there is no other way). */
export type ServeAndAnnounceOptions = ServeOptions & {
  readonly onListen?: ((address: SocketServer.TcpAddress) => Effect.Effect<void>) | undefined
}

const listenAndAnnounce = (options: ServeAndAnnounceOptions) =>
  Effect.tap(listen(options), (server) => options.onListen?.(server.address) ?? Effect.void)

/** Listens and serves until interrupted. */
export const serve = <E, R>(
  options: ServeAndAnnounceOptions,
  handler: (session: Session) => Effect.Effect<unknown, E, R>
): Effect.Effect<never, SocketServer.SocketServerError | InvalidArgument, Exclude<R, Scope.Scope>> =>
  Effect.scoped(Effect.flatMap(listenAndAnnounce(options), (server) => server.run(handler)))

/**
 * The server as a Layer: it serves in the background for as long as the Layer is alive; a failure
 * to listen fails the Layer itself.
 */
export const layer = <E, R>(
  options: ServeAndAnnounceOptions,
  handler: (session: Session) => Effect.Effect<unknown, E, R>
): Layer.Layer<never, SocketServer.SocketServerError | InvalidArgument, Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(Effect.flatMap(listenAndAnnounce(options), (server) => Effect.forkScoped(server.run(handler))))
