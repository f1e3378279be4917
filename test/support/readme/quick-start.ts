// A README.md snippet, verbatim: test/readme.test.ts checks that it stays so. `tsc --noEmit` type-checks
// it against src/ ("cvg-core" resolves there through tsconfig.json's `paths`), and scripts/smoke.mjs
// against the packed and installed package. Never run.

import { Effect } from "effect"
import { connect } from "cvg-core"
import { Greeter, Hello } from "./greeter.js"

const program = Effect.gen(function*() {
  const session = yield* connect({ host: "127.0.0.1", port: 5000, password: "secret" })
  const greeter = Greeter.client(session)
  const greeting = yield* greeter.call(new Hello({ name: "world" }))
  console.log(greeting.text) // "hello world"
  yield* greeter.call(new Hello({ name: "mallory" })).pipe(
    Effect.catchTag("NotWelcome", (error) => Effect.log(`${error.name} is not welcome`))
  )
  yield* session.close
})

Effect.runPromise(program)
