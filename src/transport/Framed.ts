/**
 * A framed connection (PROTOCOL.md §2) over a `Transport` (src/transport/Transport.ts): the raw
 * `net.Socket` of `connect` and `serve`, or any `@effect/platform` `Socket` through the adapter.
 *
 * Reading: the transport's data callback decodes frames synchronously and hands each to the current
 * `FrameSink`, with no fiber per chunk (docs/performance.md). Until the session installs its own
 * dispatcher, frames go to a mailbox the handshake awaits, held to byte and frame budgets
 * (`ReadLimits`, PROTOCOL.md §10.4); frames that already arrived are then replayed into the session,
 * in order.
 *
 * Writing: frames are queued synchronously; everything queued until the event loop turns goes to
 * the transport as one batch, without waiting for it to be flushed. Writing pauses only while the
 * transport's buffer is full, until it drains (docs/performance.md, "The write path").
 */
import type * as Socket from "@effect/platform/Socket"
import { type Clock, Deferred, Effect, Exit, FiberId, Scope } from "effect"
import { ProtocolError } from "../errors.js"
import { type FrameDecoder, makeFrameDecoder } from "../wire/Frame.js"
import { bytesIn, bytesOut, count } from "../Observability.js"
import * as Transport from "./Transport.js"

/** How the reading side ended. */
export type ReadEnd =
  | { readonly _tag: "Eof" }
  | { readonly _tag: "SocketError"; readonly error: Socket.SocketError }
  | { readonly _tag: "ProtocolError"; readonly error: ProtocolError }

export interface FrameSink {
  readonly onFrame: (type: number, header: Uint8Array, body: Uint8Array) => void
  readonly onEnd: (end: ReadEnd) => void
}

export interface Framed {
  /** The next frame, for the handshake; only valid until `setSink` is called. */
  readonly nextFrame: Effect.Effect<Frame, ReadEnd>
  /**
   * Fails as soon as reading has ended with a protocol error (a frame over the limit, a mailbox over
   * its budget), or has ended at all with no frame left waiting (the peer is gone and said nothing
   * more), even while the handshake is busy elsewhere; never completes otherwise.
   */
  readonly readFailure: Effect.Effect<never, ReadEnd>
  /** Installs the sink; frames received but not yet pulled are delivered to it first, in order. */
  readonly setSink: (sink: FrameSink) => void
  /** Replaces the mailbox's budgets from the next frame on (PROTOCOL.md §10, "before authentication"). */
  readonly setReadLimits: (limits: ReadLimits) => void
  /** Bytes held by frames waiting in the mailbox, as `ReadLimits.maxWaitingBytes` counts them. */
  readonly waitingBytes: () => number
  /**
   * The first bytes received (at most 8), to tell a peer of another protocol (PROTOCOL.md §3); for
   * the handshake, so none once `setSink` is called.
   */
  readonly firstBytes: () => Uint8Array
  /** The sink copies what it keeps out of each frame, so split frames may share one buffer. */
  readonly reuseFrameBuffers: () => void
  /**
   * Queues bytes (a frame, or one piece of a frame); never blocks. Pieces go out in the order they
   * were queued, concatenated into one socket write per batch.
   */
  readonly enqueue: (frame: Uint8Array) => void
  /**
   * Ensures the writer runs and calls `hook` each time it takes a batch, before taking it: a layer
   * above that holds messages back (the secure channel's BATCH, PROTOCOL.md §7.3) frames them then,
   * into `enqueue`, so that everything ready by the time the socket can take it goes out together.
   */
  readonly enqueueLater: (hook: () => void) => void
  /** Bytes queued, plus those the transport holds that have not reached the kernel. */
  readonly pendingBytes: () => number
  /** Waits until queued bytes drop below the high-water mark. */
  readonly awaitWritable: Effect.Effect<void>
  /**
   * Since when (`Clock` milliseconds) the transport's buffer has been full without draining, or
   * undefined when it is not: the peer is not reading (PROTOCOL.md §10, stall timeout).
   */
  readonly writingSince: () => number | undefined
  /** Flushes the queue, then ends our write side (the peer sees end of stream). */
  readonly endWrite: Effect.Effect<void>
  /** Stops delivering frames (after a fatal error); what still arrives is read and dropped. */
  readonly stopReading: Effect.Effect<void>
  /** Reads the peer slowly, or at full speed again (`Transport.pace`, PROTOCOL.md §10.1). */
  readonly paceReading: (slow: boolean) => void
  /**
   * Gives up on everything queued and on what the transport still holds (a peer that stopped
   * reading): the connection is destroyed, waiting senders are released, and `endWrite` completes.
   */
  readonly abortWrites: Effect.Effect<void>
  /** Completes once the read side has ended (end of stream, error, or `stopReading`). */
  readonly readEnded: Effect.Effect<void>
}

/**
 * What the reading side accepts until a sink is installed (PROTOCOL.md §10.4): nothing is kept on the
 * peer's word beyond these. A frame over `maxFrameSize` is refused from its length alone
 * (`FrameTooLarge`); a frame that would exceed `maxWaitingFrames` or `maxWaitingBytes` ends reading
 * with `LimitExceeded`, drops what was waiting, and is not kept.
 */
export interface ReadLimits {
  readonly maxFrameSize: number
  readonly maxWaitingFrames: number
  /** Each waiting frame counts its wire size plus {@link FRAME_BOOKKEEPING}. */
  readonly maxWaitingBytes: number
}

export interface FramedOptions {
  /** Largest frame body accepted; the default limits are built from it. */
  readonly maxFrameSize: number
  /** The mailbox's budgets to start with. Default: frames up to `maxFrameSize`, 4 × that in waiting bytes. */
  readonly readLimits?: ReadLimits | undefined
  /** Budgets that replace `readLimits` as soon as the first frame has arrived (the client's, §10.4). */
  readonly afterFirstFrame?: ReadLimits | undefined
  /** Queue size above which `awaitWritable` waits. */
  readonly highWaterMark?: number
}

/** What a waiting frame costs beyond its bytes (the array slot and views), so empty frames are not free. */
export const FRAME_BOOKKEEPING = 64
/** How many first bytes `firstBytes` keeps. */
const FIRST_BYTES = 8

const DEFAULT_HIGH_WATER_MARK = 1024 * 1024
/** Pieces at least this large go to the socket without being merged (copied) into a batch. */
const DIRECT_WRITE_SIZE = 64 * 1024

export type Frame = readonly [type: number, header: Uint8Array, body: Uint8Array]

const isFrame = (item: Frame | ReadEnd): item is Frame => Array.isArray(item)

/**
 * Holds frames until a sink is installed, and lets the handshake pull them one at a time. A frame
 * handed straight to a waiting reader is not held; one that has to wait is copied out of the
 * socket's chunk (so that a small frame does not keep a large chunk alive) and counted against the
 * limits. Going over them ends reading at once: what was waiting is dropped and `overflow` is told.
 */
class Mailbox implements FrameSink {
  frames: Array<Frame> = []
  bytes = 0
  end: ReadEnd | undefined = undefined
  private waiter: ((frame: Frame | ReadEnd) => void) | undefined = undefined
  readonly failed = Deferred.unsafeMake<never, ReadEnd>(FiberId.none)

  constructor(public limits: ReadLimits, private readonly overflow: (error: ProtocolError) => void) {}

  onFrame(type: number, header: Uint8Array, body: Uint8Array): void {
    if (this.end !== undefined) return
    if (this.waiter !== undefined) {
      const resume = this.waiter
      this.waiter = undefined
      resume([type, header, body])
      return
    }
    const limits = this.limits
    const cost = header.length + body.length + FRAME_BOOKKEEPING
    const tooMany = this.frames.length + 1 > limits.maxWaitingFrames
    if (tooMany || this.bytes + cost > limits.maxWaitingBytes) {
      this.frames = []
      this.bytes = 0
      this.overflow(
        new ProtocolError({
          reason: "LimitExceeded",
          detail: tooMany
            ? `a frame arrived while ${limits.maxWaitingFrames} were already waiting to be read`
            : `frames waiting to be read would exceed ${limits.maxWaitingBytes} bytes`
        })
      )
      return
    }
    const copy = new Uint8Array(header.length + body.length)
    copy.set(header, 0)
    copy.set(body, header.length)
    this.frames.push([type, copy.subarray(0, header.length), copy.subarray(header.length)])
    this.bytes += cost
  }

  onEnd(e: ReadEnd): void {
    this.end = e
    // An end with frames still waiting is not reported early: they may say why (an alert).
    if (e._tag === "ProtocolError" || this.frames.length === 0) Deferred.unsafeDone(this.failed, Exit.fail(e))
    if (this.waiter !== undefined) {
      const resume = this.waiter
      this.waiter = undefined
      resume(e)
    }
  }

  take(): Array<Frame> {
    const taken = this.frames
    this.frames = []
    this.bytes = 0
    return taken
  }

  get next(): Effect.Effect<Frame, ReadEnd> {
    return Effect.async<Frame, ReadEnd>((resume) => {
      const settle = (item: Frame | ReadEnd) => resume(isFrame(item) ? Effect.succeed(item) : Effect.fail(item))
      const frame = this.frames.shift()
      if (frame !== undefined) {
        this.bytes -= frame[1].length + frame[2].length + FRAME_BOOKKEEPING
        return settle(frame)
      }
      if (this.end !== undefined) return settle(this.end)
      this.waiter = settle
      return Effect.sync(() => {
        this.waiter = undefined
      })
    })
  }
}

const wakeAll = (waiters: Array<() => void> | undefined) => {
  if (waiters !== undefined) for (const waiter of waiters.splice(0)) waiter()
}

/** Completes at once when `ready()`, else when something calls the waiters `waiters()` gives. */
const waitOn = (waiters: () => Array<() => void>, ready: () => boolean): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (ready()) return resume(Effect.void)
    const list = waiters()
    const waiter = () => resume(Effect.void)
    list.push(waiter)
    return Effect.sync(() => {
      const i = list.indexOf(waiter)
      if (i >= 0) list.splice(i, 1)
    })
  })

export const makeFramed = (
  socket: Socket.Socket,
  options: FramedOptions
): Effect.Effect<Framed, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const clock = yield* Effect.clock
    const framed = new FramedConnection(options, clock)
    const transport = yield* Transport.of(socket)
    framed.transport = transport
    yield* Scope.addFinalizer(scope, Effect.sync(() => framed.closeScope()))
    // Reading starts last, so that everything it may call on the writing side exists.
    transport.start(framed)
    return framed
  })

/** The transport a connection has before `makeFramed` gives it its own (never used). */
const NO_TRANSPORT: Transport.Transport = {
  start: () => {},
  write: () => true,
  bufferedBytes: () => 0,
  end: (done) => done(),
  stopReading: () => {},
  pace: () => {},
  destroy: () => {}
}

/**
 * One framed connection. A class, so that an idle connection is this object and its few buffers,
 * not a closure per operation and an Effect per field (docs/resources.md, "Memory of an idle
 * session"); the Effects of `Framed` are made when asked for.
 */
class FramedConnection implements Framed, Transport.TransportHandlers {
  transport: Transport.Transport = NO_TRANSPORT
  private readonly highWaterMark: number

  // --- reading -----------------------------------------------------------------------------
  private afterFirstFrame: ReadLimits | undefined
  /** Until the session's sink is installed; dropped then. */
  private mailbox: Mailbox | undefined
  private sink: FrameSink
  private readEnd: ReadEnd | undefined = undefined
  private readonly decoder: FrameDecoder
  /** Dropped with the mailbox, once the handshake is over. */
  private first: Uint8Array | undefined = new Uint8Array(FIRST_BYTES)
  private firstFill = 0
  /** Made when something waits for the read side to end. */
  private readDone: Deferred.Deferred<void> | undefined = undefined
  private readDoneNow = false

  // --- writing -----------------------------------------------------------------------------
  // Frames are queued synchronously and written as one corked batch once the event loop has run
  // everything that was ready (`setImmediate`); nothing waits for a write to be flushed. Writing
  // pauses only while the transport's buffer is full, until its drain (docs/performance.md,
  // "The write path").
  private queue: Array<Uint8Array> = []
  private queued = 0
  /** Set by `enqueueLater`: frames what the layer above holds back, at the next batch. */
  private batchHook: (() => void) | undefined = undefined
  /** A flush is scheduled. */
  private scheduled = false
  /** The transport's buffer is full: nothing is written until it drains. */
  private blocked = false
  private since: number | undefined = undefined
  private ending = false
  /** The transport was told to end our write side, after everything queued. */
  private endSending = false
  /** ... and has done it. */
  private endSent = false
  /** The connection takes no more writes, or writes were abandoned: nothing more goes out. */
  private stopped = false
  /** Senders waiting for the queue to drop below the high-water mark; made by the first. */
  private drainWaiters: Array<() => void> | undefined = undefined
  /** `endWrite` callers waiting for the end to be sent; made by the first. */
  private doneWaiters: Array<() => void> | undefined = undefined

  constructor(options: FramedOptions, private readonly clock: Clock.Clock) {
    this.highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK
    const initialLimits: ReadLimits = options.readLimits ?? {
      maxFrameSize: options.maxFrameSize,
      maxWaitingFrames: Number.POSITIVE_INFINITY,
      maxWaitingBytes: 4 * (options.maxFrameSize + FRAME_BOOKKEEPING)
    }
    this.afterFirstFrame = options.afterFirstFrame
    this.decoder = makeFrameDecoder(initialLimits.maxFrameSize)
    this.mailbox = new Mailbox(initialLimits, (error) => this.finishReading({ _tag: "ProtocolError", error }))
    this.sink = this.mailbox
  }

  // --- reading -----------------------------------------------------------------------------

  private finishReading(end: ReadEnd): void {
    if (this.readEnd !== undefined) return
    this.readEnd = end
    this.sink.onEnd(end)
  }

  private readonly onFrame = (type: number, header: Uint8Array, body: Uint8Array): void => {
    if (this.readEnd !== undefined) return
    if (this.afterFirstFrame !== undefined) {
      this.setReadLimits(this.afterFirstFrame)
      this.afterFirstFrame = undefined
    }
    this.sink.onFrame(type, header, body)
  }

  get nextFrame(): Effect.Effect<Frame, ReadEnd> {
    return this.mailbox?.next ?? Effect.die(new Error("nextFrame after setSink"))
  }

  get readFailure(): Effect.Effect<never, ReadEnd> {
    return this.mailbox === undefined ? Effect.never : Deferred.await(this.mailbox.failed)
  }

  setSink(next: FrameSink): void {
    this.sink = next
    const mailbox = this.mailbox
    if (mailbox !== undefined) {
      this.mailbox = undefined
      this.first = undefined
      for (const [type, header, body] of mailbox.take()) next.onFrame(type, header, body)
      if (mailbox.end !== undefined) next.onEnd(mailbox.end)
    } else if (this.readEnd !== undefined) {
      next.onEnd(this.readEnd)
    }
  }

  setReadLimits(limits: ReadLimits): void {
    this.decoder.setMaxFrameSize(limits.maxFrameSize)
    if (this.mailbox !== undefined) this.mailbox.limits = limits
  }

  waitingBytes(): number {
    return this.mailbox?.bytes ?? 0
  }

  firstBytes(): Uint8Array {
    return this.first === undefined ? new Uint8Array(0) : this.first.slice(0, this.firstFill)
  }

  reuseFrameBuffers(): void {
    this.decoder.reuseBuffers()
  }

  private readingEnded(end: ReadEnd): void {
    this.finishReading(end)
    this.markReadDone()
  }

  private markReadDone(): void {
    this.readDoneNow = true
    if (this.readDone !== undefined) Deferred.unsafeDone(this.readDone, Exit.void)
  }

  get readEnded(): Effect.Effect<void> {
    if (this.readDoneNow) return Effect.void
    const done = this.readDone ?? (this.readDone = Deferred.unsafeMake<void>(FiberId.none))
    return Deferred.await(done)
  }

  get stopReading(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.transport.stopReading()
      this.readingEnded({ _tag: "Eof" })
    })
  }

  paceReading(slow: boolean): void {
    this.transport.pace(slow)
  }

  // --- the transport's events ------------------------------------------------------------------

  onData(chunk: Uint8Array): void {
    count(bytesIn, chunk.length)
    if (this.readEnd !== undefined) return
    if (this.first !== undefined && this.firstFill < FIRST_BYTES) {
      const take = Math.min(FIRST_BYTES - this.firstFill, chunk.length)
      this.first.set(chunk.subarray(0, take), this.firstFill)
      this.firstFill += take
    }
    const error = this.decoder.push(chunk, this.onFrame)
    // Reading goes on after a framing error (what follows is ignored), so that the connection
    // stays open while the alert that says why we close goes out.
    if (error !== undefined) this.finishReading({ _tag: "ProtocolError", error })
  }

  onReadEnd(error: Socket.SocketError | undefined): void {
    if (error !== undefined) return this.readingEnded({ _tag: "SocketError", error })
    const truncated = this.decoder.end()
    this.readingEnded(truncated === undefined ? { _tag: "Eof" } : { _tag: "ProtocolError", error: truncated })
  }

  onDrain(): void {
    if (this.stopped) return
    this.blocked = false
    this.since = undefined
    this.flush()
  }

  onWriteClosed(): void {
    this.stopWriting()
  }

  /** The connection's scope closes: nothing more is written, and the read side counts as ended. */
  closeScope(): void {
    this.stopWriting()
    this.markReadDone()
  }

  // --- writing -----------------------------------------------------------------------------

  pendingBytes(): number {
    return this.stopped ? 0 : this.queued + this.transport.bufferedBytes()
  }

  private writable(): boolean {
    return this.stopped || this.pendingBytes() < this.highWaterMark
  }

  get awaitWritable(): Effect.Effect<void> {
    return waitOn(() => (this.drainWaiters ??= []), () => this.writable())
  }

  writingSince(): number | undefined {
    return this.since
  }

  /**
   * Turns the queue into one batch of writes: runs of small pieces are merged into one buffer,
   * while large pieces are written as they are, since copying them would cost more than a piece of
   * the transport's `writev`.
   */
  private takeBatch(): Array<Uint8Array> {
    const batch = this.queue
    this.queue = []
    this.queued = 0
    const writes: Array<Uint8Array> = []
    let run: Array<Uint8Array> = []
    let runLength = 0
    const flushRun = () => {
      if (run.length === 1) writes.push(run[0]!)
      else if (run.length > 1) {
        // Every byte is overwritten below, so the allocation skips zero-filling.
        const out = Buffer.allocUnsafe(runLength)
        let offset = 0
        for (const piece of run) {
          out.set(piece, offset)
          offset += piece.length
        }
        writes.push(out)
      }
      run = []
      runLength = 0
    }
    let total = 0
    for (const piece of batch) {
      total += piece.length
      if (piece.length >= DIRECT_WRITE_SIZE) {
        flushRun()
        writes.push(piece)
      } else {
        run.push(piece)
        runLength += piece.length
      }
    }
    flushRun()
    // Counted once per batch, as it is handed to the transport (README "Observability").
    count(bytesOut, total)
    return writes
  }

  /** What the layer above still holds back, framed into the queue now. */
  private runHook(): void {
    const hook = this.batchHook
    this.batchHook = undefined
    hook?.()
  }

  private readonly flushNow = (): void => this.flush()

  private flush(): void {
    this.scheduled = false
    if (this.stopped || this.blocked) return
    this.runHook()
    if (this.queue.length > 0) {
      if (!this.transport.write(this.takeBatch())) {
        this.blocked = true
        // The stall timeout counts from here: the peer is not taking what we send (PROTOCOL.md §10).
        this.since = this.clock.unsafeCurrentTimeMillis()
      }
    }
    if (!this.blocked && this.ending && !this.endSending) {
      this.endSending = true
      this.transport.end(() => {
        this.endSent = true
        wakeAll(this.doneWaiters)
      })
    }
    if (this.writable()) wakeAll(this.drainWaiters)
  }

  private schedule(): void {
    if (!this.scheduled && !this.blocked && !this.stopped) {
      this.scheduled = true
      setImmediate(this.flushNow)
    }
  }

  /** Nothing more goes out: what is queued is dropped and whoever waits on the writer is released. */
  private stopWriting(): boolean {
    if (this.stopped) return false
    this.stopped = true
    this.batchHook = undefined
    this.queue = []
    this.queued = 0
    this.since = undefined
    wakeAll(this.doneWaiters)
    wakeAll(this.drainWaiters)
    return true
  }

  get abortWrites(): Effect.Effect<void> {
    return Effect.sync(() => {
      // What the transport still holds would keep a peer that does not read connected.
      if (this.stopWriting()) this.transport.destroy()
    })
  }

  /** A field, not a method: the record layer is handed it as the place its frames go. */
  readonly enqueue = (frame: Uint8Array): void => {
    if (this.ending || this.stopped) return
    this.queue.push(frame)
    this.queued += frame.length
    this.schedule()
  }

  enqueueLater(hook: () => void): void {
    if (this.ending || this.stopped) return
    this.batchHook = hook
    this.schedule()
  }

  get endWrite(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (!this.ending) {
        this.ending = true
        if (!this.blocked) this.flush()
      }
      return waitOn(() => (this.doneWaiters ??= []), () => this.endSent || this.stopped)
    })
  }
}
