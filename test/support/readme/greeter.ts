// A README.md snippet, verbatim: test/readme.test.ts checks that it stays so. `tsc --noEmit` type-checks
// it against src/ ("cvg-core" resolves there through tsconfig.json's `paths`), and scripts/smoke.mjs
// against the packed and installed package. Never run.

import { Schema } from "effect"
import { Api } from "cvg-core"

export class Greeting extends Schema.Class<Greeting>("Greeting")({ text: Schema.String }) {}
export class NotWelcome extends Schema.TaggedError<NotWelcome>()("NotWelcome", { name: Schema.String }) {}
export class Hello extends Schema.TaggedRequest<Hello>()("Hello", {
  payload: { name: Schema.String },
  success: Greeting,
  failure: NotWelcome
}) {}

// One declaration, imported by both sides.
export const Greeter = Api.make({ requests: [Hello] })
