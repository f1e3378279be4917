/**
 * Typed messages (PROTOCOL.md §12) through the public API: one-way messages, requests and streams
 * declared as Schema classes, declared failures, remote errors, timeouts and decoding failures, in
 * memory and over TCP. The type-level checks at the end are compiled by `tsc --noEmit`.
 */
import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Queue, Schema, Stream } from "effect"
import { Api, connectScoped, DecodeFailed, RemoteError, type Session } from "cvg-core"
import { main as typedExample } from "../examples/typed.js"
import { bounded, memorySessions, modes, startServer } from "./support/sessions.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String, avatar: Schema.Uint8ArrayFromSelf }) {}
class UserNotFound extends Schema.TaggedError<UserNotFound>()("UserNotFound", { id: Schema.Number }) {}
class GetUser extends Schema.TaggedRequest<GetUser>()("GetUser", {
  failure: UserNotFound,
  success: User,
  payload: { id: Schema.Number }
}) {}
class Crash extends Schema.TaggedRequest<Crash>()("Crash", { failure: Schema.Never, success: Schema.Void, payload: {} }) {}
class Slow extends Schema.TaggedRequest<Slow>()("Slow", { failure: Schema.Never, success: Schema.Void, payload: {} }) {}
class TooMany extends Schema.TaggedError<TooMany>()("TooMany", { limit: Schema.Number }) {}
class Count extends Schema.TaggedRequest<Count>()("Count", {
  failure: TooMany,
  success: Schema.Number,
  payload: { upTo: Schema.Number }
}) {}
class Log extends Schema.TaggedClass<Log>()("Log", { line: Schema.String, at: Schema.Date }) {}

const Users = Api.make({ messages: [Log], requests: [GetUser, Crash, Slow], streams: [Count] })

const alice = new User({ id: 7, name: "Alice", avatar: Uint8Array.of(1, 2, 3) })

/** The server side of `Users`, with the log lines it was told. */
const serveUsers = (session: Session, logged: Queue.Queue<string>) =>
  Users.serve(session, {
    Log: (log) => Queue.offer(logged, `${log.line} ${log.at.toISOString()}`),
    GetUser: ({ id }) => (id === 7 ? Effect.succeed(alice) : Effect.fail(new UserNotFound({ id }))),
    Crash: () => Effect.die(new Error("a secret in a defect")),
    Slow: () => Effect.never,
    Count: ({ upTo }) => (upTo > 1000 ? Stream.fail(new TooMany({ limit: 1000 })) : Stream.range(1, upTo).pipe(Stream.concat(upTo === 13 ? Stream.fail(new TooMany({ limit: 12 })) : Stream.empty)))
  })

/** Everything a client of `Users` should see, on any transport. */
const exercise = (session: Session, logged: Queue.Queue<string>) =>
  Effect.gen(function*() {
    const users = Users.client(session)
    const user = yield* users.call(new GetUser({ id: 7 }))
    expect(user).toBeInstanceOf(User)
    expect([user.id, user.name, Array.from(user.avatar)]).toEqual([7, "Alice", [1, 2, 3]])

    // A declared failure arrives as the typed error itself, catchable by tag.
    const missing = yield* users.call(new GetUser({ id: 8 })).pipe(
      Effect.catchTag("UserNotFound", (error) => Effect.succeed(`no user ${error.id}`))
    )
    expect(missing).toBe("no user 8")

    // A defect reaches the caller as a RemoteError without its secret; the session goes on.
    const crash = yield* Effect.flip(users.call(new Crash()))
    expect(crash).toBeInstanceOf(RemoteError)
    expect(crash).toMatchObject({ reason: "Defect" })
    expect(JSON.stringify(crash)).not.toContain("secret")

    yield* users.send(new Log({ line: "hello", at: new Date("2026-11-27T10:00:00Z") }))
    expect(yield* Queue.take(logged)).toBe("hello 2026-11-27T10:00:00.000Z")

    const counted = yield* Stream.runCollect(users.stream(new Count({ upTo: 2000 - 1000 })))
    expect(Chunk.size(counted)).toBe(1000)
    expect(Chunk.unsafeLast(counted)).toBe(1000)
    // A stream's declared failure ends it after the items before it.
    const partial = yield* users.stream(new Count({ upTo: 13 })).pipe(
      Stream.runCollect,
      Effect.flip
    )
    expect(partial).toMatchObject({ _tag: "TooMany", limit: 12 })
    const refused = yield* Effect.flip(Stream.runDrain(users.stream(new Count({ upTo: 5000 }))))
    expect(refused).toBeInstanceOf(TooMany)
    // Taking a few items of a long stream cancels the rest.
    const firstThree = yield* Stream.runCollect(Stream.take(users.stream(new Count({ upTo: 1000 })), 3))
    expect(Chunk.toReadonlyArray(firstThree)).toEqual([1, 2, 3])

    expect((yield* users.call(new GetUser({ id: 7 }))).name).toBe("Alice")
  })

describe("typed messages (PROTOCOL.md §12)", () => {
  for (const mode of ["encrypted", "plaintext"] as const) {
    it.scopedLive(`${mode}, in memory: calls, declared failures, defects, messages and streams`, () =>
      Effect.gen(function*() {
        const { client, server } = yield* memorySessions({ client: modes[mode], server: modes[mode] })
        const logged = yield* Queue.unbounded<string>()
        yield* Effect.forkScoped(serveUsers(server, logged))
        yield* exercise(client, logged)
      }).pipe(bounded(`typed ${mode}`)))
  }

  it.scopedLive("encrypted with a password, over TCP through connect and serve", () =>
    Effect.gen(function*() {
      const logged = yield* Queue.unbounded<string>()
      const { port } = yield* startServer({ ...modes.encrypted }, (session) => serveUsers(session, logged))
      yield* exercise(yield* connectScoped({ port, ...modes.encrypted }), logged)
    }).pipe(bounded("typed tcp")))

  it.scopedLive("a call with a timeout fails with RequestTimeout; the session goes on", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      yield* Effect.forkScoped(serveUsers(server, yield* Queue.unbounded<string>()))
      const users = Users.client(client)
      expect(yield* Effect.flip(users.call(new Slow(), { timeout: "50 millis" }))).toMatchObject({ _tag: "RequestTimeout" })
      expect((yield* users.call(new GetUser({ id: 7 }))).name).toBe("Alice")
    }).pipe(bounded("typed timeout")))
})

describe("examples/typed.ts", () => {
  it.live("the seed's example with typed messages runs end to end over TCP", () =>
    Effect.gen(function*() {
      const result = yield* typedExample.pipe(bounded("examples/typed.ts"))
      expect(result).toEqual({ greeting: "hello world", refused: "mallory is not welcome", ticks: [1, 2, 3] })
    }))
})

describe("typed decoding failures", () => {
  // The same tags with other shapes: what a peer with an older or foreign declaration sends.
  class OtherUser extends Schema.Class<OtherUser>("User")({ id: Schema.String }) {}
  class OtherGetUser extends Schema.TaggedRequest<OtherGetUser>()("GetUser", {
    failure: UserNotFound,
    success: OtherUser,
    payload: { id: Schema.String }
  }) {}
  class OtherLog extends Schema.TaggedClass<OtherLog>()("Log", { line: Schema.Number }) {}
  const Other = Api.make({ messages: [OtherLog], requests: [OtherGetUser] })

  it.scopedLive("a reply that does not decode is DecodeFailed at the caller, naming the Schema and the path", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      yield* Effect.forkScoped(Other.serve(server, {
        Log: () => Effect.void,
        GetUser: ({ id }) => Effect.succeed(new OtherUser({ id }))
      }))
      // The request decodes on the server (`id` is a string there too), the reply does not here.
      class ClientGetUser extends Schema.TaggedRequest<ClientGetUser>()("GetUser", {
        failure: UserNotFound,
        success: User,
        payload: { id: Schema.String }
      }) {}
      const Mixed = Api.make({ requests: [ClientGetUser] })
      const error = yield* Effect.flip(Mixed.client(client).call(new ClientGetUser({ id: "7" })))
      expect(error).toBeInstanceOf(DecodeFailed)
      expect(error).toMatchObject({ _tag: "DecodeFailed", reason: "Reply", tag: "GetUser" })
      // Which Schema, and where in the value: the reply's `id` is a string where User has a number.
      expect(error instanceof DecodeFailed ? error.detail : "").toContain("User")
      expect(error instanceof DecodeFailed ? error.detail : "").toContain("[\"id\"]")
      const asUsers = yield* Effect.flip(Users.client(client).call(new GetUser({ id: 7 })))
      expect(asUsers).toBeInstanceOf(RemoteError)
      // The server could not decode our request: it says which Schema and where.
      expect(asUsers).toMatchObject({ reason: "Undecodable" })
      expect(asUsers instanceof RemoteError ? asUsers.detail : "").toContain("GetUser")
      expect(asUsers instanceof RemoteError ? asUsers.detail : "").toContain("[\"id\"]")
    }).pipe(bounded("reply decode")))

  it.scopedLive("a stream item that does not decode is DecodeFailed(Item) at the caller, after the items before it", () =>
    Effect.gen(function*() {
      // The server's Count streams strings where the caller's declares numbers.
      class OtherCount extends Schema.TaggedRequest<OtherCount>()("Count", {
        failure: TooMany,
        success: Schema.String,
        payload: { upTo: Schema.Number }
      }) {}
      const Strings = Api.make({ streams: [OtherCount] })
      const { client, server } = yield* memorySessions({ client: modes.encrypted, server: modes.encrypted })
      yield* Effect.forkScoped(Strings.serve(server, { Count: () => Stream.make("not a number") }))
      const error = yield* Effect.flip(Stream.runDrain(Users.client(client).stream(new Count({ upTo: 3 }))))
      expect(error).toBeInstanceOf(DecodeFailed)
      expect(error).toMatchObject({ _tag: "DecodeFailed", reason: "Item", tag: "Count" })
    }).pipe(bounded("item decode")))

  it.scopedLive("a one-way message that does not decode ends serve with DecodeFailed", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ client: modes.plaintext, server: modes.plaintext })
      const serving = yield* Effect.fork(Users.serve(server, {
        Log: () => Effect.void,
        GetUser: () => Effect.succeed(alice),
        Crash: () => Effect.void,
        Slow: () => Effect.void,
        Count: () => Stream.empty
      }))
      yield* Other.client(client).send(new OtherLog({ line: 42 }))
      const error = yield* Effect.flip(Fiber.join(serving))
      expect(error).toBeInstanceOf(DecodeFailed)
      expect(error).toMatchObject({ reason: "Message", tag: "Log" })
    }).pipe(bounded("message decode")))
})

describe("typed API: compile-time checks", () => {
  it("call's type follows the request's declaration", () => {
    const users = Users.client(undefined as unknown as Session)
    expectTypeOf(users.call(new GetUser({ id: 1 }))).toEqualTypeOf<Effect.Effect<User, UserNotFound | Api.CallError>>()
    expectTypeOf(users.stream(new Count({ upTo: 1 }))).toEqualTypeOf<Stream.Stream<number, TooMany | Api.CallError>>()
  })

  it("a missing handler, a wrong success type, an undeclared error and a stream sent to call are type errors", () => {
    const session = undefined as unknown as Session
    const base = {
      Log: () => Effect.void,
      GetUser: () => Effect.succeed(alice),
      Crash: () => Effect.void,
      Slow: () => Effect.void,
      Count: () => Stream.empty
    }
    const check = () => {
      // @ts-expect-error the handler of Count is missing
      Users.serve(session, { Log: base.Log, GetUser: base.GetUser, Crash: base.Crash, Slow: base.Slow })
      // @ts-expect-error GetUser must succeed with a User, not a string
      Users.serve(session, { ...base, GetUser: () => Effect.succeed("Alice") })
      // @ts-expect-error GetUser declares UserNotFound only
      Users.serve(session, { ...base, GetUser: () => Effect.fail(new TooMany({ limit: 1 })) })
      // @ts-expect-error Count is a stream: it has no `call`
      Users.client(session).call(new Count({ upTo: 1 }))
    }
    expect(typeof check).toBe("function")
  })
})
