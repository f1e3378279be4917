import { Deferred, Effect, Fiber, Logger, LogLevel } from "effect"
import { connect, serve } from "../../src/index.js"
const enc = (process.argv[2] ?? "disabled") as "required" | "disabled"
const prog = Effect.gen(function*() {
  const port = yield* Deferred.make<number>()
  const server = yield* Effect.fork(serve({ port: 0, encryption: enc, onListen: (a) => Deferred.succeed(port, a.port) }, (s) => s.closed))
  const p = yield* Deferred.await(port)
  let ok = 0, failed = 0
  const deadline = Date.now() + Number(process.argv[3] ?? 15000)
  yield* Effect.forEach(Array.from({ length: 16 }), () => Effect.gen(function*() {
    while (Date.now() < deadline) {
      const r = yield* Effect.either(Effect.flatMap(connect({ port: p, encryption: enc, handshakeTimeout: "5 seconds" }), (s) => s.close))
      if (r._tag === "Right") ok++; else { failed++; console.log(new Date().toISOString(), "fail", r.left._tag, r.left.message) }
    }
  }), { concurrency: "unbounded", discard: true })
  console.log(enc, "ok", ok, "failed", failed)
  yield* Fiber.interrupt(server)
}).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
Effect.runPromise(prog).then(() => process.exit(0))
