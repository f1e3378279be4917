/**
 * The transport contract that the protocol layers rely on, checked against real loopback TCP
 * (`@effect/platform-node`) and against the in-memory pair, so that tests run on the pair mean
 * something for TCP. Fault injection is specific to the in-memory pair and is tested after that.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Option, Scope, TestClock } from "effect"
import * as Net from "node:net"
import { makeFramed } from "../src/transport/Framed.js"
import * as MemorySocket from "../src/transport/MemorySocket.js"
import { netSocket } from "../src/transport/Transport.js"
import { transportSuite as framedTransportSuite } from "./transport.suite.js"
import { concatBytes, makeRandom } from "../src/internal/bytes.js"

// ---------------------------------------------------------------------------------------------
// Helpers

interface Connected {
  readonly client: Socket.Socket
  readonly server: Socket.Socket
  /** Cut the connection abruptly (TCP: a reset sent by the server side). */
  readonly cut: Effect.Effect<void>
}

type MakeConnected = Effect.Effect<Connected, unknown, Scope.Scope>


const randomBytes = (length: number, seed: number): Uint8Array => {
  const random = makeRandom(seed)
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256)
  return out
}

/** Cuts `data` into writes of 1 byte to `max` bytes. */
const randomWrites = (data: Uint8Array, max: number, seed: number): Array<Uint8Array> => {
  const random = makeRandom(seed)
  const out: Array<Uint8Array> = []
  for (let offset = 0; offset < data.length;) {
    const size = 1 + Math.floor(random() * max)
    out.push(data.subarray(offset, offset + size))
    offset += size
  }
  return out
}


const text = (value: string) => new TextEncoder().encode(value)

/** Compares without handing vitest megabytes to diff. */
const expectSameBytes = (actual: Uint8Array, expected: Uint8Array) => {
  expect(actual.length).toBe(expected.length)
  expect(Buffer.compare(actual, expected)).toBe(0)
}

interface Receiver {
  readonly chunks: Array<Uint8Array>
  readonly bytes: () => Uint8Array
  /** Waits until at least `n` bytes have arrived. */
  readonly waitFor: (n: number) => Effect.Effect<void>
  readonly fiber: Fiber.RuntimeFiber<void, Socket.SocketError>
}

const startReceiver = (
  socket: Socket.Socket,
  fork: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<Fiber.RuntimeFiber<A, E>, never, Scope.Scope> =
    Effect.forkScoped
): Effect.Effect<Receiver, never, Scope.Scope> =>
  Effect.gen(function*() {
    const chunks: Array<Uint8Array> = []
    let total = 0
    let waiters: Array<{ readonly n: number; readonly done: Deferred.Deferred<void> }> = []
    const fiber = yield* fork(socket.run((chunk) => {
      // TCP hands over fresh buffers; copying keeps the test honest if the pair reused one.
      chunks.push(new Uint8Array(chunk))
      total += chunk.length
      waiters = waiters.filter((waiter) => {
        if (total < waiter.n) return true
        Deferred.unsafeDone(waiter.done, Exit.void)
        return false
      })
    }))
    const waitFor = (n: number) =>
      Effect.suspend(() => {
        if (total >= n) return Effect.void
        const done = Deferred.unsafeMake<void>(fiber.id())
        waiters.push({ n, done })
        return Deferred.await(done)
      })
    return { chunks, bytes: () => concatBytes(chunks), waitFor, fiber }
  })

/** Long enough for loopback, short enough that a hang fails the test instead of its timeout. */
const within = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: "10 seconds", onTimeout: () => new Error("timed out") })

const joinExit = <A, E>(fiber: Fiber.Fiber<A, E>) => within(Fiber.await(fiber))

const failureOf = <A, E>(exit: Exit.Exit<A, E>): Option.Option<E> =>
  Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()

const expectSocketError = <A, E>(exit: Exit.Exit<A, E>) => {
  const error = failureOf(exit)
  expect(Option.isSome(error) && Socket.isSocketError(error.value)).toBe(true)
}

/**
 * A connected TCP pair on 127.0.0.1. `makeNet` connects only when the client's `run` starts (and
 * latches writes until then), so the server side is a thin proxy that waits for the accept: that
 * keeps both sides exactly as `@effect/platform-node` builds them.
 */
const tcpPair: MakeConnected = Effect.gen(function*() {
  const server = yield* NodeSocketServer.make({ port: 0, host: "127.0.0.1" })
  const address = server.address
  if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
  const accepted = yield* Deferred.make<readonly [Socket.Socket, Net.Socket]>()
  let acceptedConn: Net.Socket | undefined
  // `server.close()` waits for open connections; an accepted socket whose `run` never started would
  // otherwise keep the scope from closing.
  yield* Effect.addFinalizer(() => Effect.sync(() => acceptedConn?.destroy()))
  yield* Effect.forkScoped(server.run((socket) =>
    Effect.gen(function*() {
      const conn = yield* Effect.serviceOption(NodeSocket.NetSocket)
      if (Option.isNone(conn)) return yield* Effect.dieMessage("NodeSocketServer provides NetSocket")
      acceptedConn = conn.value
      yield* Deferred.succeed(accepted, [socket, conn.value] as const)
      return yield* Effect.never
    })
  ))
  const client = yield* NodeSocket.makeNet({ port: address.port, host: "127.0.0.1" })
  const whenAccepted = Effect.map(Deferred.await(accepted), ([socket]) => socket)
  const run = <_, E = never, R = never>(
    handler: (_: Uint8Array) => Effect.Effect<_, E, R> | void,
    options?: { readonly onOpen?: Effect.Effect<void> | undefined }
  ): Effect.Effect<void, Socket.SocketError | E, R> =>
    Effect.flatMap(whenAccepted, (socket) => socket.run(handler, options))
  const serverSocket = Socket.Socket.of({
    [Socket.TypeId]: Socket.TypeId,
    run,
    runRaw: run,
    writer: Effect.flatMap(whenAccepted, (socket) => socket.writer)
  })
  const cut = Effect.flatMap(Deferred.await(accepted), ([, conn]) => Effect.sync(() => void conn.resetAndDestroy()))
  return { client, server: serverSocket, cut }
})

const memoryPair = (options?: MemorySocket.FaultOptions): MakeConnected =>
  Effect.map(MemorySocket.makePair(options), ([client, server]) => ({
    client,
    server,
    cut: MemorySocket.cut(client)
  }))

// ---------------------------------------------------------------------------------------------
// The shared contract

const transportSuite = (name: string, makePair: MakeConnected) =>
  describe(`transport contract: ${name}`, () => {
    it.scopedLive("carries 4 MiB each way in order, whatever the chunking", () =>
      Effect.gen(function*() {
        const { client, server } = yield* makePair
        const size = 4 * 1024 * 1024
        const up = randomBytes(size, 1)
        const down = randomBytes(size, 2)
        const atServer = yield* startReceiver(server)
        const atClient = yield* startReceiver(client)
        yield* Effect.scoped(Effect.gen(function*() {
          const writeUp = yield* client.writer
          const writeDown = yield* server.writer
          yield* within(Effect.all([
            Effect.forEach(randomWrites(up, 65536, 3), writeUp, { discard: true }),
            Effect.forEach(randomWrites(down, 65536, 4), writeDown, { discard: true })
          ], { concurrency: 2, discard: true }))
          // Both directions must be complete before either side ends: the first end finishes both.
          yield* within(Effect.all([atServer.waitFor(size), atClient.waitFor(size)], { discard: true }))
        }))
        expectSameBytes(atServer.bytes(), up)
        expectSameBytes(atClient.bytes(), down)
        expect(Exit.isSuccess(yield* joinExit(atServer.fiber))).toBe(true)
        expect(Exit.isSuccess(yield* joinExit(atClient.fiber))).toBe(true)
      }))

    it.scopedLive("copies written chunks: the writer may reuse its buffer", () =>
      Effect.gen(function*() {
        const { client, server } = yield* makePair
        const atServer = yield* startReceiver(server)
        yield* Effect.forkScoped(client.run(() => {}))
        const write = yield* client.writer
        const buffer = new Uint8Array(4)
        for (let i = 0; i < 3; i++) {
          buffer.fill(i + 1)
          yield* write(buffer)
        }
        yield* within(atServer.waitFor(12))
        expect([...atServer.bytes()]).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
      }))

    it.scopedLive("ending the write side completes the peer's run, then ours", () =>
      Effect.gen(function*() {
        const { client, server } = yield* makePair
        const atServer = yield* startReceiver(server)
        const atClient = yield* startReceiver(client)
        yield* Effect.scoped(Effect.flatMap(client.writer, (write) => write(text("last words"))))
        expect(Exit.isSuccess(yield* joinExit(atServer.fiber))).toBe(true)
        expect(new TextDecoder().decode(atServer.bytes())).toBe("last words")
        // A net.Socket without allowHalfOpen ends its own side when it sees the end of the stream.
        expect(Exit.isSuccess(yield* joinExit(atClient.fiber))).toBe(true)
      }))

    it.scopedLive("a CloseEvent destroys our side: our run fails, the peer sees the data and an end", () =>
      Effect.gen(function*() {
        for (const code of [1000, 4000]) {
          yield* Effect.scoped(Effect.gen(function*() {
            const { client, server } = yield* makePair
            const atServer = yield* startReceiver(server)
            const atClient = yield* startReceiver(client)
            const write = yield* client.writer
            yield* write(text("before close"))
            yield* write(new Socket.CloseEvent(code))
            const own = failureOf(yield* joinExit(atClient.fiber))
            if (code === 1000) {
              expect(Option.isSome(own) && Socket.SocketCloseError.is(own.value) && own.value.code === 1000).toBe(true)
            } else {
              expect(Option.isSome(own) && Socket.isSocketError(own.value) && own.value.reason === "Read").toBe(true)
            }
            // TCP's destroy() sends a FIN, not a reset: the peer cannot tell it from an orderly end.
            expect(Exit.isSuccess(yield* joinExit(atServer.fiber))).toBe(true)
            expect(new TextDecoder().decode(atServer.bytes())).toBe("before close")
          }))
        }
      }))

    it.scopedLive("a cut fails both runs with a SocketError", () =>
      Effect.gen(function*() {
        const { client, cut, server } = yield* makePair
        const atServer = yield* startReceiver(server)
        const atClient = yield* startReceiver(client)
        const write = yield* client.writer
        yield* write(text("hello"))
        yield* within(atServer.waitFor(5))
        yield* cut
        expectSocketError(yield* joinExit(atServer.fiber))
        expectSocketError(yield* joinExit(atClient.fiber))
      }))

    it.scopedLive("a failing handler effect fails run with its error", () =>
      Effect.gen(function*() {
        const { client, server } = yield* makePair
        const serverRun = yield* Effect.forkScoped(
          server.run((chunk) => (chunk.includes(0x21) ? Effect.fail("bang" as const) : Effect.void))
        )
        yield* Effect.forkScoped(client.run(() => {}))
        const write = yield* client.writer
        yield* write(text("fine"))
        yield* write(text("!"))
        const error = failureOf(yield* joinExit(serverRun))
        expect(error).toEqual(Option.some("bang"))
      }))

    it.scopedLive("writes made before run wait for it and are not lost", () =>
      Effect.gen(function*() {
        const { client, server } = yield* makePair
        const early = yield* Effect.forkScoped(
          Effect.flatMap(client.writer, (write) => write(text("early")))
        )
        yield* Effect.yieldNow()
        // NodeSocket connects inside run and latches writes until then.
        expect(Option.isNone(yield* Fiber.poll(early))).toBe(true)
        const atServer = yield* startReceiver(server)
        const atClient = yield* startReceiver(client)
        yield* within(Fiber.join(early))
        yield* within(atServer.waitFor(5))
        expect(new TextDecoder().decode(atServer.bytes())).toBe("early")
        expect(atClient.chunks).toEqual([])
      }))

    it.scopedLive("bytes written before the peer runs are kept for it", () =>
      Effect.gen(function*() {
        const { client, server } = yield* makePair
        yield* Effect.forkScoped(client.run(() => {}))
        const write = yield* client.writer
        yield* within(write(text("waiting for you")))
        const atServer = yield* startReceiver(server)
        yield* within(atServer.waitFor(15))
        expect(new TextDecoder().decode(atServer.bytes())).toBe("waiting for you")
      }))

    it.scopedLive("closing the pair's scope ends runs started outside it", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const { client, server } = yield* Scope.extend(makePair, scope)
        const atServer = yield* startReceiver(server, Effect.fork)
        const atClient = yield* startReceiver(client, Effect.fork)
        const write = yield* Scope.extend(client.writer, scope)
        yield* write(text("ping"))
        yield* within(atServer.waitFor(4))
        yield* within(Scope.close(scope, Exit.void))
        // The end may be orderly or not; what matters is that nothing is left running.
        yield* joinExit(atServer.fiber)
        yield* joinExit(atClient.fiber)
      }))
  })

transportSuite("loopback TCP", tcpPair)
transportSuite("MemorySocket", memoryPair())
// The contract must hold whatever the chunking.
transportSuite("MemorySocket, split and coalesced", memoryPair({
  seed: 7,
  clientToServer: { split: true, coalesce: true },
  serverToClient: { split: { maxChunk: 1000 } }
}))

// ---------------------------------------------------------------------------------------------
// In-memory faults

/** Runs both sides, sends `data` client to server in random writes, and returns the deliveries. */
const transfer = (options: MemorySocket.FaultOptions, data: Uint8Array, maxWrite: number) =>
  Effect.gen(function*() {
    const [client, server] = yield* MemorySocket.makePair(options)
    const atServer = yield* startReceiver(server)
    yield* Effect.forkScoped(client.run(() => {}))
    const writes = randomWrites(data, maxWrite, 11)
    yield* Effect.scoped(Effect.flatMap(client.writer, (write) => Effect.forEach(writes, write, { discard: true })))
    yield* Fiber.join(atServer.fiber)
    return { chunks: atServer.chunks, writes: writes.length }
  })

describe("MemorySocket faults", () => {
  it.scoped("split re-chunks at seeded boundaries, down to single bytes, and keeps the stream", () =>
    Effect.gen(function*() {
      const data = randomBytes(256 * 1024, 5)
      const first = yield* transfer({ seed: 1, clientToServer: { split: true } }, data, 4096)
      expectSameBytes(concatBytes(first.chunks), data)
      expect(first.chunks.length).toBeGreaterThan(first.writes)
      expect(first.chunks.some((chunk) => chunk.length === 1)).toBe(true)
      const again = yield* transfer({ seed: 1, clientToServer: { split: true } }, data, 4096)
      expect(again.chunks.map((chunk) => chunk.length)).toEqual(first.chunks.map((chunk) => chunk.length))
      const other = yield* transfer({ seed: 2, clientToServer: { split: true } }, data, 4096)
      expect(other.chunks.map((chunk) => chunk.length)).not.toEqual(first.chunks.map((chunk) => chunk.length))
      const small = yield* transfer({ clientToServer: { split: { maxChunk: 3 } } }, data.subarray(0, 4096), 512)
      expect(small.chunks.every((chunk) => chunk.length <= 3)).toBe(true)
    }))

  it.scoped("coalesce merges consecutive writes and keeps the stream", () =>
    Effect.gen(function*() {
      const data = randomBytes(64 * 1024, 6)
      const plain = yield* transfer({}, data, 256)
      expect(plain.chunks.length).toBe(plain.writes)
      const merged = yield* transfer({ clientToServer: { coalesce: true } }, data, 256)
      expectSameBytes(concatBytes(merged.chunks), data)
      expect(merged.chunks.length).toBeLessThan(merged.writes)
    }))

  it.scoped("split and coalesce carry 32 MiB both ways", () =>
    Effect.gen(function*() {
      const size = 32 * 1024 * 1024
      const [client, server] = yield* MemorySocket.makePair({
        seed: 3,
        clientToServer: { split: true, coalesce: true },
        serverToClient: { split: true, coalesce: true }
      })
      const up = randomBytes(size, 7)
      const down = randomBytes(size, 8)
      const atServer = yield* startReceiver(server)
      const atClient = yield* startReceiver(client)
      yield* Effect.scoped(Effect.gen(function*() {
        const writeUp = yield* client.writer
        const writeDown = yield* server.writer
        yield* Effect.all([
          Effect.forEach(randomWrites(up, 256 * 1024, 9), writeUp, { discard: true }),
          Effect.forEach(randomWrites(down, 256 * 1024, 10), writeDown, { discard: true })
        ], { concurrency: 2, discard: true })
        yield* Effect.all([atServer.waitFor(size), atClient.waitFor(size)], { discard: true })
      }))
      expectSameBytes(atServer.bytes(), up)
      expectSameBytes(atClient.bytes(), down)
    }))

  it.scoped("delay holds each delivery on the TestClock", () =>
    Effect.gen(function*() {
      const [client, server] = yield* MemorySocket.makePair({ clientToServer: { delay: "100 millis" } })
      const atServer = yield* startReceiver(server)
      yield* Effect.forkScoped(client.run(() => {}))
      const write = yield* client.writer
      yield* write(text("slow"))
      yield* TestClock.adjust("99 millis")
      expect(atServer.chunks.length).toBe(0)
      yield* TestClock.adjust("1 millis")
      yield* atServer.waitFor(4)
      expect(new TextDecoder().decode(atServer.bytes())).toBe("slow")
    }))

  it.scoped("cutAfter delivers exactly n bytes, then fails both runs and every write", () =>
    Effect.gen(function*() {
      const [client, server] = yield* MemorySocket.makePair({ clientToServer: { cutAfter: 1000 } })
      const atServer = yield* startReceiver(server)
      const atClient = yield* startReceiver(client)
      const data = randomBytes(1800, 12)
      const write = yield* client.writer
      yield* write(data.subarray(0, 600))
      // The write that crosses the limit was handed over; the link dies behind it.
      yield* write(data.subarray(600, 1200))
      const late = yield* Effect.exit(write(data.subarray(1200)))
      expectSocketError(late)
      const serverExit = yield* Fiber.await(atServer.fiber)
      const clientExit = yield* Fiber.await(atClient.fiber)
      expectSameBytes(atServer.bytes(), data.subarray(0, 1000))
      for (const exit of [serverExit, clientExit]) {
        const error = failureOf(exit)
        expect(Option.isSome(error) && Socket.SocketCloseError.is(error.value) && error.value.code === 1006).toBe(true)
      }
      const back = yield* Effect.exit(Effect.flatMap(server.writer, (writeBack) => writeBack(text("too late"))))
      expectSocketError(back)
    }))

  it.scoped("cutAfter counts across split and coalesced deliveries", () =>
    Effect.gen(function*() {
      const data = randomBytes(100_000, 13)
      const [client, server] = yield* MemorySocket.makePair({
        clientToServer: { cutAfter: 54_321, split: true, coalesce: true }
      })
      const atServer = yield* startReceiver(server)
      yield* Effect.forkScoped(client.run(() => {}))
      const write = yield* client.writer
      yield* Effect.exit(Effect.forEach(randomWrites(data, 3000, 14), write, { discard: true }))
      yield* Fiber.await(atServer.fiber)
      expectSameBytes(atServer.bytes(), data.subarray(0, 54_321))
    }))

  it.scoped("flipByte flips exactly the byte at that stream offset", () =>
    Effect.gen(function*() {
      const data = randomBytes(64 * 1024, 15)
      for (const [flipByte, mask] of [[12_345, 0x01], [{ offset: 40_000, mask: 0xa5 }, 0xa5]] as const) {
        const { chunks } = yield* transfer({ clientToServer: { flipByte, split: true } }, data, 3000)
        const received = concatBytes(chunks)
        const offset = typeof flipByte === "number" ? flipByte : flipByte.offset
        expect(received.length).toBe(data.length)
        const differences = received.reduce<Array<number>>((at, byte, i) => (byte === data[i] ? at : [...at, i]), [])
        expect(differences).toEqual([offset])
        expect((received[offset] ?? 0) ^ (data[offset] ?? 0)).toBe(mask)
      }
    }))

  it.scoped("tap sees every byte that crosses, in order", () =>
    Effect.gen(function*() {
      const tapped: Array<Uint8Array> = []
      const data = randomBytes(100_000, 16)
      const { chunks } = yield* transfer(
        { clientToServer: { tap: (bytes) => void tapped.push(bytes), split: true, coalesce: true } },
        data,
        5000
      )
      expectSameBytes(concatBytes(tapped), data)
      expectSameBytes(concatBytes(chunks), data)
      // What the tap keeps is its own copy: a receiver decrypting in place cannot rewrite history.
      chunks[0]?.fill(0)
      expectSameBytes(concatBytes(tapped), data)
    }))

  it.scoped("transform can rewrite and drop chunks", () =>
    Effect.gen(function*() {
      const [client, server] = yield* MemorySocket.makePair({
        clientToServer: {
          transform: (chunk) => {
            const value = new TextDecoder().decode(chunk)
            return value === "drop me" ? undefined : text(value.toUpperCase())
          }
        }
      })
      const atServer = yield* startReceiver(server)
      yield* Effect.forkScoped(client.run(() => {}))
      yield* Effect.scoped(Effect.flatMap(client.writer, (write) =>
        Effect.forEach(["hello ", "drop me", "world"], (value) => write(value), { discard: true })))
      yield* Fiber.join(atServer.fiber)
      expect(new TextDecoder().decode(atServer.bytes())).toBe("HELLO WORLD")
    }))

  it.scoped("cut drops what is in flight, fails both runs with 1006 and later writes", () =>
    Effect.gen(function*() {
      const [client, server] = yield* MemorySocket.makePair({ clientToServer: { delay: "1 second" } })
      const atServer = yield* startReceiver(server)
      const atClient = yield* startReceiver(client)
      const write = yield* client.writer
      yield* write(text("never arrives"))
      yield* MemorySocket.cut(server)
      yield* TestClock.adjust("2 seconds")
      for (const exit of [yield* Fiber.await(atServer.fiber), yield* Fiber.await(atClient.fiber)]) {
        const error = failureOf(exit)
        expect(Option.isSome(error) && Socket.SocketCloseError.is(error.value) && error.value.code === 1006).toBe(true)
      }
      expect(atServer.chunks).toEqual([])
      expectSocketError(yield* Effect.exit(write(text("x"))))
    }))

  it.scoped("closing the pair's scope fails writes still waiting for run", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const [client] = yield* Scope.extend(MemorySocket.makePair(), scope)
      const write = yield* Scope.extend(client.writer, scope)
      const waiting = yield* Effect.fork(write(text("nobody runs")))
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expectSocketError(yield* Fiber.await(waiting))
    }))

  it.scoped("writes fail once the peer has closed, and a closed side cannot run again", () =>
    Effect.gen(function*() {
      const [client, server] = yield* MemorySocket.makePair()
      const serverRun = yield* Effect.fork(server.run(() => {}))
      yield* Effect.forkScoped(client.run(() => {}))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(serverRun)
      const write = yield* client.writer
      expectSocketError(yield* Effect.exit(write(text("anyone there?"))))
      const again = failureOf(yield* Effect.exit(server.run(() => {})))
      expect(Option.isSome(again) && Socket.SocketCloseError.is(again.value)).toBe(true)
    }))

  it.scoped("back-pressure: writes wait above the high-water mark until the peer reads", () =>
    Effect.gen(function*() {
      const [client, server] = yield* MemorySocket.makePair({ highWaterMark: 1000 })
      yield* Effect.forkScoped(client.run(() => {}))
      const write = yield* client.writer
      yield* write(new Uint8Array(1500))
      const blocked = yield* Effect.fork(write(new Uint8Array(10)))
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(blocked))).toBe(true)
      const atServer = yield* startReceiver(server)
      yield* Fiber.join(blocked)
      yield* atServer.waitFor(1510)
    }))

  it.effect("cut dies for a socket that is not from makePair", () =>
    Effect.gen(function*() {
      // makeNet connects lazily, so this opens nothing.
      const foreign = yield* NodeSocket.makeNet({ port: 1, host: "127.0.0.1" })
      const exit = yield* Effect.exit(MemorySocket.cut(foreign))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    }))
})

// ---------------------------------------------------------------------------------------------
// The transport below Framed (src/transport/Transport.ts): one suite, every implementation.

/** Two connected raw `net.Socket`s on 127.0.0.1, each end as `connect` and `serve` drive it. */
const netConnections = Effect.gen(function*() {
  const accepted = yield* Deferred.make<Net.Socket>()
  const server = Net.createServer({ noDelay: true }, (conn) => {
    conn.on("error", () => {})
    Deferred.unsafeDone(accepted, Exit.succeed(conn))
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
    () => Effect.sync(() => server.close())
  )
  const address = server.address()
  if (address === null || typeof address === "string") return yield* Effect.dieMessage("expected a TCP address")
  const client = yield* Effect.acquireRelease(
    Effect.async<Net.Socket>((resume) => {
      const conn = Net.createConnection({ host: "127.0.0.1", port: address.port, noDelay: true })
      conn.on("error", () => {})
      conn.once("connect", () => resume(Effect.succeed(conn)))
    }),
    (conn) => Effect.sync(() => conn.destroy())
  )
  const serverConn = yield* Deferred.await(accepted)
  yield* Effect.addFinalizer(() => Effect.sync(() => serverConn.destroy()))
  return { client, server: serverConn }
})

/**
 * Counts what reaches a raw connection once someone reads it: listening for data at once would start
 * the stream, and a side the test does not read must stay paused.
 */
const countData = (conn: Net.Socket) => {
  let n = 0
  conn.once("resume", () => conn.on("data", () => n++))
  return () => n
}

framedTransportSuite({
  name: "raw net.Socket over loopback TCP (the live path)",
  makePair: () =>
    Effect.gen(function*() {
      const { client, server } = yield* netConnections
      const deliveries = countData(server)
      return {
        client: yield* netSocket(client),
        server: yield* netSocket(server),
        reset: Effect.sync(() => void server.resetAndDestroy()),
        deliveries
      }
    })
})

framedTransportSuite({
  name: "@effect/platform Socket adapter over the in-memory pair",
  makePair: (options) =>
    Effect.gen(function*() {
      let writes = 0
      const [client, server] = yield* MemorySocket.makePair({
        ...(options?.peerBuffer === undefined ? {} : { highWaterMark: options.peerBuffer }),
        clientToServer: { tap: () => void writes++ }
      })
      return { client, server, reset: MemorySocket.cut(server), deliveries: () => writes }
    })
})

framedTransportSuite({
  name: "@effect/platform Socket adapter over the platform's TCP socket",
  makePair: () =>
    Effect.gen(function*() {
      const { client, server } = yield* netConnections
      const deliveries = countData(server)
      return {
        client: yield* NodeSocket.fromDuplex(Effect.succeed(client)),
        server: yield* NodeSocket.fromDuplex(Effect.succeed(server)),
        reset: Effect.sync(() => void server.resetAndDestroy()),
        deliveries
      }
    })
})

describe("raw net transport: errors", () => {
  it.scopedLive("a connection that failed before the transport took it reads as SocketError Read", () =>
    Effect.gen(function*() {
      const { client } = yield* netConnections
      client.destroy(new Error("boom"))
      yield* Effect.sleep("20 millis")
      const framed = yield* makeFramed(yield* netSocket(client), { maxFrameSize: 1024 })
      const end = yield* Effect.flip(framed.readFailure)
      expect(end._tag).toBe("SocketError")
      if (end._tag === "SocketError") expect(end.error.reason).toBe("Read")
      yield* framed.endWrite
    }))

  it.scopedLive("a socket destroyed with an error while open ends reading with SocketError Read", () =>
    Effect.gen(function*() {
      const { client } = yield* netConnections
      const framed = yield* makeFramed(yield* netSocket(client), { maxFrameSize: 1024 })
      client.destroy(new Error("boom"))
      const end = yield* Effect.flip(framed.readFailure)
      expect(end).toMatchObject({ _tag: "SocketError", error: { reason: "Read" } })
      yield* framed.readEnded
    }))
})
