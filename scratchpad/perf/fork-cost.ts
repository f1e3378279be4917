/** Scratch: cost of waking a parked writer fiber (latch) vs starting one per batch (runFork), one at a time. */
import { Deferred, Effect, Fiber, Runtime } from "effect"
const N = 50000
const main = Effect.gen(function*() {
  const rt = yield* Effect.runtime<never>()
  for (let r = 0; r < 3; r++) {
    // A: a parked fiber woken by a latch, as the writer was
    const wake = yield* Effect.makeLatch(false)
    let signal: Deferred.Deferred<void> = yield* Deferred.make<void>()
    const parked = yield* Effect.fork(Effect.forever(Effect.gen(function*() {
      yield* wake.await
      wake.unsafeClose()
      yield* Effect.yieldNow()
      Deferred.unsafeDone(signal, Effect.void)
    })))
    let t0 = performance.now()
    for (let i = 0; i < N; i++) {
      signal = yield* Deferred.make<void>()
      wake.unsafeOpen()
      yield* Deferred.await(signal)
    }
    const a = ((performance.now() - t0) * 1000) / N
    yield* Fiber.interrupt(parked)
    // B: a fiber started per batch, as the writer is now
    t0 = performance.now()
    for (let i = 0; i < N; i++) {
      const s = yield* Deferred.make<void>()
      Runtime.runFork(rt, Effect.zipRight(Effect.yieldNow(), Deferred.succeed(s, undefined)))
      yield* Deferred.await(s)
    }
    const b = ((performance.now() - t0) * 1000) / N
    console.log(`wake parked fiber ${a.toFixed(2)} us, start fiber ${b.toFixed(2)} us per batch`)
  }
})
Effect.runPromise(main)
