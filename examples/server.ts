/**
 * The seed example's server on its own: listens on 127.0.0.1:5000 (or $PORT), requires encryption
 * and a password, answers the first COMMAND with a handler and the second with a premade response.
 *
 * Run: npx tsx examples/server.ts   (then, in another terminal, npx tsx examples/client.ts)
 */
import { Console, Effect } from "effect"
import { Packet, PacketType, serve, type Session } from "../src/index.js"

export const password = process.env["CVG_PASSWORD"] ?? "correct horse battery staple"
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** What the seed's server does with one connection. */
export const handleSession = (session: Session) =>
  Effect.gen(function*() {
    // Function wrapping on receive (the seed's receive_into_and_send).
    yield* session.respond({ type: PacketType.COMMAND }, (packet) =>
      Effect.gen(function*() {
        yield* Console.log("[server] client command received", String(packet))
        return decoder.decode(packet.payload).startsWith("hello")
          ? new Packet({ id: packet.id, type: PacketType.RESPONSE, payload: encoder.encode("world_a") })
          : undefined
      }))

    // Or send a premade packet upon receive (the seed's receive_and_send).
    const commandPacket = yield* session.receiveAndSend(
      new Packet({ id: 0, type: PacketType.RESPONSE, payload: encoder.encode("world_b") }),
      { type: PacketType.COMMAND }
    )
    yield* Console.log("[server] client command received", String(commandPacket))
  })

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env["PORT"] ?? 5000)
  Effect.runFork(
    serve(
      {
        port,
        encryption: "required",
        password,
        onListen: (address) => Console.log(`[server] listening on ${address.hostname}:${address.port}`)
      },
      handleSession
    )
  )
}
