// A README.md snippet, verbatim: test/readme.test.ts checks that it stays so. `tsc --noEmit` type-checks
// it against src/ ("cvg-core" resolves there through tsconfig.json's `paths`), and scripts/smoke.mjs
// against the packed and installed package. Never run.

import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { Packet, PacketType, serve } from "cvg-core"

const server = serve({ port: 5000, password: "secret" }, (session) =>
  session.serve((packet) =>
    Effect.succeed(new Packet({ id: packet.id, type: PacketType.RESPONSE, payload: packet.payload }))
  ))

NodeRuntime.runMain(server)
