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

/** A plain TCP server that answers whatever it is sent with `reply(bytes)`. */
const rawServer = (reply: (bytes: Buffer) => Buffer) =>
  new Promise<net.Server>((resolve) => {
    const server = net.createServer((socket) => socket.on("data", (bytes) => socket.write(reply(bytes))).on("error", () => {}))
    server.listen(0, "127.0.0.1", () => resolve(server))
  })
for (const [label, reply] of [
  ["an HTTP server", () => Buffer.from("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")],
  ["an echo server", (bytes: Buffer) => bytes]
] as const) {
  const server = await rawServer(reply)
  const port = (server.address() as net.AddressInfo).port
  show(`non-cvg peer (${label})`, await Effect.runPromise(Effect.either(connect({ port, password: "pw" }))))
  server.close()
}
