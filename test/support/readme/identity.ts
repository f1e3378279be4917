// A README.md snippet, verbatim: test/readme.test.ts checks that it stays so. `tsc --noEmit` type-checks
// it against src/ ("cvg-core" resolves there through tsconfig.json's `paths`), and scripts/smoke.mjs
// against the packed and installed package. Never run.

import { Console, Effect, Option } from "effect"
import { connect, loadIdentityKey, serve } from "cvg-core"

// Server: the key file comes from `cvg keygen server.key` (mode 600; a file others may read is refused).
const server = Effect.flatMap(loadIdentityKey("server.key"), (identity) =>
  serve({ port: 5000, identity, password: "secret" }, (session) => session.serve((packet) => Effect.succeed(packet))))

// Client: pin the fingerprint `cvg keygen` printed; any other key fails the connection.
const client = Effect.scoped(
  Effect.gen(function*() {
    const session = yield* connect({ port: 5000, password: "secret", serverKey: "sha256:<64 hex digits from cvg keygen>" })
    const key = Option.getOrThrow(session.info.serverKey)
    yield* Console.log(`reached ${key.fingerprint} (${key.trust}), password proven: ${session.info.passwordAuthenticated}`)
  })
)

export { client, server }
