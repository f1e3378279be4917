/**
 * `@effect/rpc` over cvg (`cvg-core/rpc`): an existing `RpcGroup` (a request, a streaming RPC, typed
 * errors, a server and a client middleware) runs unchanged over encrypted, password-authenticated
 * sessions, in memory and over loopback TCP, with one handshake per client connection.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Headers from "@effect/platform/Headers"
import { Rpc, RpcClient, RpcGroup, RpcMiddleware, RpcSerialization, RpcServer } from "@effect/rpc"
import { Chunk, Context, Deferred, Effect, Layer, Schedule, Schema, Stream } from "effect"
import { listen, type PacketType, type Server, type ServeOptions, type SessionInfo } from "cvg-core"
import {
  type ClientProtocolOptions,
  layerClientProtocol,
  layerClientProtocolWith,
  layerServerProtocol,
  layerServerProtocolWith
} from "cvg-core/rpc"
import { main } from "../examples/rpc.js"
import { memoryNetwork } from "./support/memoryNetwork.js"
import { bounded, modes } from "./support/sessions.js"

// --- an ordinary RpcGroup, written without cvg in mind -------------------------------------------

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
class UserNotFound extends Schema.TaggedError<UserNotFound>()("UserNotFound", { id: Schema.Number }) {}
class RangeTooLong extends Schema.TaggedError<RangeTooLong>()("RangeTooLong", { limit: Schema.Number }) {}
class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {}) {}

class CurrentUser extends Context.Tag("CurrentUser")<CurrentUser, string>() {}

/** Server side: the caller's token becomes `CurrentUser`; client side: every request carries a token. */
class Auth extends RpcMiddleware.Tag<Auth>()("Auth", { provides: CurrentUser, failure: Unauthorized, requiredForClient: true }) {}

class Users extends RpcGroup.make(
  Rpc.make("GetUser", { payload: { id: Schema.Number }, success: User, error: UserNotFound }),
  // Emits from..to; fails with RangeTooLong after `limit` items when the range is longer.
  Rpc.make("Range", { payload: { from: Schema.Number, to: Schema.Number }, success: Schema.Number, error: RangeTooLong, stream: true }),
  Rpc.make("Blob", { payload: { size: Schema.Number }, success: Schema.Uint8ArrayFromSelf }),
  Rpc.make("WhoAmI", { success: Schema.String })
).middleware(Auth) {}

/** A marker that must never appear on an encrypted wire. */
const SECRET_NAME = "Ada-Lovelace-7f3e"
const TOKEN = "token-of-ada"
const LIMIT = 1000

const HandlersLive = Users.toLayer({
  GetUser: ({ id }) => (id === 1 ? Effect.succeed(new User({ id, name: SECRET_NAME })) : Effect.fail(new UserNotFound({ id }))),
  Range: ({ from, to }) =>
    Stream.range(from, Math.min(to, from + LIMIT - 1)).pipe(
      Stream.concat(to - from + 1 > LIMIT ? Stream.fail(new RangeTooLong({ limit: LIMIT })) : Stream.empty)
    ),
  Blob: ({ size }) => Effect.succeed(new Uint8Array(size).map((_, i) => i % 251)),
  WhoAmI: () => CurrentUser
})

const AuthLive = Layer.succeed(
  Auth,
  Auth.of(({ headers }) => (headers["authorization"] === TOKEN ? Effect.succeed("ada") : Effect.fail(new Unauthorized())))
)

const AuthClientLive = RpcMiddleware.layerClient(Auth, ({ request }) =>
  Effect.succeed(Headers.has(request.headers, "authorization") ? request : { ...request, headers: Headers.set(request.headers, "authorization", TOKEN) }))

type Serialization = Layer.Layer<RpcSerialization.RpcSerialization>

/** The RPC server over a given server Protocol layer, running while the scope is open. */
const startServer = <E>(
  protocol: Layer.Layer<RpcServer.Protocol, E, RpcSerialization.RpcSerialization>,
  serialization: Serialization = RpcSerialization.layerMsgPack
) =>
  Layer.build(RpcServer.layer(Users).pipe(Layer.provide([HandlersLive, AuthLive]), Layer.provide(Layer.provide(protocol, serialization))))

/**
 * A client of `Users` over a given client Protocol layer. The layer is built in the caller's scope
 * (`Effect.provide(layer)` would release the connection as soon as the client is made).
 */
const makeClient = <E>(
  protocol: Layer.Layer<RpcClient.Protocol, E, RpcSerialization.RpcSerialization>,
  serialization: Serialization = RpcSerialization.layerMsgPack
) =>
  Effect.flatMap(Layer.build(Layer.mergeAll(Layer.provide(protocol, serialization), AuthClientLive)), (context) =>
    Effect.provide(RpcClient.make(Users), context))

type UsersClient = Effect.Effect.Success<ReturnType<typeof makeClient>>

/** Everything the group offers, once; returns what came back. */
const exercise = (client: UsersClient) =>
  Effect.gen(function*() {
    const user = yield* client.GetUser({ id: 1 })
    const notFound = yield* client.GetUser({ id: 404 }).pipe(Effect.catchTag("UserNotFound", (error) => Effect.succeed(error)))
    // The items before the failure arrive; the typed error ends the stream.
    const received: Array<number> = []
    const failed = yield* Stream.runForEach(client.Range({ from: 1, to: 2000 }), (n) => Effect.sync(() => received.push(n))).pipe(
      Effect.flip
    )
    const short = Chunk.toReadonlyArray(yield* Stream.runCollect(client.Range({ from: 5, to: 9 })))
    // Above cvg's chunk size (256 KiB): one rpc message, chunked and reassembled underneath.
    const blob = yield* client.Blob({ size: 600 * 1024 })
    const me = yield* client.WhoAmI()
    const denied = yield* client.WhoAmI().pipe(
      RpcClient.withHeaders({ authorization: "not-a-token" }),
      Effect.catchTag("Unauthorized", (error) => Effect.succeed(error))
    )
    return { user, notFound, received: received.length, failed, short, blob, me, denied }
  })

const expectExercised = (result: Effect.Effect.Success<ReturnType<typeof exercise>>) => {
  expect(result.user).toEqual(new User({ id: 1, name: SECRET_NAME }))
  expect(result.notFound).toBeInstanceOf(UserNotFound)
  expect(result.notFound).toMatchObject({ id: 404 })
  expect(result.received).toBe(LIMIT)
  expect(result.failed).toEqual(new RangeTooLong({ limit: LIMIT }))
  expect(result.short).toEqual([5, 6, 7, 8, 9])
  expect(result.blob.length).toBe(600 * 1024)
  expect(result.blob.every((b, i) => b === i % 251)).toBe(true)
  expect(result.me).toBe("ada")
  expect(result.denied).toBeInstanceOf(Unauthorized)
}

// --- helpers -------------------------------------------------------------------------------------

/** Reconnect attempts come quickly in tests; rpc's default waits 0.5 s and more. */
const quickRetry: ClientProtocolOptions = { retrySchedule: Schedule.spaced("10 millis") }

/** Retries a call while the client is between sessions (rpc fails calls with RpcClientError then). */
const acrossReconnect = <A, E extends { readonly _tag: string }, R>(call: Effect.Effect<A, E, R>) =>
  Effect.retry(call, { while: (error) => error._tag === "RpcClientError", schedule: Schedule.spaced("10 millis") })

/** Records the sessions a cvg server hands out: one per handshake. */
const recording = (server: Server, sessions: Array<SessionInfo>): Server => ({
  address: server.address,
  run: (handler) =>
    server.run((session) =>
      Effect.suspend(() => {
        sessions.push(session.info)
        return handler(session)
      })
    )
})

/** Bytes seen on an in-memory wire, both directions. */
const wireTap = () => {
  const seen: Array<Uint8Array> = []
  const tap = (bytes: Uint8Array) => void seen.push(bytes)
  const contains = (marker: string) => Buffer.concat(seen).includes(Buffer.from(marker))
  return { faults: { clientToServer: { tap }, serverToClient: { tap } }, contains, bytes: () => seen.length }
}

// --- tests ---------------------------------------------------------------------------------------

describe("@effect/rpc over cvg, in memory", () => {
  it.scopedLive("an RpcGroup with a stream, typed errors and middleware runs unchanged; nothing readable on the wire", () =>
    Effect.gen(function*() {
      const wire = wireTap()
      const network = yield* memoryNetwork(modes.encrypted, wire.faults)
      yield* startServer(layerServerProtocolWith(Effect.succeed(network.server)))
      const client = yield* makeClient(
        layerClientProtocolWith(network.connect(modes.encrypted), quickRetry)
      )
      expectExercised(yield* exercise(client))
      // Every call, stream and ack went over the one session the client opened.
      expect(network.accepted()).toBe(1)
      expect(network.sessions()[0]?.info).toMatchObject({ encrypted: true, passwordAuthenticated: true })
      expect(wire.bytes()).toBeGreaterThan(0)
      expect(wire.contains(SECRET_NAME)).toBe(false)
      expect(wire.contains(TOKEN)).toBe(false)
    }).pipe(bounded("rpc in memory", "60 seconds")))

  it.scopedLive("in plaintext mode the same tap does see the data (so the check above can fail); JSON serialization works too", () =>
    Effect.gen(function*() {
      const wire = wireTap()
      const network = yield* memoryNetwork(modes.plaintext, wire.faults)
      yield* startServer(layerServerProtocolWith(Effect.succeed(network.server)), RpcSerialization.layerJson)
      const client = yield* makeClient(
        layerClientProtocolWith(network.connect(modes.plaintext), quickRetry),
        RpcSerialization.layerJson
      )
      expect((yield* client.GetUser({ id: 1 })).name).toBe(SECRET_NAME)
      expect(wire.contains(SECRET_NAME)).toBe(true)
    }).pipe(bounded("rpc in plaintext")))

  it.scopedLive("once its session has ended the client connects again, and calls go on", () =>
    Effect.gen(function*() {
      const network = yield* memoryNetwork(modes.encrypted)
      yield* startServer(layerServerProtocolWith(Effect.succeed(network.server)))
      const client = yield* makeClient(
        layerClientProtocolWith(network.connect(modes.encrypted), quickRetry)
      )
      expect(yield* client.WhoAmI()).toBe("ada")
      expect(network.accepted()).toBe(1)
      // The server ends the session (an orderly close).
      yield* network.sessions()[0]!.close
      expect(yield* acrossReconnect(client.WhoAmI())).toBe("ada")
      expect(network.accepted()).toBe(2)
    }).pipe(bounded("reconnect")))
})

describe("@effect/rpc over cvg, over loopback TCP", () => {
  it.scopedLive("an RpcGroup with a stream, typed errors and middleware, encrypted with a password, one handshake per client", () =>
    Effect.gen(function*() {
      const handshakes: Array<SessionInfo> = []
      const listening = yield* Deferred.make<number>()
      const serverOptions: ServeOptions = { port: 0, ...modes.encrypted }
      yield* startServer(
        layerServerProtocolWith(
          Effect.map(Effect.tap(listen(serverOptions), (server) => Deferred.succeed(listening, server.address.port)), (server) =>
            recording(server, handshakes))
        )
      )
      const port = yield* Deferred.await(listening)
      const client = yield* makeClient(
        layerClientProtocol({ port, ...modes.encrypted, ...quickRetry })
      )
      expectExercised(yield* exercise(client))
      // Calls made concurrently share the connection too.
      const many = yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => i), () => client.WhoAmI(), { concurrency: "unbounded" })
      expect(many.every((me) => me === "ada")).toBe(true)
      expect(handshakes.length).toBe(1)
      expect(handshakes[0]).toMatchObject({ encrypted: true, passwordAuthenticated: true })
    }).pipe(bounded("rpc over TCP", "60 seconds")))

  it.scopedLive("layerServerProtocol listens; a wrong password fails the client Layer with AuthFailed, the right one connects", () =>
    Effect.gen(function*() {
      const listening = yield* Deferred.make<number>()
      yield* startServer(layerServerProtocol({ port: 0, ...modes.encrypted, onListen: (address) => Deferred.succeed(listening, address.port) }))
      const port = yield* Deferred.await(listening)
      const wrong = yield* Effect.flip(makeClient(layerClientProtocol({ port, encryption: "required", password: "wrong" })))
      expect(wrong).toMatchObject({ _tag: "AuthFailed", reason: "WrongPassword" })
      const client = yield* makeClient(
        layerClientProtocol({ port, ...modes.encrypted })
      )
      expect(yield* client.WhoAmI()).toBe("ada")
    }).pipe(bounded("wrong password")))

  it.live("examples/rpc.ts runs: typed error caught, stream received", () =>
    Effect.gen(function*() {
      const result = yield* main.pipe(bounded("examples/rpc.ts"))
      expect(result).toMatchObject({ todo: { id: 1 }, missing: "TodoNotFound { id: 42 }", streamed: 2 })
    }))

  it.effect("bad options fail the Layers with InvalidArgument before anything is opened", () =>
    Effect.gen(function*() {
      const client = yield* Effect.flip(
        Layer.build(Layer.provide(layerClientProtocol({ port: 70000 }), RpcSerialization.layerMsgPack)).pipe(Effect.scoped)
      )
      expect(client).toMatchObject({ _tag: "InvalidArgument", field: "port" })
      const server = yield* Effect.flip(
        Layer.build(Layer.provide(layerServerProtocol({ port: 0, packetType: 300 as PacketType }), RpcSerialization.layerMsgPack)).pipe(
          Effect.scoped
        )
      )
      expect(server).toMatchObject({ _tag: "InvalidArgument", field: "packetType" })
    }))
})
