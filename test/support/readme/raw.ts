// A README.md snippet, verbatim: test/readme.test.ts checks that it stays so. `tsc --noEmit` type-checks
// it against src/ ("cvg-core" resolves there through tsconfig.json's `paths`), and scripts/smoke.mjs
// against the packed and installed package. Never run.

import { Effect } from "effect"
import { connect, Packet, PacketType } from "cvg-core"

const program = Effect.gen(function*() {
  const session = yield* connect({ host: "127.0.0.1", port: 5000, password: "secret" })
  const answer = yield* session.request(
    new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload: new TextEncoder().encode("hello") }),
    { expect: PacketType.RESPONSE, timeout: "5 seconds" }
  )
  console.log(new TextDecoder().decode(answer.payload))
  yield* session.close
})

Effect.runPromise(program)
