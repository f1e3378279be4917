/**
 * The seed README's example, ported as it is: a server and a client in one process over loopback
 * TCP, encryption on, a password, and two COMMAND/RESPONSE exchanges — one answered by a handler
 * (the seed's `receive_into_and_send`), one by a premade response (`receive_and_send`).
 * The two halves are `examples/server.ts` and `examples/client.ts`, which also run on their own.
 *
 * Run: npm start
 */
import { Deferred, Effect, Fiber } from "effect"
import { serve } from "../src/index.js"
import { clientExample } from "./client.js"
import { handleSession, password } from "./server.js"

export const main = Effect.gen(function*() {
  const listening = yield* Deferred.make<number>()
  const done = yield* Deferred.make<void>()
  // Port 0: the seed used 5000, but a fixed port makes `npm start` fail wherever 5000 is taken.
  const server = yield* Effect.fork(
    serve(
      { port: 0, encryption: "required", password, onListen: (address) => Deferred.succeed(listening, address.port) },
      (session) => Effect.zipRight(handleSession(session), Deferred.succeed(done, undefined))
    )
  )
  const results = yield* clientExample(yield* Deferred.await(listening))
  yield* Deferred.await(done)
  yield* Fiber.interrupt(server)
  return results
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
