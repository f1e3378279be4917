/**
 * The seed README's example, ported as it is: a server and a client in one process over loopback
 * TCP, encryption on, a password, and two COMMAND/RESPONSE exchanges — one answered by a handler
 * (the seed's `receive_into_and_send`), one by a premade response (`receive_and_send`).
 *
 * Run: npm start
 */
import { Console, Deferred, Effect, Fiber } from "effect"
import { connect, Packet, PacketType, serve } from "../src/index.js"

const password = "correct horse battery staple" // or undefined, or bytes
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const startsWith = (payload: Uint8Array, prefix: string) => decoder.decode(payload).startsWith(prefix)

// [Server Implementation]
const serverExample = (listening: Deferred.Deferred<number>, done: Deferred.Deferred<void>) =>
  serve(
    { port: 0, encryption: "required", password, onListen: (address) => Deferred.succeed(listening, address.port) },
    (session) =>
      Effect.gen(function*() {
        // Function wrapping on receive.
        yield* session.respond({ type: PacketType.COMMAND }, (packet) =>
          Effect.gen(function*() {
            yield* Console.log("[server] client command received", String(packet))
            return startsWith(packet.payload, "hello")
              ? new Packet({ id: packet.id, type: PacketType.RESPONSE, payload: encoder.encode("world_a") })
              : undefined
          }))

        // Or send a premade packet upon receive.
        const commandPacket = yield* session.receiveAndSend(
          new Packet({ id: 0, type: PacketType.RESPONSE, payload: encoder.encode("world_b") }),
          { type: PacketType.COMMAND }
        )
        yield* Console.log("[server] client command received", String(commandPacket))
        yield* Deferred.succeed(done, undefined)
      })
  )

// [Client Implementation]
const clientExample = (port: number) =>
  Effect.gen(function*() {
    const session = yield* connect({ port, encryption: "required", password })
    yield* Console.log(`[client] connected: ${session.info.suite}, authenticated: ${session.info.authenticated}`)

    const commandResultA = yield* session.request(
      new Packet({ id: 3, type: PacketType.COMMAND, payload: encoder.encode("hello") }),
      { expect: PacketType.RESPONSE }
    )
    const commandResultB = yield* session.request(
      new Packet({ id: 3, type: PacketType.COMMAND, payload: encoder.encode("hello") }),
      { expect: PacketType.RESPONSE }
    )

    yield* Console.log("[client] command result a:", String(commandResultA))
    yield* Console.log("[client] command result b:", String(commandResultB))
    yield* session.close
    return [commandResultA, commandResultB] as const
  })

export const main = Effect.gen(function*() {
  const listening = yield* Deferred.make<number>()
  const done = yield* Deferred.make<void>()
  const server = yield* Effect.fork(serverExample(listening, done))
  const port = yield* Deferred.await(listening)
  const results = yield* clientExample(port)
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
