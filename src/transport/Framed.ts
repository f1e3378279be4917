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
import { Deferred, Effect, Exit, FiberId, Scope } from "effect"
import { ProtocolError } from "../errors.js"
import { makeFrameDecoder } from "../wire/Frame.js"
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
  /** The first bytes received (at most 8), to tell a peer of another protocol (PROTOCOL.md §3). */
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
const makeMailbox = (initial: ReadLimits, overflow: (error: ProtocolError) => void) => {
  let frames: Array<Frame> = []
  let bytes = 0
  let limits = initial
  let end: ReadEnd | undefined
  let waiter: ((frame: Frame | ReadEnd) => void) | undefined
  const failed = Deferred.unsafeMake<never, ReadEnd>(FiberId.none)
  const sink: FrameSink = {
    onFrame: (type, header, body) => {
      if (end !== undefined) return
      if (waiter !== undefined) {
        const resume = waiter
        waiter = undefined
        resume([type, header, body])
        return
      }
      const cost = header.length + body.length + FRAME_BOOKKEEPING
      const tooMany = frames.length + 1 > limits.maxWaitingFrames
      if (tooMany || bytes + cost > limits.maxWaitingBytes) {
        frames = []
        bytes = 0
        overflow(
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
      frames.push([type, copy.subarray(0, header.length), copy.subarray(header.length)])
      bytes += cost
    },
    onEnd: (e) => {
      end = e
      // An end with frames still waiting is not reported early: they may say why (an alert).
      if (e._tag === "ProtocolError" || frames.length === 0) Deferred.unsafeDone(failed, Exit.fail(e))
      if (waiter !== undefined) {
        const resume = waiter
        waiter = undefined
        resume(e)
      }
    }
  }
  const next: Effect.Effect<Frame, ReadEnd> = Effect.async<Frame, ReadEnd>((resume) => {
    const settle = (item: Frame | ReadEnd) => resume(isFrame(item) ? Effect.succeed(item) : Effect.fail(item))
    const frame = frames.shift()
    if (frame !== undefined) {
      bytes -= frame[1].length + frame[2].length + FRAME_BOOKKEEPING
      return settle(frame)
    }
    if (end !== undefined) return settle(end)
    waiter = settle
    return Effect.sync(() => {
      waiter = undefined
    })
  })
  return {
    sink,
    take: () => {
      const taken = frames
      frames = []
      bytes = 0
      return taken
    },
    next,
    failure: Deferred.await(failed),
    end: () => end,
    setLimits: (next: ReadLimits) => {
      limits = next
    },
    bytes: () => bytes
  }
}

const wakeAll = (waiters: Array<() => void>) => {
  for (const waiter of waiters.splice(0)) waiter()
}

/** Completes at once when `ready()`, else when something calls the waiters in `waiters`. */
const waitOn = (waiters: Array<() => void>, ready: () => boolean): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (ready()) return resume(Effect.void)
    const waiter = () => resume(Effect.void)
    waiters.push(waiter)
    return Effect.sync(() => {
      const i = waiters.indexOf(waiter)
      if (i >= 0) waiters.splice(i, 1)
    })
  })

export const makeFramed = (
  socket: Socket.Socket,
  options: FramedOptions
): Effect.Effect<Framed, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK

    // --- reading -----------------------------------------------------------------------------
    const initialLimits: ReadLimits = options.readLimits ?? {
      maxFrameSize: options.maxFrameSize,
      maxWaitingFrames: Number.POSITIVE_INFINITY,
      maxWaitingBytes: 4 * (options.maxFrameSize + FRAME_BOOKKEEPING)
    }
    let afterFirstFrame = options.afterFirstFrame
    let buffered = true
    let readEnd: ReadEnd | undefined
    const decoder = makeFrameDecoder(initialLimits.maxFrameSize)
    const finishReading = (end: ReadEnd) => {
      if (readEnd !== undefined) return
      readEnd = end
      sink.onEnd(end)
    }
    const mailbox = makeMailbox(initialLimits, (error) => finishReading({ _tag: "ProtocolError", error }))
    let sink: FrameSink = mailbox.sink
    const setReadLimits = (limits: ReadLimits) => {
      decoder.setMaxFrameSize(limits.maxFrameSize)
      mailbox.setLimits(limits)
    }
    const onFrame = (type: number, header: Uint8Array, body: Uint8Array) => {
      if (readEnd !== undefined) return
      if (afterFirstFrame !== undefined) {
        setReadLimits(afterFirstFrame)
        afterFirstFrame = undefined
      }
      sink.onFrame(type, header, body)
    }
    const first = new Uint8Array(FIRST_BYTES)
    let firstFill = 0

    const setSink = (next: FrameSink) => {
      sink = next
      if (buffered) {
        buffered = false
        for (const [type, header, body] of mailbox.take()) next.onFrame(type, header, body)
        const end = mailbox.end()
        if (end !== undefined) next.onEnd(end)
      } else if (readEnd !== undefined) {
        next.onEnd(readEnd)
      }
    }

    // --- writing -----------------------------------------------------------------------------
    // Frames are queued synchronously and written as one corked batch once the event loop has run
    // everything that was ready (`setImmediate`); nothing waits for a write to be flushed. Writing
    // pauses only while the transport's buffer is full, until its drain (docs/performance.md,
    // "The write path").
    const clock = yield* Effect.clock
    let queue: Array<Uint8Array> = []
    let queued = 0
    /** Set by `enqueueLater`: frames what the layer above holds back, at the next batch. */
    let batchHook: (() => void) | undefined
    /** A flush is scheduled. */
    let scheduled = false
    /** The transport's buffer is full: nothing is written until it drains. */
    let blocked = false
    let writingSince: number | undefined
    let ending = false
    /** The transport was told to end our write side, after everything queued. */
    let endSending = false
    /** ... and has done it. */
    let endSent = false
    /** The connection takes no more writes, or writes were abandoned: nothing more goes out. */
    let stopped = false
    /** Senders waiting for the queue to drop below the high-water mark. */
    const drainWaiters: Array<() => void> = []
    /** `endWrite` callers waiting for the end to be sent. */
    const doneWaiters: Array<() => void> = []

    const pendingBytes = () => (stopped ? 0 : queued + transport.bufferedBytes())
    const writable = () => stopped || pendingBytes() < highWaterMark
    const awaitWritable = waitOn(drainWaiters, writable)
    const awaitEnd = waitOn(doneWaiters, () => endSent || stopped)

    /**
     * Turns the queue into one batch of writes: runs of small pieces are merged into one buffer,
     * while large pieces are written as they are, since copying them would cost more than a piece of
     * the transport's `writev`.
     */
    const takeBatch = (): Array<Uint8Array> => {
      const batch = queue
      queue = []
      queued = 0
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
    const runHook = () => {
      const hook = batchHook
      batchHook = undefined
      hook?.()
    }

    const flush = () => {
      scheduled = false
      if (stopped || blocked) return
      runHook()
      if (queue.length > 0) {
        if (!transport.write(takeBatch())) {
          blocked = true
          // The stall timeout counts from here: the peer is not taking what we send (PROTOCOL.md §10).
          writingSince = clock.unsafeCurrentTimeMillis()
        }
      }
      if (!blocked && ending && !endSending) {
        endSending = true
        transport.end(() => {
          endSent = true
          wakeAll(doneWaiters)
        })
      }
      if (writable()) wakeAll(drainWaiters)
    }

    const schedule = () => {
      if (!scheduled && !blocked && !stopped) {
        scheduled = true
        setImmediate(flush)
      }
    }

    /** Nothing more goes out: what is queued is dropped and whoever waits on the writer is released. */
    const stopWriting = (): boolean => {
      if (stopped) return false
      stopped = true
      batchHook = undefined
      queue = []
      queued = 0
      writingSince = undefined
      wakeAll(doneWaiters)
      wakeAll(drainWaiters)
      return true
    }

    const abandonWrites: Effect.Effect<void> = Effect.sync(() => {
      // What the transport still holds would keep a peer that does not read connected.
      if (stopWriting()) transport.destroy()
    })

    const enqueue = (frame: Uint8Array) => {
      if (ending || stopped) return
      queue.push(frame)
      queued += frame.length
      schedule()
    }

    const enqueueLater = (hook: () => void) => {
      if (ending || stopped) return
      batchHook = hook
      schedule()
    }

    const endWrite = Effect.suspend(() => {
      if (!ending) {
        ending = true
        if (!blocked) flush()
      }
      return awaitEnd
    })

    // --- the transport ---------------------------------------------------------------------
    const transport = yield* Transport.of(socket)
    const readDone = Deferred.unsafeMake<void>(FiberId.none)
    const readingEnded = (end: ReadEnd) => {
      finishReading(end)
      Deferred.unsafeDone(readDone, Exit.void)
    }
    yield* Scope.addFinalizer(scope, Effect.sync(() => {
      stopWriting()
      Deferred.unsafeDone(readDone, Exit.void)
    }))
    // Reading starts last, so that everything it may call on the writing side exists.
    transport.start({
      onData: (chunk) => {
        count(bytesIn, chunk.length)
        if (readEnd !== undefined) return
        if (firstFill < FIRST_BYTES) {
          const take = Math.min(FIRST_BYTES - firstFill, chunk.length)
          first.set(chunk.subarray(0, take), firstFill)
          firstFill += take
        }
        const error = decoder.push(chunk, onFrame)
        // Reading goes on after a framing error (what follows is ignored), so that the connection
        // stays open while the alert that says why we close goes out.
        if (error !== undefined) finishReading({ _tag: "ProtocolError", error })
      },
      onReadEnd: (error) => {
        if (error !== undefined) return readingEnded({ _tag: "SocketError", error })
        const truncated = decoder.end()
        readingEnded(truncated === undefined ? { _tag: "Eof" } : { _tag: "ProtocolError", error: truncated })
      },
      onDrain: () => {
        if (stopped) return
        blocked = false
        writingSince = undefined
        flush()
      },
      onWriteClosed: () => {
        stopWriting()
      }
    })

    return {
      nextFrame: mailbox.next,
      readFailure: mailbox.failure,
      setSink,
      setReadLimits,
      waitingBytes: mailbox.bytes,
      firstBytes: () => first.slice(0, firstFill),
      reuseFrameBuffers: decoder.reuseBuffers,
      enqueue,
      enqueueLater,
      pendingBytes,
      awaitWritable,
      writingSince: () => writingSince,
      endWrite,
      stopReading: Effect.sync(() => {
        transport.stopReading()
        readingEnded({ _tag: "Eof" })
      }),
      abortWrites: abandonWrites,
      readEnded: Deferred.await(readDone)
    }
  })
