/**
 * The seed's example with typed messages: a server and a client in one process over loopback TCP,
 * encryption on, a password. Both import one declaration (`Greeter`); the client calls `Hello` twice,
 * once answered with a `Greeting`, once with the declared failure `NotWelcome`, caught by its tag;
 * a one-way `Note` and a stream of `Tick`s go the same way.
 *
 * Run: npx tsx examples/typed.ts
 */
import { Console, Deferred, Effect, Fiber, Schema, Stream } from "effect"
import { Api, connect, serve } from "../src/index.js"

export class Greeting extends Schema.Class<Greeting>("Greeting")({ text: Schema.String }) {}
export class NotWelcome extends Schema.TaggedError<NotWelcome>()("NotWelcome", { name: Schema.String }) {}
export class Hello extends Schema.TaggedRequest<Hello>()("Hello", {
  payload: { name: Schema.String },
  success: Greeting,
  failure: NotWelcome
}) {}
export class Note extends Schema.TaggedClass<Note>()("Note", { text: Schema.String }) {}
export class Ticks extends Schema.TaggedRequest<Ticks>()("Ticks", {
  payload: { count: Schema.Int },
  success: Schema.Int,
  failure: Schema.Never
}) {}

export const Greeter = Api.make({ messages: [Note], requests: [Hello], streams: [Ticks] })

const password = process.env["CVG_PASSWORD"] ?? "correct horse battery staple"

const handlers = {
  Hello: ({ name }: Hello) =>
    name === "mallory" ? Effect.fail(new NotWelcome({ name })) : Effect.succeed(new Greeting({ text: `hello ${name}` })),
  Note: ({ text }: Note) => Console.log(`[server] note: ${text}`),
  Ticks: ({ count }: Ticks) => Stream.range(1, count)
}

export const main = Effect.gen(function*() {
  const listening = yield* Deferred.make<number>()
  const server = yield* Effect.fork(
    serve(
      { port: 0, encryption: "required", password, onListen: (address) => Deferred.succeed(listening, address.port) },
      (session) => Greeter.serve(session, handlers)
    )
  )
  const session = yield* connect({ port: yield* Deferred.await(listening), encryption: "required", password })
  const greeter = Greeter.client(session)

  const greeting = yield* greeter.call(new Hello({ name: "world" }))
  yield* Console.log(`[client] ${greeting.text}`)
  const refused = yield* greeter.call(new Hello({ name: "mallory" })).pipe(
    Effect.as("welcome"),
    Effect.catchTag("NotWelcome", (error) => Effect.succeed(`${error.name} is not welcome`))
  )
  yield* Console.log(`[client] ${refused}`)
  yield* greeter.send(new Note({ text: "thanks" }))
  const ticks = yield* Stream.runCollect(greeter.stream(new Ticks({ count: 3 })))
  yield* Console.log(`[client] ticks: ${[...ticks].join(" ")}`)

  yield* session.close
  yield* Fiber.interrupt(server)
  return { greeting: greeting.text, refused, ticks: [...ticks] }
})

if (import.meta.url === `file://${process.argv[1]}`) {
  Effect.runPromise(main).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    }
  )
}
