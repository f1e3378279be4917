/**
 * `@effect/rpc` over cvg: an ordinary `RpcGroup` (a request with a typed error, a streaming RPC, an
 * auth middleware on both sides) served and called over loopback TCP, encrypted and with a password.
 * Nothing in the group or its handlers knows about cvg; only the Protocol layers do.
 *
 * Run: npx tsx examples/rpc.ts
 */
import * as Headers from "@effect/platform/Headers"
import { Rpc, RpcClient, RpcGroup, RpcMiddleware, RpcSerialization, RpcServer } from "@effect/rpc"
import { Console, Context, Deferred, Effect, Layer, Schema, Stream } from "effect"
import { layerClientProtocol, layerServerProtocol } from "../src/rpc.js"

// --- the API, shared by server and client ------------------------------------------------------

class Todo extends Schema.Class<Todo>("Todo")({ id: Schema.Number, title: Schema.String }) {}
class TodoNotFound extends Schema.TaggedError<TodoNotFound>()("TodoNotFound", { id: Schema.Number }) {}
class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {}) {}

class CurrentUser extends Context.Tag("CurrentUser")<CurrentUser, string>() {}

class Auth extends RpcMiddleware.Tag<Auth>()("Auth", { provides: CurrentUser, failure: Unauthorized, requiredForClient: true }) {}

class TodoRpcs extends RpcGroup.make(
  Rpc.make("GetTodo", { payload: { id: Schema.Number }, success: Todo, error: TodoNotFound }),
  Rpc.make("ListTodos", { success: Todo, stream: true })
).middleware(Auth) {}

// --- the server ----------------------------------------------------------------------------------

const todos = [new Todo({ id: 1, title: "read PROTOCOL.md" }), new Todo({ id: 2, title: "try cvg-core/rpc" })]

const HandlersLive = TodoRpcs.toLayer({
  GetTodo: ({ id }) => Effect.fromNullable(todos.find((todo) => todo.id === id)).pipe(Effect.orElseFail(() => new TodoNotFound({ id }))),
  ListTodos: () => Stream.fromIterable(todos).pipe(Stream.tap(() => Effect.flatMap(CurrentUser, (user) => Console.log(`[server] listing for ${user}`))))
})

const AuthLive = Layer.succeed(
  Auth,
  Auth.of(({ headers }) => (headers["authorization"] === "Bearer ada" ? Effect.succeed("ada") : Effect.fail(new Unauthorized())))
)

const password = "correct horse battery staple"

const serverLayer = (onListen: (port: number) => Effect.Effect<void>) =>
  RpcServer.layer(TodoRpcs).pipe(
    Layer.provide([HandlersLive, AuthLive]),
    Layer.provide(layerServerProtocol({ port: 0, encryption: "required", password, onListen: (address) => onListen(address.port) })),
    Layer.provide(RpcSerialization.layerMsgPack)
  )

// --- the client ----------------------------------------------------------------------------------

const AuthClientLive = RpcMiddleware.layerClient(Auth, ({ request }) =>
  Effect.succeed({ ...request, headers: Headers.set(request.headers, "authorization", "Bearer ada") }))

const clientLayer = (port: number) =>
  Layer.mergeAll(
    layerClientProtocol({ port, encryption: "required", password }).pipe(Layer.provide(RpcSerialization.layerMsgPack)),
    AuthClientLive
  )

const useClient = Effect.gen(function*() {
  const client = yield* RpcClient.make(TodoRpcs)
  const todo = yield* client.GetTodo({ id: 1 })
  yield* Console.log(`[client] todo 1: ${todo.title}`)
  const missing = yield* client.GetTodo({ id: 42 }).pipe(
    Effect.as("found"),
    Effect.catchTag("TodoNotFound", (error) => Effect.succeed(`TodoNotFound { id: ${error.id} }`))
  )
  yield* Console.log(`[client] todo 42: ${missing}`)
  const all = yield* Stream.runCollect(client.ListTodos())
  yield* Console.log(`[client] streamed ${all.length} todos`)
  return { todo, missing, streamed: all.length }
})

export const main = Effect.scoped(Effect.gen(function*() {
  const listening = yield* Deferred.make<number>()
  yield* Layer.build(serverLayer((port) => Deferred.succeed(listening, port)))
  const port = yield* Deferred.await(listening)
  // Built in this scope, so that the one connection (one handshake) lives as long as the client.
  const client = yield* Layer.build(clientLayer(port))
  return yield* Effect.provide(useClient, client)
}))

if (import.meta.url === `file://${process.argv[1]}`) {
  Effect.runPromise(main).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    }
  )
}
