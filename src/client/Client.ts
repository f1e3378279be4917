/**
 * Client entry points: `connect` for plain programs, `connectScoped` and `layer` for Effect apps,
 * and `session` for tests that bring their own `Socket` and `Crypto` Layers.
 */
import * as Socket from "@effect/platform/Socket"
import { Context, Duration, Effect, Exit, Layer, Option, Scope } from "effect"
import { Crypto } from "../crypto/Crypto.js"
import * as NodeCrypto from "../crypto/NodeCrypto.js"
import { type ConnectFailed, InvalidArgument } from "../errors.js"
import { clientHandshake, type HandshakeFailure, type HandshakeOptions } from "../handshake/Handshake.js"
import { checkConnectOptions, checkSessionOptions } from "../internal/validate.js"
import { fromHandshake, type Session, type SessionOptions } from "../session/Session.js"
import { connectFailed } from "../transport/NetErrors.js"
import { netSocket } from "../transport/Transport.js"
import * as Net from "node:net"

export interface ConnectOptions extends HandshakeOptions, SessionOptions {
  /** Default `"127.0.0.1"`. */
  readonly host?: string | undefined
  readonly port: number
  /** Time allowed for the TCP connection to open. Default 10 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
}

export type ConnectError = HandshakeFailure | ConnectFailed | InvalidArgument

/** Handshake, then a session, over whatever `Socket` and `Crypto` the context provides. */
export const session = (
  options: HandshakeOptions & SessionOptions & { readonly peer?: string | undefined } = {}
): Effect.Effect<Session, ConnectError, Socket.Socket | Crypto | Scope.Scope> =>
  Effect.flatMap(checkSessionOptions(options), (options): Effect.Effect<Session, ConnectError, Socket.Socket | Crypto | Scope.Scope> =>
    // Known hosts are kept per address (PROTOCOL.md §3.7): without one there is nothing to look up.
    options.knownHosts !== undefined && options.peer === undefined
      ? Effect.fail(
        new InvalidArgument({ reason: "Option", field: "knownHosts", detail: "needs the peer's address as peer (\"host:port\")" })
      )
      : fromHandshake(clientHandshake(options), options))

/** The `Crypto` from the context when there is one, else `node:crypto`. */
export const withDefaultCrypto = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, Exclude<R, Crypto>> =>
  Effect.flatMap(Effect.serviceOption(Crypto), (crypto) =>
    Option.match(crypto, {
      onNone: () => Effect.provide(effect, NodeCrypto.layer),
      onSome: (service) => Effect.provideService(effect, Crypto, service)
    }))

/** Connects over TCP; the session lives as long as the scope. */
export const connectScoped = (options: ConnectOptions): Effect.Effect<Session, ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* checkConnectOptions(options)
    const host = options.host ?? "127.0.0.1"
    const port = options.port
    const conn = yield* open(host, port, Duration.decode(options.connectTimeout ?? Duration.seconds(10))).pipe(
      Effect.mapError(connectFailed(host, port))
    )
    return yield* session({ ...options, peer: `${host}:${port}` }).pipe(
      Effect.provideService(Socket.Socket, yield* netSocket(conn)),
      withDefaultCrypto
    )
  })

/**
 * Opens the TCP connection before the handshake (the platform's `makeNet` opened it lazily, on the
 * first read), so that the session drives the raw `net.Socket` (src/transport/Transport.ts). The
 * failures are the platform's, `Open` with the system error, or with no code on the timeout, so that
 * `connectFailed` reads them as before. The scope destroys a connection left open by a failure.
 */
const open = (host: string, port: number, timeout: Duration.Duration) =>
  Effect.gen(function*() {
    let opened: Net.Socket | undefined
    // Not an acquireRelease: its acquire would be uninterruptible, and the timeout could not stop it.
    yield* Effect.addFinalizer(() => Effect.sync(() => void (opened === undefined || opened.destroyed ? undefined : opened.destroySoon())))
    return yield* Effect.async<Net.Socket, Socket.SocketError>((resume) => {
      // Frames are already coalesced by the writer; Nagle would only add latency to requests.
      const conn = Net.createConnection({ host, port, noDelay: true })
      const onError = (cause: Error) => {
        conn.destroy()
        resume(Effect.fail(new Socket.SocketGenericError({ reason: "Open", cause })))
      }
      conn.once("error", onError)
      conn.once("connect", () => {
        conn.off("error", onError)
        // Until the transport listens (src/transport/Transport.ts), an error must not go unheard:
        // it stays on the socket (`conn.errored`) and the transport reports it when it starts.
        conn.on("error", () => {})
        opened = conn
        resume(Effect.succeed(conn))
      })
      return Effect.sync(() => conn.destroy())
    }).pipe(
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () => new Socket.SocketGenericError({ reason: "Open", cause: new Error("Connection timed out") })
      })
    )
  })

/**
 * Connects over TCP and returns a session the caller closes with `session.close`; resources are
 * also released once the session has ended by itself. `Effect.runPromise(connect({...}))` works as is.
 */
export const connect = (options: ConnectOptions): Effect.Effect<Session, ConnectError> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const opened = yield* Effect.exit(Scope.extend(connectScoped(options), scope))
    if (Exit.isFailure(opened)) {
      yield* Scope.close(scope, opened)
      return yield* opened
    }
    const session = opened.value
    const release = Scope.close(scope, Exit.void)
    yield* Effect.forkDaemon(Effect.zipRight(session.closed, release))
    return { ...session, close: Effect.zipRight(session.close, release) }
  })

/** The client session as a service. */
export class Client extends Context.Tag("cvg-core/Client")<Client, Session>() {}

export const layer = (options: ConnectOptions): Layer.Layer<Client, ConnectError> =>
  Layer.scoped(Client, connectScoped(options))
