// The README's server snippet on a busy port: `npx tsx scratchpad/busy-port.mts; echo $?` prints the error and 1.
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import * as net from "node:net"
import { Packet, PacketType, serve } from "../src/index.js"

const taken = net.createServer().listen(0, "127.0.0.1")
await new Promise((resolve) => taken.once("listening", resolve))
const port = (taken.address() as net.AddressInfo).port
taken.unref()

const server = serve({ port, password: "secret" }, (session) =>
  session.serve((packet) =>
    Effect.succeed(new Packet({ id: packet.id, type: PacketType.RESPONSE, payload: packet.payload }))
  ))

NodeRuntime.runMain(server)
