/**
 * Prints the message of each error a user meets first, as a user of the package sees it:
 * `npx tsx scratchpad/error-messages.mts`.
 */
import { Deferred, Effect, Either, Fiber } from "effect"
import * as net from "node:net"
import { connect, type ConnectOptions, serve, type ServeOptions } from "../src/index.js"

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const show = (label: string, result: Either.Either<unknown, { readonly _tag: string; readonly message: string }>) =>
  console.log(`${label}: ${Either.isLeft(result) ? `${result.left._tag}: ${result.left.message}` : "no error"}`)

/** A client against a server with these options, on a fresh port. */
const against = (server: Omit<ServeOptions, "port">, client: Omit<ConnectOptions, "port">) =>
  Effect.scoped(
    Effect.gen(function*() {
      const listening = yield* Deferred.make<number>()
      const fiber = yield* Effect.forkScoped(
        serve({ ...server, port: 0, onListen: (address) => Deferred.succeed(listening, address.port) }, () => Effect.never)
      )
      const port = yield* Deferred.await(listening)
      const result = yield* Effect.either(connect({ ...client, port }))
      yield* Fiber.interrupt(fiber)
      return result
    })
  )

show("nothing listening", await Effect.runPromise(Effect.either(connect({ port: await freePort(), password: "pw" }))))
const taken = net.createServer().listen(0, "127.0.0.1")
await new Promise((resolve) => taken.once("listening", resolve))
const takenPort = (taken.address() as net.AddressInfo).port
show("port in use", await Effect.runPromise(Effect.either(serve({ port: takenPort }, () => Effect.void))))
taken.close()
show("wrong password", await Effect.runPromise(against({ password: "right" }, { password: "wrong" })))
show("encryption mismatch", await Effect.runPromise(against({ encryption: "disabled" }, { encryption: "required" })))
