/**
 * A cvg server as an `@effect/platform` `SocketServer`: each connection is handshaken as usual
 * (PROTOCOL.md §3-§5) and its session handed to the `SocketServer` handler as a `Socket`
 * (`SessionSocket.fromSession`). Code written for a `SocketServer`, such as `@effect/rpc`'s
 * `RpcServer.layerProtocolSocketServer`, then serves over authenticated, encrypted sessions.
 *
 * Everything else is the cvg server's: connection limits, budgets, timeouts, the log line for a
 * connection whose handler fails, and CLOSE to every session when the server stops.
 */
import * as SocketServer from "@effect/platform/SocketServer"
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import type { InvalidArgument, ListenFailed } from "../errors.js"
import { listen, type ServeAndAnnounceOptions, type Server } from "../server/Server.js"
import { checkOptions, type SessionSocketOptions, type Settings, socketOf } from "./SessionSocket.js"

/** A `SocketServer` over a cvg `Server` (from `listen`, or any other source of sessions with that shape). */
export const fromServer = (
  server: Server,
  options?: SessionSocketOptions
): Effect.Effect<SocketServer.SocketServer["Type"], InvalidArgument> =>
  Effect.map(checkOptions(options), (settings) => serving(server, settings))

const serving = (server: Server, settings: Settings): SocketServer.SocketServer["Type"] =>
  SocketServer.SocketServer.of({
    address: server.address,
    run: (handler) => server.run((session) => handler(socketOf(session, settings)))
  })

/** Listens (see `listen`); the `SocketServer` serves while its scope is open. */
export const make = (
  options: ServeAndAnnounceOptions & SessionSocketOptions
): Effect.Effect<SocketServer.SocketServer["Type"], ListenFailed | InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    // Checked before the port is bound.
    const settings = yield* checkOptions(options)
    const server = yield* listen(options)
    if (options.onListen !== undefined) yield* options.onListen(server.address)
    return serving(server, settings)
  })

/** The `SocketServer` as a Layer; a failure to listen fails the Layer. */
export const layer = (
  options: ServeAndAnnounceOptions & SessionSocketOptions
): Layer.Layer<SocketServer.SocketServer, ListenFailed | InvalidArgument> => Layer.scoped(SocketServer.SocketServer, make(options))
