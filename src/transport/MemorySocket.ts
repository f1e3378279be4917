/**
 * An in-memory connected pair of `@effect/platform` sockets, with seeded fault injection, for tests.
 *
 * It imitates `@effect/platform-node`'s TCP socket (`NodeSocket.fromDuplex`, as used by `makeNet` and
 * `NodeSocketServer`) so that code tested here behaves the same over loopback:
 *
 * - `run` delivers chunks synchronously to the handler, forks a returned Effect into a `FiberSet`, and
 *   fails with the first handler failure. Writes wait until this side's own `run` has opened, because
 *   NodeSocket only connects inside `run` and latches writes until then.
 * - Closing a writer's scope ends our direction: the peer gets everything already written, then its
 *   `run` completes. Like a `net.Socket` with `allowHalfOpen: false`, a side that sees end-of-stream
 *   ends its own direction too, so both `run`s complete.
 * - A `CloseEvent` is `socket.destroy()`: our own `run` fails (code 1000: `SocketCloseError`, above:
 *   `SocketGenericError` "Read", exactly as NodeSocket reports it), while the peer only sees a FIN,
 *   i.e. its `run` completes once it has received what was written before.
 * - When `run` ends for any reason the side is closed (NodeSocket's `destroySoon`): the peer gets
 *   end-of-stream after the bytes already written.
 *
 * Deliberate differences, because a test that hangs says less than one that fails:
 * - A write on a side that is closed, ended, cut, or whose peer has closed fails with a
 *   `SocketGenericError` "Write". NodeSocket instead leaves such a write waiting forever on its latch
 *   once its `run` has ended.
 * - A cut (`cutAfter`, {@link cut}, or closing the pair's scope) fails both `run`s with
 *   `SocketCloseError` code 1006. Over TCP a reset shows up as `SocketGenericError` "Read"
 *   (ECONNRESET) on the receiving side; callers should treat any `SocketError` as a cut.
 */
import * as Socket from "@effect/platform/Socket"
import { Chunk, Deferred, Duration, Effect, Exit, FiberSet, Queue, Scope } from "effect"
import { concatBytes, makeRandom } from "../internal/bytes.js"

/** Faults applied to the bytes travelling in one direction. */
export interface DirectionFaults {
  /**
   * Re-chunk deliveries at seeded random boundaries; a quarter of the pieces are a single byte.
   * `maxChunk` caps the piece size.
   */
  readonly split?: boolean | { readonly maxChunk: number } | undefined
  /**
   * Merge everything written since the previous delivery into one delivery. How much gets merged
   * depends on scheduling (a writer that writes in a loop without yielding is merged), not on the seed.
   */
  readonly coalesce?: boolean | undefined
  /** Sleep on Effect's `Clock` before each delivery, so `TestClock` controls it. */
  readonly delay?: Duration.DurationInput | undefined
  /**
   * After exactly this many bytes have entered the wire, cut the connection. The receiver gets those
   * bytes, then its `run` fails with `SocketCloseError` 1006; the sender's `run` fails the same way
   * at once, and every later write on either side fails.
   */
  readonly cutAfter?: number | undefined
  /** XOR the byte at this absolute stream offset with `mask` (default 0x01). */
  readonly flipByte?: number | { readonly offset: number; readonly mask?: number | undefined } | undefined
  /**
   * Called synchronously at write time with a copy of the bytes that enter the wire (after
   * `transform`, `flipByte` and `cutAfter`), whatever chunking or delay follows.
   */
  readonly tap?: ((bytes: Uint8Array) => void) | undefined
  /**
   * Man in the middle: sees each written chunk (a private copy) and returns what goes on the wire, or
   * `undefined` to drop it. Stream offsets for `flipByte` and `cutAfter` count its output.
   */
  readonly transform?: ((chunk: Uint8Array) => Uint8Array | undefined) | undefined
}

export interface FaultOptions {
  /** Seeds the random chunk boundaries, so a failing run can be replayed. Default: a fixed seed. */
  readonly seed?: number | undefined
  /**
   * Bytes that may wait undelivered in one direction before writes wait (TCP's socket buffers).
   * Default 1 MiB.
   */
  readonly highWaterMark?: number | undefined
  readonly clientToServer?: DirectionFaults | undefined
  readonly serverToClient?: DirectionFaults | undefined
}

type Item = Uint8Array | "end" | "cut"

interface Direction {
  readonly queue: Queue.Queue<Item>
  readonly faults: DirectionFaults
  readonly delay: Duration.Duration | undefined
  readonly maxChunk: number | undefined
  readonly random: () => number
  /** Closed while `buffered` is at the high-water mark; writers wait on it. */
  readonly drain: Effect.Latch
  /** Bytes that entered the wire (after `transform`): the offsets `flipByte` and `cutAfter` use. */
  written: number
  buffered: number
  /** The sender ended this direction ("end" is queued). */
  ended: boolean
  receiverClosed: boolean
  /** A cut that drops whatever is still queued. */
  cutNow: boolean
}

interface RunControl {
  readonly succeed: () => void
  readonly fail: (error: Socket.SocketError) => void
}

interface Endpoint {
  readonly connection: Connection
  readonly incoming: Direction
  readonly outgoing: Direction
  /** Opens when `run` opens (as NodeSocket's latch does), and for good once the side is closed or cut. */
  readonly opened: Effect.Latch
  state: "idle" | "open" | "closed"
  control: RunControl | undefined
}

interface Connection {
  readonly highWaterMark: number
  readonly endpoints: Array<Endpoint>
  cut: boolean
}

const DEFAULT_SEED = 0x5eed_c0de
const DEFAULT_HIGH_WATER_MARK = 1024 * 1024
const CUT_CODE = 1006

const connections = new WeakMap<Socket.Socket, Connection>()
const encoder = new TextEncoder()


const writeError = (message: string): Socket.SocketError =>
  new Socket.SocketGenericError({ reason: "Write", cause: new Error(message) })

const cutError = (): Socket.SocketError => new Socket.SocketCloseError({ reason: "Close", code: CUT_CODE })

const makeDirection = (faults: DirectionFaults | undefined, seed: number): Effect.Effect<Direction> =>
  Effect.map(Queue.unbounded<Item>(), (queue) => {
    const f = faults ?? {}
    const delay = f.delay === undefined ? undefined : Duration.decode(f.delay)
    return {
      queue,
      faults: f,
      delay: delay === undefined || Duration.toMillis(delay) <= 0 ? undefined : delay,
      maxChunk: typeof f.split === "object" ? Math.max(1, Math.floor(f.split.maxChunk)) : undefined,
      random: makeRandom(seed),
      drain: Effect.unsafeMakeLatch(true),
      written: 0,
      buffered: 0,
      ended: false,
      receiverClosed: false,
      cutNow: false
    }
  })

/**
 * Cuts both directions. `keep` is the direction whose queued bytes are still delivered before the
 * cut (for `cutAfter`: exactly n bytes must arrive); everything else in flight is dropped, as a reset
 * drops unread data.
 */
const cutConnection = (connection: Connection, keep: Direction | undefined): void => {
  if (connection.cut) return
  connection.cut = true
  for (const endpoint of connection.endpoints) {
    const direction = endpoint.incoming
    if (direction !== keep) direction.cutNow = true
    // Also wakes a pump blocked on an empty queue; a side whose run has not started fails on start.
    Queue.unsafeOffer(direction.queue, "cut")
    direction.drain.unsafeOpen()
    endpoint.opened.unsafeOpen()
  }
}

/** What NodeSocket's `destroySoon` amounts to for the peer: what we wrote, then end-of-stream. */
const closeEndpoint = (endpoint: Endpoint): void => {
  if (endpoint.state === "closed") return
  endpoint.state = "closed"
  endpoint.control = undefined
  endpoint.opened.unsafeOpen()
  const outgoing = endpoint.outgoing
  if (!outgoing.ended && !endpoint.connection.cut) {
    outgoing.ended = true
    Queue.unsafeOffer(outgoing.queue, "end")
  }
  // Nobody will drain our incoming queue any more: the peer's blocked writers must wake and fail.
  const incoming = endpoint.incoming
  incoming.receiverClosed = true
  incoming.buffered = 0
  incoming.drain.unsafeOpen()
}

const endWriting = (endpoint: Endpoint): void => {
  const outgoing = endpoint.outgoing
  // NodeSocket ends the socket only if `run` has opened it; otherwise closing a writer does nothing.
  if (endpoint.state !== "open" || outgoing.ended || endpoint.connection.cut) return
  outgoing.ended = true
  Queue.unsafeOffer(outgoing.queue, "end")
}

const refusal = (endpoint: Endpoint): Socket.SocketError | undefined => {
  if (endpoint.connection.cut) return writeError("ECONNRESET: the connection was cut")
  if (endpoint.state === "closed") return writeError("the socket is closed")
  if (endpoint.outgoing.ended) return writeError("write after end")
  if (endpoint.outgoing.receiverClosed) return writeError("EPIPE: the peer closed the connection")
  return undefined
}

/** Puts one write on the wire, applying this direction's byte-level faults. */
const send = (endpoint: Endpoint, chunk: Uint8Array | string): void => {
  const direction = endpoint.outgoing
  const faults = direction.faults
  // Copy: the writer may reuse its buffer as soon as the write resolves. (`new Uint8Array(x)` copies,
  // unlike `Buffer#slice`.)
  let bytes: Uint8Array | undefined = typeof chunk === "string" ? encoder.encode(chunk) : new Uint8Array(chunk)
  if (faults.transform !== undefined) {
    bytes = faults.transform(bytes)
    if (bytes === undefined) return
  }
  let cutting = false
  if (faults.cutAfter !== undefined && direction.written + bytes.length >= faults.cutAfter) {
    bytes = bytes.subarray(0, Math.max(0, faults.cutAfter - direction.written))
    cutting = true
  }
  if (faults.flipByte !== undefined) {
    const flip = typeof faults.flipByte === "number" ? { offset: faults.flipByte, mask: undefined } : faults.flipByte
    const at = flip.offset - direction.written
    if (at >= 0 && at < bytes.length) bytes[at] = (bytes[at] ?? 0) ^ (flip.mask ?? 0x01)
  }
  direction.written += bytes.length
  if (bytes.length > 0) {
    faults.tap?.(new Uint8Array(bytes))
    direction.buffered += bytes.length
    Queue.unsafeOffer(direction.queue, bytes)
  }
  if (cutting) cutConnection(endpoint.connection, direction)
}

const writeNow = (endpoint: Endpoint, chunk: Uint8Array | string | Socket.CloseEvent): Effect.Effect<void, Socket.SocketError> => {
  const refused = refusal(endpoint)
  if (refused !== undefined) return Effect.fail(refused)
  if (Socket.isCloseEvent(chunk)) {
    // NodeSocket: `conn.destroy(code > 1000 ? new Error(...) : undefined)`; the error (or the clean
    // close) reaches our own run, while the peer sees a plain FIN.
    endpoint.control?.fail(
      chunk.code > 1000
        ? new Socket.SocketGenericError({ reason: "Read", cause: new Error(`closed with code ${chunk.code}`) })
        : new Socket.SocketCloseError({ reason: "Close", code: 1000 })
    )
    closeEndpoint(endpoint)
    return Effect.void
  }
  const direction = endpoint.outgoing
  if (direction.buffered >= endpoint.connection.highWaterMark) {
    direction.drain.unsafeClose()
    return Effect.zipRight(direction.drain.await, Effect.suspend(() => writeNow(endpoint, chunk)))
  }
  send(endpoint, chunk)
  return Effect.void
}

const splitInto = (pieces: Array<Uint8Array>, bytes: Uint8Array, direction: Direction): void => {
  if (direction.faults.split === undefined || direction.faults.split === false) {
    pieces.push(bytes)
    return
  }
  let offset = 0
  while (offset < bytes.length) {
    const cap = Math.min(bytes.length - offset, direction.maxChunk ?? Number.MAX_SAFE_INTEGER)
    // A quarter of single bytes, so that parsers meet a header split at every position; otherwise
    // uniform over what is left, which keeps the number of pieces near log(size) for bulk transfers.
    const size = direction.random() < 0.25 ? 1 : 1 + Math.floor(direction.random() * cap)
    pieces.push(bytes.subarray(offset, offset + size))
    offset += size
  }
}

/** Moves bytes from the incoming queue into the handler, for as long as this side's `run` lasts. */
const pump = (endpoint: Endpoint, deliver: (bytes: Uint8Array) => void): Effect.Effect<void> =>
  Effect.gen(function*() {
    const direction = endpoint.incoming
    const highWaterMark = endpoint.connection.highWaterMark
    while (true) {
      let items = yield* Queue.takeBetween(direction.queue, 1, Number.MAX_SAFE_INTEGER)
      if (direction.faults.coalesce === true) {
        // Let writers that were woken with us add to the batch before it is merged.
        yield* Effect.yieldNow()
        items = Chunk.appendAll(items, yield* Queue.takeAll(direction.queue))
      }
      if (direction.cutNow) {
        endpoint.control?.fail(cutError())
        return
      }
      const pieces: Array<Uint8Array> = []
      const merged: Array<Uint8Array> = []
      let terminal: "end" | "cut" | undefined
      for (const item of items) {
        if (typeof item === "string") {
          terminal = item
          break
        }
        if (direction.faults.coalesce === true) merged.push(item)
        else splitInto(pieces, item, direction)
      }
      if (merged.length > 0) splitInto(pieces, concatBytes(merged), direction)
      for (const piece of pieces) {
        if (direction.delay !== undefined) yield* Effect.sleep(direction.delay)
        if (direction.cutNow) break
        if (endpoint.state !== "open") return
        direction.buffered -= piece.length
        if (direction.buffered < highWaterMark) direction.drain.unsafeOpen()
        deliver(piece)
      }
      if (direction.cutNow || terminal === "cut") {
        endpoint.control?.fail(cutError())
        return
      }
      if (terminal === "end") {
        endpoint.control?.succeed()
        return
      }
    }
  })

const makeSocket = (endpoint: Endpoint): Socket.Socket => {
  const run = <_, E = never, R = never>(
    handler: (_: Uint8Array) => Effect.Effect<_, E, R> | void,
    options?: { readonly onOpen?: Effect.Effect<void> | undefined }
  ): Effect.Effect<void, Socket.SocketError | E, R> =>
    Effect.scopedWith((scope) =>
      Effect.gen(function*() {
        const fiberSet = yield* FiberSet.make<unknown, E | Socket.SocketError>().pipe(Scope.extend(scope))
        const runFork = yield* FiberSet.runtime(fiberSet)<R>()
        // Checked and set with no yield in between, so two concurrent runs cannot both open.
        if (endpoint.state === "open") {
          return yield* Effect.fail(
            new Socket.SocketGenericError({ reason: "Open", cause: new Error("run is already active on this socket") })
          )
        }
        // A finished connection cannot be reopened, as with an accepted NodeSocket whose conn is closed.
        if (endpoint.state === "closed") {
          return yield* Effect.fail(new Socket.SocketCloseError({ reason: "Close", code: 1000 }))
        }
        endpoint.state = "open"
        endpoint.control = {
          succeed: () => Deferred.unsafeDone(fiberSet.deferred, Exit.void),
          fail: (error) => Deferred.unsafeDone(fiberSet.deferred, Exit.fail(error))
        }
        yield* Scope.addFinalizer(scope, Effect.sync(() => closeEndpoint(endpoint)))
        const deliver = (bytes: Uint8Array): void => {
          const result = handler(bytes)
          if (Effect.isEffect(result)) runFork(result)
        }
        yield* FiberSet.run(fiberSet, pump(endpoint, deliver))
        endpoint.opened.unsafeOpen()
        if (options?.onOpen !== undefined) yield* options.onOpen
        return yield* FiberSet.join(fiberSet)
      })
    ).pipe(Effect.interruptible)

  const write = (chunk: Uint8Array | string | Socket.CloseEvent): Effect.Effect<void, Socket.SocketError> =>
    endpoint.opened.whenOpen(Effect.suspend(() => writeNow(endpoint, chunk)))

  return Socket.Socket.of({
    [Socket.TypeId]: Socket.TypeId,
    run,
    runRaw: run,
    writer: Effect.acquireRelease(Effect.succeed(write), () => Effect.sync(() => endWriting(endpoint)))
  })
}

/**
 * A connected pair `[client, server]` of in-memory sockets. Closing the scope cuts the connection, so
 * any `run` still going fails with code 1006 and any waiting write fails: nothing is left hanging.
 */
export const makePair = (
  options?: FaultOptions
): Effect.Effect<readonly [Socket.Socket, Socket.Socket], never, Scope.Scope> =>
  Effect.gen(function*() {
    const seed = options?.seed ?? DEFAULT_SEED
    // Separate streams per direction, so traffic one way does not shift the boundaries the other way.
    const clientToServer = yield* makeDirection(options?.clientToServer, seed)
    const serverToClient = yield* makeDirection(options?.serverToClient, seed ^ 0x9e3779b9)
    const connection: Connection = {
      highWaterMark: Math.max(1, options?.highWaterMark ?? DEFAULT_HIGH_WATER_MARK),
      endpoints: [],
      cut: false
    }
    const makeEndpoint = (incoming: Direction, outgoing: Direction): Endpoint => ({
      connection,
      incoming,
      outgoing,
      opened: Effect.unsafeMakeLatch(false),
      state: "idle",
      control: undefined
    })
    const clientEndpoint = makeEndpoint(serverToClient, clientToServer)
    const serverEndpoint = makeEndpoint(clientToServer, serverToClient)
    connection.endpoints.push(clientEndpoint, serverEndpoint)
    const client = makeSocket(clientEndpoint)
    const server = makeSocket(serverEndpoint)
    connections.set(client, connection)
    connections.set(server, connection)
    yield* Effect.addFinalizer(() => Effect.sync(() => cutConnection(connection, undefined)))
    return [client, server] as const
  })

/**
 * Cuts the connection a socket from {@link makePair} belongs to, as a reset would: bytes in flight
 * either way are dropped, both `run`s fail with `SocketCloseError` 1006, and every write fails.
 * Dies for a socket that does not come from {@link makePair}.
 */
export const cut = (socket: Socket.Socket): Effect.Effect<void> =>
  Effect.suspend(() => {
    const connection = connections.get(socket)
    return connection === undefined
      ? Effect.dieMessage("MemorySocket.cut: the socket does not come from MemorySocket.makePair")
      : Effect.sync(() => cutConnection(connection, undefined))
  })
