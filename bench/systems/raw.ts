/** Raw `node:net`: the plaintext anchor. */
import * as Net from "node:net"
import { bulkOverSocket, echoConnection, handshakeLoop, listenTracked, serveConnection } from "./lenprefix.js"
import type { BenchSystem, Target } from "./types.js"

const dial = (target: Target) =>
  new Promise<Net.Socket>((resolve, reject) => {
    const socket = Net.connect({ host: target.host, port: target.port, noDelay: true })
    socket.once("connect", () => {
      socket.off("error", reject)
      resolve(socket)
    })
    socket.once("error", reject)
  })

export const raw: BenchSystem = {
  name: "raw",
  startServer: () => listenTracked(Net.createServer({ noDelay: true }, serveConnection), "connection"),
  openEcho: async (target) => echoConnection(await dial(target), "tcp"),
  bulk: async (target, options) => bulkOverSocket(await dial(target), options),
  handshakes: (target, options) =>
    handshakeLoop(options.concurrency, options.durationMs, async () => {
      const socket = await dial(target)
      socket.destroy()
    })
}
