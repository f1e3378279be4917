import { Deferred, Effect, Fiber, Stream } from "effect"
import { connect, Packet, PacketType, serve } from "../../src/index.js"
const MiB = 1024 * 1024
const total = Number(process.argv[2] ?? 256) * MiB
const enc = (process.argv[3] ?? "required") as "required" | "disabled"
const prog = Effect.gen(function*() {
  const port = yield* Deferred.make<number>()
  const done = yield* Deferred.make<number>()
  const server = yield* Effect.fork(serve({ port: 0, encryption: enc, onListen: (a) => Deferred.succeed(port, a.port) }, (s) => Effect.gen(function*() {
    const inc = yield* s.receiveStream()
    let n = 0
    yield* Stream.runForEach(inc.data, (c) => Effect.sync(() => { n += c.length }))
    yield* Deferred.succeed(done, n)
  })))
  const p = yield* Deferred.await(port)
  const s = yield* connect({ port: p, encryption: enc })
  const chunk = new Uint8Array(256 * 1024)
  const t0 = performance.now()
  yield* s.sendStream({ id: 1, type: PacketType.STREAM_DATA }, Stream.repeatValue(chunk).pipe(Stream.take(total / chunk.length)))
  const n = yield* Deferred.await(done)
  const dt = performance.now() - t0
  console.log(`${enc}: ${n / MiB} MiB in ${dt.toFixed(0)} ms = ${(n / MiB / (dt / 1000)).toFixed(0)} MiB/s`)
  yield* s.close
  yield* Fiber.interrupt(server)
})
Effect.runPromise(prog).then(() => process.exit(0))
