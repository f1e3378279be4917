/**
 * The one transport suite (docs/architecture.md, "Transport"): `Framed` over each implementation of
 * src/transport/Transport.ts must keep the same guarantees, with faults. `test/transport.test.ts` runs
 * it against the raw `net.Socket` path over real loopback TCP, against the `@effect/platform` adapter
 * over the in-memory pair, and against the adapter over the platform's own TCP socket.
 */
import * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, FiberId, type Scope } from "effect"
import { type Framed, type FrameSink, makeFramed, type ReadEnd } from "../src/transport/Framed.js"
import { encodeFrame } from "../src/wire/Frame.js"

/** A connected pair of sockets for one implementation, with its faults. */
export interface TransportPair {
  readonly client: Socket.Socket
  readonly server: Socket.Socket
  /** Resets the connection from the server's side (TCP: an RST), whatever is in flight. */
  readonly reset: Effect.Effect<void>
  /** How many pieces have reached the server's side so far (TCP: `'data'` events; in memory: writes). */
  readonly deliveries: () => number
}

export interface TransportUnderTest {
  readonly name: string
  /** A pair; `peerBuffer` caps what the link holds for a peer that does not read, where it can. */
  readonly makePair: (options?: { readonly peerBuffer?: number }) => Effect.Effect<TransportPair, unknown, Scope.Scope>
}

const MAX_FRAME = 16 * 1024 * 1024
const TYPE = 0x20

interface Collected {
  readonly bodies: Array<Uint8Array>
  readonly bytes: () => number
  readonly ended: Deferred.Deferred<ReadEnd>
  /** Completes once at least `n` frames have arrived. */
  readonly waitFrames: (n: number) => Effect.Effect<void>
}

/** Installs a sink that keeps every frame's body (copied: the decoder may reuse its buffer). */
const collect = (framed: Framed): Collected => {
  const bodies: Array<Uint8Array> = []
  let bytes = 0
  const ended = Deferred.unsafeMake<ReadEnd>(FiberId.none)
  let waiters: Array<{ n: number; done: Deferred.Deferred<void> }> = []
  const sink: FrameSink = {
    onFrame: (_type, _header, body) => {
      bodies.push(Uint8Array.from(body))
      bytes += body.length
      waiters = waiters.filter((w) => {
        if (bodies.length < w.n) return true
        Deferred.unsafeDone(w.done, Exit.void)
        return false
      })
    },
    onEnd: (end) => Deferred.unsafeDone(ended, Exit.succeed(end))
  }
  framed.setSink(sink)
  return {
    bodies,
    bytes: () => bytes,
    ended,
    waitFrames: (n) =>
      Effect.suspend(() => {
        if (bodies.length >= n) return Effect.void
        const done = Deferred.unsafeMake<void>(FiberId.none)
        waiters.push({ n, done })
        return Deferred.await(done)
      })
  }
}

const body = (length: number, seed: number) => {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff
  return out
}

/** A hang fails the test with a message instead of the runner's timeout. */
const within = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: "15 seconds", onTimeout: () => new Error(`timed out: ${what}`) })

/** Whether `effect` is still waiting after `ms` milliseconds of real time (a write held by back-pressure). */
const stillWaiting = (effect: Effect.Effect<void>, ms: number) =>
  Effect.map(Effect.timeout(effect, `${ms} millis`), () => false).pipe(Effect.catchTag("TimeoutException", () => Effect.succeed(true)))

const framedPair = (pair: TransportPair, highWaterMark?: number) =>
  Effect.all([
    makeFramed(pair.client, { maxFrameSize: MAX_FRAME, ...(highWaterMark === undefined ? {} : { highWaterMark }) }),
    makeFramed(pair.server, { maxFrameSize: MAX_FRAME })
  ])

export const transportSuite = (impl: TransportUnderTest) =>
  describe(`transport suite: ${impl.name}`, () => {
    it.scopedLive("many small writes: queued synchronously, coalesced into a few writes, in order", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair()
        const [client, server] = yield* framedPair(pair)
        const atServer = collect(server)
        const n = 5000
        const before = pair.deliveries()
        for (let i = 0; i < n; i++) client.enqueue(encodeFrame(TYPE, body(16, i)))
        // Nothing was written while they were queued: the batch goes out once the event loop turns.
        expect(client.pendingBytes()).toBe(n * 21)
        yield* within("5000 frames", atServer.waitFrames(n))
        for (let i = 0; i < n; i++) expect(atServer.bodies[i]).toEqual(body(16, i))
        // One write per frame would be thousands of deliveries; one batch is a handful.
        expect(pair.deliveries() - before).toBeLessThan(n / 10)
        expect(client.pendingBytes()).toBe(0)
      }))

    it.scopedLive("large writes: a 12 MiB frame and 64 KiB frames interleaved arrive byte for byte", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair()
        const [client, server] = yield* framedPair(pair)
        const atServer = collect(server)
        const big = body(12 * 1024 * 1024, 7)
        client.enqueue(encodeFrame(TYPE, body(65536, 1)))
        client.enqueue(encodeFrame(TYPE, big))
        client.enqueue(encodeFrame(TYPE, body(65536, 2)))
        yield* within("3 frames", atServer.waitFrames(3))
        expect(Buffer.compare(atServer.bodies[1]!, big)).toBe(0)
        expect(atServer.bodies[0]).toEqual(body(65536, 1))
        expect(atServer.bodies[2]).toEqual(body(65536, 2))
      }))

    it.scopedLive("enqueueLater's hook runs once per batch, before it is taken (BATCH, PROTOCOL.md §7.3)", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair()
        const [client, server] = yield* framedPair(pair)
        const atServer = collect(server)
        let calls = 0
        client.enqueue(encodeFrame(TYPE, body(3, 0)))
        client.enqueueLater(() => {
          calls++
          client.enqueue(encodeFrame(TYPE, body(3, 1)))
        })
        client.enqueueLater(() => {
          calls++
          client.enqueue(encodeFrame(TYPE, body(3, 2)))
        })
        yield* within("2 frames", atServer.waitFrames(2))
        // The last hook set is the one that runs (the channel sets it once per held batch).
        expect(calls).toBe(1)
        expect(atServer.bodies.map((b) => b[0])).toEqual([body(3, 0)[0], body(3, 2)[0]])
      }))

    it.scopedLive("endWrite with data queued: the peer gets all of it, then end of stream", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair()
        const [client, server] = yield* framedPair(pair)
        const atServer = collect(server)
        for (let i = 0; i < 64; i++) client.enqueue(encodeFrame(TYPE, body(16384, i)))
        yield* within("endWrite", client.endWrite)
        const end = yield* within("the peer's end", Deferred.await(atServer.ended))
        expect(end._tag).toBe("Eof")
        expect(atServer.bodies.length).toBe(64)
        expect(atServer.bodies[63]).toEqual(body(16384, 63))
      }))

    it.scopedLive("writes after endWrite are dropped, not thrown, and the end is sent once", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair()
        const [client, server] = yield* framedPair(pair)
        const atServer = collect(server)
        client.enqueue(encodeFrame(TYPE, body(5, 1)))
        yield* within("endWrite", client.endWrite)
        client.enqueue(encodeFrame(TYPE, body(5, 2)))
        client.enqueueLater(() => client.enqueue(encodeFrame(TYPE, body(5, 3))))
        yield* within("endWrite again", client.endWrite)
        yield* within("the peer's end", Deferred.await(atServer.ended))
        expect(atServer.bodies.length).toBe(1)
        expect(client.pendingBytes()).toBe(0)
      }))

    it.scopedLive("the peer half-closes: our reading ends with Eof, our writes stop, endWrite completes", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair()
        const [client, server] = yield* framedPair(pair)
        const atClient = collect(client)
        const atServer = collect(server)
        server.enqueue(encodeFrame(TYPE, body(100, 9)))
        yield* within("server endWrite", server.endWrite)
        expect((yield* within("client end", Deferred.await(atClient.ended)))._tag).toBe("Eof")
        expect(atClient.bodies.length).toBe(1)
        yield* within("readEnded", client.readEnded)
        client.enqueue(encodeFrame(TYPE, body(10, 1)))
        yield* within("client endWrite", client.endWrite)
        yield* within("awaitWritable", client.awaitWritable)
        // The server's side sees an orderly end too (allowHalfOpen: false on both paths).
        expect((yield* within("server end", Deferred.await(atServer.ended)))._tag).not.toBe("ProtocolError")
      }))

    it.scopedLive("the peer resets mid-write: a SocketError ends reading, writes stop and release their waiters", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair({ peerBuffer: 64 * 1024 })
        const client = yield* makeFramed(pair.client, { maxFrameSize: MAX_FRAME, highWaterMark: 256 * 1024 })
        const atClient = collect(client)
        // The server never reads, so writes pile up; then it resets.
        const frame = encodeFrame(TYPE, body(64 * 1024, 3))
        let stalled = false
        for (let i = 0; i < 1024 && !stalled; i++) {
          client.enqueue(frame)
          stalled = yield* stillWaiting(client.awaitWritable, 250)
        }
        expect(stalled).toBe(true)
        const waiting = yield* Effect.fork(client.awaitWritable)
        yield* pair.reset
        const end = yield* within("client end", Deferred.await(atClient.ended))
        expect(end._tag).toBe("SocketError")
        if (end._tag === "SocketError") expect(Socket.isSocketError(end.error)).toBe(true)
        yield* within("the waiting sender", Effect.asVoid(waiting.await))
        expect(client.pendingBytes()).toBe(0)
        expect(client.writingSince()).toBeUndefined()
        // A write after the reset is dropped, and ending completes at once.
        client.enqueue(frame)
        expect(client.pendingBytes()).toBe(0)
        yield* within("endWrite", client.endWrite)
        yield* within("readEnded", client.readEnded)
      }))

    it.scopedLive("a peer that never reads: memory held at the high-water mark, writingSince set, abortWrites releases all", () =>
      Effect.gen(function*() {
        const highWaterMark = 256 * 1024
        const pair = yield* impl.makePair({ peerBuffer: 64 * 1024 })
        const client = yield* makeFramed(pair.client, { maxFrameSize: MAX_FRAME, highWaterMark })
        collect(client)
        const frameSize = 16 * 1024
        const frame = encodeFrame(TYPE, body(frameSize, 4))
        let sent = 0
        let stalled = false
        // A sender that respects awaitWritable, as the session's do, until the writes stall.
        while (!stalled && sent < 256 * 1024 * 1024) {
          client.enqueue(frame)
          sent += frame.length
          stalled = yield* stillWaiting(client.awaitWritable, 250)
        }
        expect(stalled).toBe(true)
        // What we hold is bounded by the mark (plus the frame that crossed it), not by what was sent.
        expect(client.pendingBytes()).toBeGreaterThanOrEqual(highWaterMark)
        expect(client.pendingBytes()).toBeLessThan(highWaterMark + frame.length)
        expect(client.writingSince()).toBeDefined()
        expect(yield* stillWaiting(client.awaitWritable, 250)).toBe(true)
        // The stall timeout's way out: writes abandoned, waiters released, endWrite completes.
        const waiting = yield* Effect.fork(client.awaitWritable)
        yield* client.abortWrites
        yield* within("the waiting sender", Effect.asVoid(waiting.await))
        yield* within("endWrite", client.endWrite)
        expect(client.pendingBytes()).toBe(0)
        expect(client.writingSince()).toBeUndefined()
      }))

    it.scopedLive("stopReading ends reading as Eof and completes readEnded; nothing more reaches the sink", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair()
        const [client, server] = yield* framedPair(pair)
        const atClient = collect(client)
        collect(server)
        yield* client.stopReading
        yield* within("readEnded", client.readEnded)
        expect((yield* Deferred.await(atClient.ended))._tag).toBe("Eof")
        server.enqueue(encodeFrame(TYPE, body(10, 1)))
        yield* within("server endWrite", server.endWrite)
        yield* Effect.sleep("50 millis")
        expect(atClient.bodies.length).toBe(0)
      }))

    it.scopedLive("a framing error ends reading, and a frame queued after it (the alert) still goes out", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair()
        const client = yield* makeFramed(pair.client, { maxFrameSize: MAX_FRAME })
        const server = yield* makeFramed(pair.server, { maxFrameSize: 1024 })
        const atClient = collect(client)
        const atServer = collect(server)
        client.enqueue(encodeFrame(TYPE, body(2048, 1)))
        const end = yield* within("server end", Deferred.await(atServer.ended))
        expect(end).toMatchObject({ _tag: "ProtocolError", error: { reason: "FrameTooLarge" } })
        server.enqueue(encodeFrame(0x01, Uint8Array.of(1)))
        yield* within("server endWrite", server.endWrite)
        yield* within("the alert", atClient.waitFrames(1))
        expect(atClient.bodies[0]).toEqual(Uint8Array.of(1))
      }))

    it.scopedLive("closing the scope releases the connection: the peer's reading ends", () =>
      Effect.gen(function*() {
        const pair = yield* impl.makePair()
        const server = yield* makeFramed(pair.server, { maxFrameSize: MAX_FRAME })
        const atServer = collect(server)
        yield* Effect.scoped(
          Effect.gen(function*() {
            const client = yield* makeFramed(pair.client, { maxFrameSize: MAX_FRAME })
            client.enqueue(encodeFrame(TYPE, body(10, 1)))
            yield* within("endWrite", client.endWrite)
          })
        )
        const end = yield* within("server end", Deferred.await(atServer.ended))
        expect(end._tag === "Eof" || end._tag === "SocketError").toBe(true)
        expect(atServer.bodies.length).toBe(1)
      }))
  })
