// A README.md snippet, verbatim: test/readme.test.ts checks that it stays so, and `tsc --noEmit`
// type-checks it ("cvg-core" resolves to this package through its own `exports`). Never run.

import { Effect } from "effect"
import { Packet, PacketType, serve } from "cvg-core"

const server = serve({ port: 5000, password: "secret" }, (session) =>
  session.serve((packet) =>
    Effect.succeed(new Packet({ id: packet.id, type: PacketType.RESPONSE, payload: packet.payload }))
  ))

Effect.runFork(server)
