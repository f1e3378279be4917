import { Effect, Fiber, Duration } from "effect"
import * as Net from "node:net"
import { NodeSocket } from "@effect/platform-node"
import * as Socket from "@effect/platform/Socket"
import { ClientSession, Crypto, NodeCrypto, Packet, PacketType } from "../../src/index.js"
import { startServer } from "../../stress/server.js"

const main = async () => {
  let beats = 0; setInterval(() => { beats++; if (beats % 10 === 0) console.log("beat", beats) }, 100).unref()
  const ports = await startServer("pw")
  const socket = await new Promise<Net.Socket>((resolve) => { const s = Net.createConnection({ host: "127.0.0.1", port: ports.echo }, () => resolve(s)) })
  const program = Effect.gen(function*() {
    const ps = yield* NodeSocket.fromDuplex(Effect.succeed(socket))
    const service = yield* NodeCrypto.make
    const session = yield* ClientSession.session({ password: "pw", chunkSize: 16 * 1024 }).pipe(Effect.provideService(Socket.Socket, ps), Effect.provideService(Crypto, service))
    console.log("session open", socket.bytesWritten)
    const payload = new Uint8Array(64 * 2 ** 20)
    for (let i = 0; i < 5; i++) {
      const before = socket.bytesWritten
      const fiber = yield* Effect.fork(session.send(new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload }, true)).pipe(process.env.OPS ? Effect.withMaxOpsBeforeYield(Number(process.env.OPS)) : (x) => x))
      console.log("forked")
      yield* Effect.yieldNow()
      console.log("yielded")
      yield* Fiber.interrupt(fiber)
      console.log("interrupted")
      yield* Effect.sleep(Duration.millis(50))
      console.log("bytes", socket.bytesWritten - before)
    }
  })
  await Effect.runPromise(Effect.scoped(program).pipe(Effect.timeout("10 seconds")))
  process.exit(0)
}
main()
