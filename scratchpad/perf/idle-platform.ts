/** Scratch: heap per idle connection of a bare @effect/platform-node socket server (socket.run + writer), for comparison. */
import { NodeSocketServer } from "@effect/platform-node"
import { Effect } from "effect"
import * as Net from "node:net"
const N = 300
const mem = () => { globalThis.gc?.(); return process.memoryUsage() }
const main = Effect.scoped(Effect.gen(function*() {
  const server = yield* NodeSocketServer.make({ port: 0, host: "127.0.0.1" })
  yield* Effect.forkScoped(server.run((socket) => Effect.scoped(Effect.gen(function*() {
    const write = yield* socket.writer
    yield* socket.run(() => {})
    yield* write(new Uint8Array(0))
  }))))
  const port = server.address._tag === "TcpAddress" ? server.address.port : 0
  yield* Effect.sleep(200)
  const before = mem()
  const clients: Array<Net.Socket> = []
  for (let i = 0; i < N; i++) clients.push(Net.connect({ port, host: "127.0.0.1" }))
  yield* Effect.sleep(2000)
  const after = mem()
  console.log(`bare platform socket server: heap per connection ${((after.heapUsed - before.heapUsed) / N / 1024).toFixed(1)} KB (client sockets in the same process: raw net)`)
  for (const c of clients) c.destroy()
}))
Effect.runPromise(main)
