/** Scratch: heap per idle connection for the layers under a session: raw net, the platform server's per-connection fiber, our transport. */
import { NodeSocketServer } from "@effect/platform-node"
import { Effect } from "effect"
import * as Net from "node:net"
import { spawn } from "node:child_process"
const N = 400
const mem = () => { globalThis.gc?.(); globalThis.gc?.(); return process.memoryUsage().heapUsed }
const clients = (port: number) => new Promise<() => void>((resolve) => {
  const child = spawn("node", ["-e", `const net=require("net");const a=[];for(let i=0;i<${N};i++)a.push(net.connect(${port},"127.0.0.1"));setTimeout(()=>console.log("ok"),1500);setInterval(()=>{},1000)`], { stdio: ["ignore", "pipe", "inherit"] })
  child.stdout.once("data", () => resolve(() => child.kill()))
})
const mode = process.argv[2]
const main = async () => {
  if (mode === "raw") {
    const keep: Array<Net.Socket> = []
    const server = Net.createServer((s) => keep.push(s)).listen(0, "127.0.0.1")
    await new Promise((r) => server.once("listening", r))
    const before = mem(); const stop = await clients((server.address() as Net.AddressInfo).port); await new Promise((r) => setTimeout(r, 500))
    console.log(mode, ((mem() - before) / N / 1024).toFixed(1), "KB", keep.length); stop(); process.exit(0)
  }
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const server = yield* NodeSocketServer.make({ port: 0, host: "127.0.0.1" })
    yield* Effect.forkScoped(server.run(() => Effect.never))
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    yield* Effect.sleep(200)
    const before = mem()
    const stop = yield* Effect.promise(() => clients(port))
    yield* Effect.sleep(500)
    console.log(mode, ((mem() - before) / N / 1024).toFixed(1), "KB")
    stop()
  })))
  process.exit(0)
}
main()
