// A README.md snippet, verbatim: test/readme.test.ts checks that it stays so. `tsc --noEmit` type-checks
// it against src/ ("cvg-core" resolves there through tsconfig.json's `paths`), and scripts/smoke.mjs
// against the packed and installed package. Never run.

import * as Socket from "@effect/platform/Socket"
import { Effect, Fiber } from "effect"
import { ClientSession, DeterministicCrypto, Packet, PacketType, ServerSession } from "cvg-core"
import { MemorySocket } from "cvg-core/testing"

const roundTrip = Effect.scoped(
  Effect.gen(function*() {
    const [clientSocket, serverSocket] = yield* MemorySocket.makePair({ clientToServer: { split: true } })
    const server = yield* Effect.fork(
      ServerSession.session({ password: "pw" }).pipe(
        Effect.provideService(Socket.Socket, serverSocket),
        Effect.provide(DeterministicCrypto.layer("server"))
      )
    )
    const client = yield* ClientSession.session({ password: "pw" }).pipe(
      Effect.provideService(Socket.Socket, clientSocket),
      Effect.provide(DeterministicCrypto.layer("client"))
    )
    const serverSession = yield* Fiber.join(server)
    yield* Effect.fork(serverSession.serve((packet) => Effect.succeed(packet)))
    return yield* client.request(new Packet({ id: 1, type: PacketType.COMMAND, payload: new Uint8Array(3) }))
  })
)

// Not part of the snippet: exported so that `noUnusedLocals` accepts it.
export { roundTrip }
