// A README.md snippet, verbatim: test/readme.test.ts checks that it stays so. `tsc --noEmit` type-checks
// it against src/ ("cvg-core" resolves there through tsconfig.json's `paths`), and scripts/smoke.mjs
// against the packed and installed package. Never run.

import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { serve } from "cvg-core"
import { Greeter, Greeting, NotWelcome } from "./greeter.js"

const server = serve({ port: 5000, password: "secret" }, (session) =>
  Greeter.serve(session, {
    Hello: ({ name }) =>
      name === "mallory" ? Effect.fail(new NotWelcome({ name })) : Effect.succeed(new Greeting({ text: `hello ${name}` }))
  }))

NodeRuntime.runMain(server)
