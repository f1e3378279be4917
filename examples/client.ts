/**
 * The seed example's client on its own: connects to 127.0.0.1:5000 (or $PORT) with encryption and
 * the password, sends two COMMANDs and prints the RESPONSEs.
 *
 * Run: npx tsx examples/client.ts   (with examples/server.ts running)
 */
import { Console, Effect } from "effect"
import { connect, Packet, PacketType } from "../src/index.js"
import { password } from "./server.js"

const hello = new TextEncoder().encode("hello")

/** What the seed's client does: two COMMAND/RESPONSE exchanges with the same id, then close. */
export const clientExample = (port: number) =>
  Effect.gen(function*() {
    const session = yield* connect({ port, encryption: "required", password })
    yield* Console.log(`[client] connected: ${session.info.suite}, password: ${session.info.passwordAuthenticated}`)

    const commandResultA = yield* session.request(
      new Packet({ id: 3, type: PacketType.COMMAND, payload: hello }),
      { expect: PacketType.RESPONSE }
    )
    const commandResultB = yield* session.request(
      new Packet({ id: 3, type: PacketType.COMMAND, payload: hello }),
      { expect: PacketType.RESPONSE }
    )

    yield* Console.log("[client] command result a:", String(commandResultA))
    yield* Console.log("[client] command result b:", String(commandResultB))
    yield* session.close
    return [commandResultA, commandResultB] as const
  })

if (import.meta.url === `file://${process.argv[1]}`) {
  Effect.runPromise(clientExample(Number(process.env["PORT"] ?? 5000))).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    }
  )
}
