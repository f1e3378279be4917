/**
 * Measures legitimate handshakes/s against a `serve` in another process, before, during and after a
 * flood of one replayed ClientHello at 200 connections/s (loopback, bounded: 3 s + 6 s + 3 s per
 * run), with the puzzle at its default threshold and with the puzzle off. `npx tsx scratchpad/hs/flood.ts`
 */
import { spawn } from "node:child_process"
import * as Net from "node:net"
import { Effect } from "effect"
import { connectScoped, NodeCrypto } from "../../src/index.js"
import { encodeFrame } from "../../src/wire/Frame.js"
import { ClientHello, encodeClientHello, MessageType, PROTOCOL_VERSION } from "../../src/wire/Messages.js"

const startServer = (threshold: number) =>
  new Promise<{ port: number; rss: () => number; stop: () => void }>((resolve) => {
    const child = spawn("npx", ["tsx", "scratchpad/hs/flood-server.ts", String(threshold)], { stdio: ["ignore", "pipe", "inherit"] })
    let peak = 0
    child.stdout.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) {
        if (line.startsWith("PORT ")) resolve({ port: Number(line.slice(5)), rss: () => peak, stop: () => child.kill() })
        if (line.startsWith("RSS ")) peak = Math.max(peak, Number(line.slice(4)))
      }
    })
  })

const legit = (port: number, ms: number) =>
  Effect.gen(function*() {
    const end = Date.now() + ms
    let ok = 0
    const failed: Array<string> = []
    while (Date.now() < end) {
      const r = yield* Effect.either(Effect.scoped(Effect.flatMap(connectScoped({ port, handshakeTimeout: "3 seconds" }), (s) => s.close)))
      if (r._tag === "Right") ok++
      else failed.push(`${r.left._tag}${"reason" in r.left ? `(${String(r.left.reason)}${"detail" in r.left ? `: ${String(r.left.detail)}` : ""})` : ""}`)
    }
    return { perSecond: (ok * 1000) / ms, failed: failed.join(" ") }
  })

const flood = (port: number, hello: Uint8Array, ms: number) => {
  const end = Date.now() + ms
  const timer = setInterval(() => {
    if (Date.now() > end) return clearInterval(timer)
    const socket = Net.connect({ host: "127.0.0.1", port }, () => socket.write(hello))
    socket.on("error", () => {})
    setTimeout(() => socket.destroy(), 1000)
  }, 5)
}

const run = (threshold: number, label: string) =>
  Effect.gen(function*() {
    const server = yield* Effect.promise(() => startServer(threshold))
    const crypto = yield* NodeCrypto.make
    const key = yield* crypto.generateKeyPair
    const hello = encodeFrame(
      MessageType.CLIENT_HELLO,
      encodeClientHello(new ClientHello({ version: PROTOCOL_VERSION, policy: "required", nonce: new Uint8Array(32), publicKey: key.publicKey }))
    )
    const before = yield* legit(server.port, 3000)
    flood(server.port, hello, 6000)
    const during = yield* legit(server.port, 6000)
    yield* Effect.sleep("1 second")
    const after = yield* legit(server.port, 3000)
    server.stop()
    console.log(
      `${label}: legit handshakes/s before ${before.perSecond.toFixed(1)}, during ${during.perSecond.toFixed(1)} (failed: ${during.failed}), after ${after.perSecond.toFixed(1)} (failed: ${after.failed}); server peak RSS ${server.rss()} MB`
    )
  })

Effect.runPromise(Effect.gen(function*() {
  yield* run(16, "puzzle at the default threshold (16)")
  yield* run(1e9, "puzzle off")

})).then(() => process.exit(0))
