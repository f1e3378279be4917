/**
 * The byte pipe below `Framed` (docs/architecture.md, "Transport"): a connection that delivers
 * chunks to a callback and takes writes without waiting for them to be flushed.
 *
 * Two implementations:
 * - {@link fromNetSocket}, over a raw `node:net` `Socket`: the live TCP path of `connect` and `serve`.
 *   A batch is written corked (one `writev` for its pieces), and writing stops only when Node's
 *   buffer is full, until `'drain'`: no flush callback is awaited, no fiber runs per write
 *   (docs/performance.md, "The write path").
 * - {@link fromSocket}, adapting any `@effect/platform` `Socket.Socket` (the in-memory pair, a
 *   `SessionSocket`, a user's own transport). Its writes go through `socket.writer`, one at a time, on
 *   a fiber that runs only while there is something to write; `write` reports "full" while one is in
 *   flight, so that what is queued meanwhile goes out as one batch.
 *
 * Errors are reported as `@effect/platform` `SocketError`s with the reasons `NodeSocket` uses, so that
 * everything above (the handshake's and the session's mapping to `ConnectionClosed`, `NetErrors.ts`)
 * reads both paths alike: `Read` for an error event (a reset), `Close` for a close without an end.
 */
import * as Socket from "@effect/platform/Socket"
import { NodeSocket } from "@effect/platform-node"
import { Effect, Exit, Fiber, Runtime, Scope } from "effect"
import type * as Net from "node:net"

/** What a transport tells the layer above; each callback is called synchronously from the event. */
export interface TransportHandlers {
  /** A chunk of received bytes; the transport does not touch it again. */
  readonly onData: (chunk: Uint8Array) => void
  /** The read side ended: `undefined` at end of stream, else why. Called once, never after `stopReading`. */
  readonly onReadEnd: (error: Socket.SocketError | undefined) => void
  /** The buffer that made `write` answer false can take more. */
  readonly onDrain: () => void
  /** No write will go out any more (reset, closed, the peer ended with `allowHalfOpen: false`). Called once. */
  readonly onWriteClosed: () => void
}

export interface Transport {
  /** Starts reading and reporting events. Called once. */
  readonly start: (handlers: TransportHandlers) => void
  /**
   * Hands the pieces over, in order, as one batch; never waits. Answers whether the transport can take
   * more at once: false means its buffer is full, and `onDrain` follows when it is not.
   */
  readonly write: (pieces: ReadonlyArray<Uint8Array>) => boolean
  /** Bytes handed to `write` that the transport still holds (not yet given to the kernel). */
  readonly bufferedBytes: () => number
  /**
   * Ends our write side once everything written has gone out (the peer sees end of stream), then
   * calls `done` (at once when the write side is already over).
   */
  readonly end: (done: () => void) => void
  /** Stops delivering data; the read side counts as ended, with no `onReadEnd`. */
  readonly stopReading: () => void
  /**
   * Reads slowly (`true`) or at full speed again: the layer above holds more than it wants of what
   * arrived (PROTOCOL.md §10.1, read pacing). Reading never stops altogether, so that what the
   * application waits for (a reply, stream credit, a CLOSE) still arrives behind the rest.
   */
  readonly pace: (slow: boolean) => void
  /** Drops the connection now, whatever is buffered. */
  readonly destroy: () => void
}

/** Where a `Socket.Socket` built by {@link netSocket} keeps its raw connection. */
const NetConnection: unique symbol = Symbol.for("cvg-core/transport/NetConnection")

interface WithNetConnection {
  readonly [NetConnection]: Net.Socket
}

const hasNetConnection = (socket: Socket.Socket): socket is Socket.Socket & WithNetConnection =>
  NetConnection in socket

/**
 * A `Socket.Socket` over a connected `net.Socket` that `Framed` drives through {@link fromNetSocket}
 * instead of its `run`/`writer` (those still work, through the platform socket it wraps, for anyone
 * else given the socket, but one connection must not be read both ways at once). This is how the TCP
 * path reaches the handshake, which takes its socket from the context, without a second kind of
 * service there. A class, so that a connection costs one small object rather than a prototype of its
 * own (docs/resources.md, "Memory of an idle session").
 */
class NetSocketHandle implements Socket.Socket {
  readonly [Socket.TypeId]: Socket.TypeId = Socket.TypeId
  readonly [NetConnection]: Net.Socket
  /** The platform's socket over the same connection, made when someone asks for `run` or `writer`. */
  private platform: Socket.Socket | undefined = undefined

  constructor(conn: Net.Socket) {
    this[NetConnection] = conn
  }

  private get platformSocket(): Effect.Effect<Socket.Socket> {
    return Effect.suspend(() =>
      this.platform !== undefined
        ? Effect.succeed(this.platform)
        : Effect.map(NodeSocket.fromDuplex(Effect.succeed(this[NetConnection])), (socket) => (this.platform ??= socket))
    )
  }

  get run(): Socket.Socket["run"] {
    return (handler, options) => Effect.flatMap(this.platformSocket, (socket) => socket.run(handler, options))
  }

  get runRaw(): Socket.Socket["runRaw"] {
    return (handler, options) => Effect.flatMap(this.platformSocket, (socket) => socket.runRaw(handler, options))
  }

  get writer(): Socket.Socket["writer"] {
    return Effect.flatMap(this.platformSocket, (socket) => socket.writer)
  }
}

/**
 * The socket for a connected `net.Socket`; the platform's own socket over it is built only if `run`
 * or `writer` is used (the session never does).
 */
export const netSocket = (conn: Net.Socket): Effect.Effect<Socket.Socket> => Effect.sync(() => new NetSocketHandle(conn))

/** The live path for a socket from {@link netSocket}, the adapter for any other. */
export const of = (socket: Socket.Socket): Effect.Effect<Transport, never, Scope.Scope> =>
  hasNetConnection(socket) ? fromNetSocket(socket[NetConnection]) : fromSocket(socket)

/** Bytes one connection may deliver before it lets the others have the event loop (see `onData` below). */
const READ_TURN_BYTES = 64 * 1024
/**
 * While paced (`pace(true)`), one read (at most 64 KiB, libuv's read size) per this many
 * milliseconds: about 640 KiB/s, slow enough that a peer filling an inbox nobody takes from costs
 * little, fast enough that a reply behind what it sent arrives in seconds (docs/resources.md).
 */
const PACED_READ_MS = 100

/**
 * A raw `net.Socket`. Scope release ends it gracefully (`destroySoon`: what was written still goes
 * out) unless it was destroyed or failed; a connection whose writes were abandoned is destroyed by
 * the layer above (`destroy`), since a peer that does not read would otherwise hold it open.
 */
export const fromNetSocket = (conn: Net.Socket): Effect.Effect<Transport, never, Scope.Scope> =>
  Effect.flatMap(Effect.scope, (scope) => {
    const transport = new NetTransport(conn)
    return Effect.as(Scope.addFinalizer(scope, Effect.sync(() => transport.release())), transport)
  })

/**
 * The state of a raw `net.Socket` transport. A class, so that an idle connection keeps only its
 * event listeners as closures (docs/resources.md, "Memory of an idle session").
 */
class NetTransport implements Transport {
  private handlers: TransportHandlers | undefined = undefined
  private readOpen = true
  private writeOpen = true
  /** `stopReading` was called: what arrives is read and dropped, and the read side's end is not told. */
  private dropping = false
  /** An error raised before `start` (a reset right after connecting), reported by `start`. */
  private early: Error | undefined = undefined
  private earlyEnd = false
  private earlyClose: boolean | undefined = undefined
  // Fairness between connections (PROTOCOL.md §10.1, docs/resources.md): libuv reads a readable
  // socket up to 32 times in one poll, 64 KiB each, and the frames they complete are opened right
  // away, so one busy peer could hold the event loop for megabytes while every other connection's
  // request waits. After READ_TURN_BYTES the socket is paused until the next turn of the loop:
  // each connection gets its share, and what the kernel holds meanwhile stays in the kernel.
  private sinceYield = 0
  private yielding = false
  /** Paced by the layer above: each read is followed by a pause of `PACED_READ_MS`. */
  private slow = false
  private pacedTimer: ReturnType<typeof setTimeout> | undefined = undefined

  constructor(private readonly conn: Net.Socket) {
    // Listening from the start: an error with no listener would throw out of the event loop.
    conn.on("error", this.onError)
    conn.on("end", this.onEnd)
    conn.on("close", this.onClose)
    conn.on("drain", this.onDrain)
  }

  private readEnded(error: Socket.SocketError | undefined): void {
    if (!this.readOpen) return
    this.readOpen = false
    this.conn.off("data", this.onData)
    if (!this.dropping) this.handlers?.onReadEnd(error)
  }

  private writeClosed(): void {
    if (!this.writeOpen) return
    this.writeOpen = false
    this.handlers?.onWriteClosed()
  }

  private readonly resumeReading = (): void => {
    this.yielding = false
    this.pacedTimer = undefined
    this.sinceYield = 0
    // A socket paused for its turn goes on being read after `stopReading` too, to drop what arrives.
    if ((this.readOpen || this.dropping) && !this.conn.destroyed) this.conn.resume()
  }

  // The listeners are fields: `net.Socket` calls them unbound.
  private readonly onData = (chunk: Buffer): void => {
    if (!this.dropping) this.handlers?.onData(chunk)
    this.sinceYield += chunk.length
    // `onData` above may have turned pacing on. What is dropped is read at full speed.
    const paced = this.slow && !this.dropping
    if ((paced || this.sinceYield >= READ_TURN_BYTES) && !this.yielding && (this.readOpen || this.dropping)) {
      this.yielding = true
      this.conn.pause()
      if (paced) this.pacedTimer = setTimeout(this.resumeReading, PACED_READ_MS)
      else setImmediate(this.resumeReading)
    }
  }

  private readonly onError = (cause: Error): void => {
    if (this.handlers === undefined) {
      this.early ??= cause
      return
    }
    this.readEnded(new Socket.SocketGenericError({ reason: "Read", cause }))
    this.writeClosed()
  }

  private readonly onEnd = (): void => {
    if (this.handlers === undefined) {
      this.earlyEnd = true
      return
    }
    this.readEnded(undefined)
    // With `allowHalfOpen: false` (Node's default, and `NodeSocket`'s) Node ends our side too, and
    // a later write would fail with EPIPE: the write side is over as well.
    if (!this.conn.allowHalfOpen) this.writeClosed()
  }

  private readonly onClose = (hadError: boolean): void => {
    if (this.handlers === undefined) {
      this.earlyClose = hadError
      return
    }
    this.readEnded(new Socket.SocketCloseError({ reason: "Close", code: hadError ? 1006 : 1000 }))
    this.writeClosed()
  }

  private readonly onDrain = (): void => {
    if (this.writeOpen) this.handlers?.onDrain()
  }

  /** The scope's release. */
  release(): void {
    const conn = this.conn
    conn.off("data", this.onData)
    conn.off("end", this.onEnd)
    conn.off("close", this.onClose)
    conn.off("drain", this.onDrain)
    if (this.pacedTimer !== undefined) clearTimeout(this.pacedTimer)
    // The error listener stays: a late error on a closing socket must not crash the process.
    if (!conn.destroyed) conn.destroySoon()
  }

  start(next: TransportHandlers): void {
    const conn = this.conn
    this.handlers = next
    if (this.early !== undefined) return this.onError(this.early)
    if (this.earlyClose !== undefined) return this.onClose(this.earlyClose)
    // Failed before this transport listened (between connecting and the handshake's start).
    if (conn.errored !== null) return this.onError(conn.errored)
    if (conn.destroyed) return this.onClose(false)
    conn.on("data", this.onData)
    if (this.earlyEnd) this.onEnd()
  }

  write(pieces: ReadonlyArray<Uint8Array>): boolean {
    const conn = this.conn
    if (!this.writeOpen || conn.destroyed || conn.writableEnded) return true
    if (pieces.length === 1) return conn.write(pieces[0]!)
    // One `writev` for the batch instead of one system call per piece.
    conn.cork()
    for (const piece of pieces) conn.write(piece)
    conn.uncork()
    return !conn.writableNeedDrain
  }

  bufferedBytes(): number {
    return this.conn.writableLength
  }

  end(done: () => void): void {
    const conn = this.conn
    // Node sends the end of stream after what is buffered; nothing is left to wait for here.
    if (this.writeOpen && !conn.destroyed && !conn.writableEnded) conn.end()
    done()
  }

  stopReading(): void {
    // Still read, and drop what arrives: a socket closed with unread bytes in its receive buffer
    // sends a reset instead of an end of stream, and the reset can destroy, at the peer, the
    // alert we have just sent (Linux discards received bytes not yet read when a reset arrives).
    this.readOpen = false
    this.dropping = true
    this.pace(false)
  }

  pace(slow: boolean): void {
    if (this.slow === slow) return
    this.slow = slow
    if (slow || this.pacedTimer === undefined) return
    clearTimeout(this.pacedTimer)
    this.resumeReading()
  }

  destroy(): void {
    this.conn.destroy()
  }
}

/**
 * Any `@effect/platform` socket. Reading is one `socket.run` forked into the scope; writing is a fiber
 * started when something is written and ended when nothing is left, each piece through the
 * platform's `write` (which waits for its flush).
 */
export const fromSocket = (socket: Socket.Socket): Effect.Effect<Transport, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const runtime = yield* Effect.runtime<never>()
    const writerScope = yield* Scope.fork(scope, { _tag: "Sequential" })
    const write = yield* Scope.extend(socket.writer, writerScope)
    let handlers: TransportHandlers | undefined
    let pending: Array<Uint8Array> = []
    let pendingBytes = 0
    let inFlight = 0
    let writing = false
    let ending = false
    let ended = false
    /** Told once the platform writer's release (its end of stream) has run. */
    const endedWaiters: Array<() => void> = []
    let writeOpen = true
    let readOpen = true
    let writer: Fiber.RuntimeFiber<void> | undefined
    let reader: Fiber.RuntimeFiber<void> | undefined

    const writeClosed = () => {
      if (!writeOpen) return
      writeOpen = false
      pending = []
      pendingBytes = 0
      handlers?.onWriteClosed()
      for (const done of endedWaiters.splice(0)) done()
    }

    const endNow = (): Effect.Effect<void> => {
      ended = true
      return Effect.ensuring(
        Scope.close(writerScope, Exit.void),
        Effect.sync(() => {
          for (const done of endedWaiters.splice(0)) done()
        })
      )
    }

    const drain = (): Effect.Effect<void> =>
      Effect.gen(function*() {
        while (pending.length > 0 && writeOpen) {
          const batch = pending
          pending = []
          inFlight = pendingBytes
          pendingBytes = 0
          const exit = yield* Effect.exit(Effect.forEach(batch, write, { discard: true }))
          inFlight = 0
          if (Exit.isFailure(exit)) writeClosed()
        }
        writing = false
        writer = undefined
        if (ending && !ended) yield* endNow()
        if (writeOpen) handlers?.onDrain()
      }).pipe(Effect.onInterrupt(() =>
        Effect.sync(() => {
          writing = false
          writer = undefined
        })
      ))

    yield* Scope.addFinalizer(
      scope,
      Effect.suspend(() => {
        writeOpen = false
        const fibers = [writer, reader].filter((f): f is Fiber.RuntimeFiber<void> => f !== undefined)
        return Fiber.interruptAll(fibers)
      })
    )

    return {
      start: (next) => {
        handlers = next
        reader = Runtime.runFork(runtime)(
          socket.run((chunk) => {
            if (readOpen) handlers?.onData(chunk)
          }).pipe(
            Effect.exit,
            Effect.flatMap((exit) =>
              Effect.sync(() => {
                const wasOpen = readOpen
                readOpen = false
                if (wasOpen) {
                  const failure = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
                  handlers?.onReadEnd(failure)
                }
                // Once `run` has ended, a platform socket never completes another write (NodeSocket
                // waits on a latch that stays closed), so the write side ends here.
                writeClosed()
              })
            )
          )
        )
      },
      write: (pieces) => {
        if (!writeOpen || ending) return true
        for (const piece of pieces) {
          pending.push(piece)
          pendingBytes += piece.length
        }
        if (!writing) {
          writing = true
          const fiber = Runtime.runFork(runtime)(drain())
          if (writing) writer = fiber
        }
        // Full while a write is in flight: the layer above queues meanwhile and sends it all in one
        // batch at `onDrain`, as the writer fiber did before this layer existed.
        return false
      },
      bufferedBytes: () => pendingBytes + inFlight,
      end: (done) => {
        if (!writeOpen || ended) return done()
        endedWaiters.push(done)
        if (ending) return
        ending = true
        if (!writing) Runtime.runFork(runtime)(endNow())
      },
      stopReading: () => {
        // `run` goes on, dropping what arrives, until the scope closes: as for a `net.Socket`, a
        // socket that stops reading keeps unread bytes and its close becomes a reset, which can
        // destroy at the peer the alert just sent.
        readOpen = false
      },
      // A platform socket cannot be paused: its `run` delivers everything, and the byte budget
      // alone bounds what is held.
      pace: () => {},
      destroy: () => {
        // What is in flight is given up; the socket itself goes when the scope closes.
        writeClosed()
        if (writer !== undefined) Runtime.runFork(runtime)(Fiber.interrupt(writer))
      }
    }
  })
