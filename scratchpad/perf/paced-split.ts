/** Scratch: paced.ts with the client's round trip split at its socket: request -> write, write -> data, data -> answer. */
import { fork } from "node:child_process"
import * as Net from "node:net"
import { performance } from "node:perf_hooks"
import { Effect } from "effect"
import { connect, Packet, PacketType } from "../../src/index.js"
let tWrite = 0, tData = 0
const origWrite = Net.Socket.prototype.write
Net.Socket.prototype.write = function(this: Net.Socket, ...args: Array<any>) { if (tWrite === 0) tWrite = performance.now(); return (origWrite as any).apply(this, args) } as any
const origEmit = Net.Socket.prototype.emit
Net.Socket.prototype.emit = function(this: Net.Socket, event: string, ...args: Array<any>) { if (event === "data" && tData === 0) tData = performance.now(); return (origEmit as any).call(this, event, ...args) } as any
const child = fork(new URL("./paced.ts", import.meta.url).pathname, ["server"], { execArgv: ["--import", "tsx"], env: { ...process.env, PW: "pw" } })
child.on("message", async (port) => {
  const session = await Effect.runPromise(connect({ port: port as number, password: "pw" }))
  const payload = new Uint8Array(64)
  const a: Array<number> = [], b: Array<number> = [], c: Array<number> = []
  const end = performance.now() + 4000
  while (performance.now() < end) {
    tWrite = 0; tData = 0
    const t0 = performance.now()
    await Effect.runPromise(session.request(new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload }, true)))
    const t3 = performance.now()
    a.push(tWrite - t0); b.push(tData - tWrite); c.push(t3 - tData)
    if (process.env.GAP !== "0") await new Promise((r) => setTimeout(r, Number(process.env.GAP ?? 2)))
  }
  const q = (xs: Array<number>, p: number) => [...xs].sort((x, y) => x - y)[Math.floor(p * (xs.length - 1))]!.toFixed(3)
  for (const [name, xs] of [["request->write", a], ["write->data", b], ["data->answer", c]] as const) console.log(`${name}: p50 ${q(xs, 0.5)} p90 ${q(xs, 0.9)} p99 ${q(xs, 0.99)} ms`)
  child.kill(); process.exit(0)
})
