/**
 * `@effect/rpc`'s client `Protocol` over cvg sessions.
 *
 * It is `RpcClient.makeProtocolSocket` as it is, given a `Socket` over cvg sessions
 * (`SessionSocket.reconnecting`), rather than a `Protocol` written on the session: rpc's own code
 * then does the serialization, the pings, the acks that pace streams and the retries exactly as it
 * does over TCP or WebSockets, and cvg only has to be a message-preserving socket (README.md,
 * "@effect/rpc over cvg").
 */
import * as Socket from "@effect/platform/Socket"
import { RpcClient, type RpcSerialization } from "@effect/rpc"
import { Effect, Layer, type Schedule, type Scope } from "effect"
import { type ConnectError, connectScoped, type ConnectOptions } from "../client/Client.js"
import type { InvalidArgument } from "../errors.js"
import { checkConnectOptions } from "../internal/validate.js"
import type { Session } from "../session/Session.js"
import { checkOptions, reconnecting, type SessionSocketOptions } from "../socket/SessionSocket.js"

export interface ClientProtocolOptions extends SessionSocketOptions {
  /**
   * While a reconnection fails, keep calls waiting instead of failing them with `RpcClientError`
   * (`RpcClient.makeProtocolSocket`'s option of that name). Default false.
   */
  readonly retryTransientErrors?: boolean | undefined
  /**
   * When rpc runs the socket again after the session ended; that run reconnects. Default rpc's:
   * exponential from 0.5 s, at most 5 s apart.
   */
  readonly retrySchedule?: Schedule.Schedule<unknown, Socket.SocketError> | undefined
}

/**
 * The client `Protocol` over sessions that `connect` makes: the first at once (its failure fails
 * this Effect), the next only once the previous one has ended (`SessionSocket.reconnecting`).
 */
export const makeClientProtocolWith = <E>(
  connect: Effect.Effect<Session, E, Scope.Scope>,
  options: ClientProtocolOptions = {}
): Effect.Effect<RpcClient.Protocol["Type"], E | InvalidArgument, Scope.Scope | RpcSerialization.RpcSerialization> =>
  Effect.flatMap(reconnecting(connect, options), (socket) =>
    RpcClient.makeProtocolSocket({
      retryTransientErrors: options.retryTransientErrors,
      retrySchedule: options.retrySchedule
    }).pipe(Effect.provideService(Socket.Socket, socket)))

/** The client `Protocol` as a Layer, over sessions that `connect` makes (e.g. in memory, in tests). */
export const layerClientProtocolWith = <E>(
  connect: Effect.Effect<Session, E, Scope.Scope>,
  options: ClientProtocolOptions = {}
): Layer.Layer<RpcClient.Protocol, E | InvalidArgument, RpcSerialization.RpcSerialization> =>
  Layer.scoped(RpcClient.Protocol, makeClientProtocolWith(connect, options))

/**
 * The client `Protocol` over TCP (`connectScoped`): a wrong option, an unreachable server or a
 * failed handshake (a wrong password: `AuthFailed`) fails the Layer with its typed error.
 */
export const layerClientProtocol = (
  options: ConnectOptions & ClientProtocolOptions
): Layer.Layer<RpcClient.Protocol, ConnectError, RpcSerialization.RpcSerialization> =>
  Layer.scoped(
    RpcClient.Protocol,
    Effect.zipRight(
      // Checked once here, not at every reconnection inside rpc's retries.
      Effect.zipRight(checkConnectOptions(options), checkOptions(options)),
      makeClientProtocolWith(connectScoped(options), options)
    )
  )
