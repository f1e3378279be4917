/**
 * `@effect/rpc`'s server `Protocol` over cvg sessions: `RpcServer.makeProtocolSocketServer` as it
 * is, given a `SocketServer` whose connections are cvg sessions (`SessionSocketServer`), for the
 * reason given in ClientProtocol.ts.
 */
import { type RpcSerialization, RpcServer } from "@effect/rpc"
import * as SocketServer from "@effect/platform/SocketServer"
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import type { InvalidArgument, ListenFailed } from "../errors.js"
import type { ServeAndAnnounceOptions, Server } from "../server/Server.js"
import type { SessionSocketOptions } from "../socket/SessionSocket.js"
import * as SessionSocketServer from "../socket/SessionSocketServer.js"

export type ServerProtocolOptions = SessionSocketOptions

/** The server `Protocol` over the sessions of `server` (from `listen`, or any source of that shape). */
export const makeServerProtocolWith = (
  server: Server,
  options?: ServerProtocolOptions
): Effect.Effect<RpcServer.Protocol["Type"], InvalidArgument, Scope.Scope | RpcSerialization.RpcSerialization> =>
  Effect.flatMap(SessionSocketServer.fromServer(server, options), (socketServer) =>
    Effect.provideService(RpcServer.makeProtocolSocketServer, SocketServer.SocketServer, socketServer))

/** The server `Protocol` as a Layer, over the sessions of `server`. */
export const layerServerProtocolWith = <E>(
  server: Effect.Effect<Server, E, Scope.Scope>,
  options?: ServerProtocolOptions
): Layer.Layer<RpcServer.Protocol, E | InvalidArgument, RpcSerialization.RpcSerialization> =>
  Layer.scoped(RpcServer.Protocol, Effect.flatMap(server, (server) => makeServerProtocolWith(server, options)))

/**
 * The server `Protocol` over TCP: listens with `options` (`onListen` learns the port); options it
 * cannot use or an address it cannot bind fail the Layer.
 */
export const layerServerProtocol = (
  options: ServeAndAnnounceOptions & ServerProtocolOptions
): Layer.Layer<RpcServer.Protocol, ListenFailed | InvalidArgument, RpcSerialization.RpcSerialization> =>
  RpcServer.layerProtocolSocketServer.pipe(Layer.provide(SessionSocketServer.layer(options)))
