/**
 * Streams we receive (PROTOCOL.md §9.3, §9.4): their data waits, charged to the budget, until the
 * consumer pulls it; credit goes back to the sender as it does, and a consumer that stops early
 * cancels the rest. `receive` and `serve` collect a stream into one packet, within `maxMessageSize`.
 */
import { Effect, Exit, Option, Stream } from "effect"
import type { Sha256Hasher } from "../crypto/Crypto.js"
import { ProtocolError } from "../errors.js"
import { type ChunkEnd, ChunkEndStatus, encodeStreamCancel, encodeStreamCredit, INITIAL_STREAM_CREDIT } from "../wire/Chunks.js"
import { MessageType } from "../wire/Messages.js"
import { Packet } from "../wire/Packet.js"
import { intact, joinChunks, newHasher, type Pieces, queueChunk, type Resume, type SessionContext } from "./Context.js"
import { type InboxItem, release } from "./Inbox.js"
import type { IncomingStream, SessionError } from "./Session.js"

/** A stream being received: chunks wait here until the consumer pulls them. */
export interface IncomingStreamState extends Pieces {
  readonly _tag: "Stream"
  readonly streamId: number
  /** Credit granted so far: the initial window plus every STREAM_CREDIT sent (PROTOCOL.md §9.3). */
  granted: number
  /** CHUNK_DATA bytes received; never more than `granted`. */
  received: number
  consumedSinceCredit: number
  done: Exit.Exit<void, SessionError> | undefined
  waiter: Resume<Option.Option<Uint8Array>> | undefined
  hasher: Sha256Hasher | undefined
  /** We sent STREAM_CANCEL: what still arrives is counted against credit, then dropped (PROTOCOL.md §9.4). */
  cancelled: boolean
}

export interface IncomingStreams {
  /** The state of a stream the peer opened with CHUNK_START. */
  readonly open: (streamId: number) => IncomingStreamState
  /** CHUNK_DATA: counted against the credit granted, then handed to the consumer or queued. */
  readonly data: (state: IncomingStreamState, data: Uint8Array) => void
  /** CHUNK_END: the stream completes, or fails with `StreamIntegrity` (PROTOCOL.md §9.2). */
  readonly end: (state: IncomingStreamState, end: ChunkEnd) => void
  /** Ends a stream for its consumer, which gets `exit` once it has taken what waits. */
  readonly finish: (state: IncomingStreamState, exit: Exit.Exit<void, SessionError>) => void
  /** Tells the sender of a stream we want no more of it, and gives back what it holds (PROTOCOL.md §9.4). */
  readonly cancel: (state: IncomingStreamState) => void
  /**
   * Collects an item into one packet for `receive`, `serve` and `request`. Returns the packet and
   * what it holds against the budget.
   */
  readonly collect: (item: InboxItem) => Effect.Effect<readonly [Packet, number], SessionError>
  /** Collects an item, hands the packet to `use`, and gives its bytes back to the budget after. */
  readonly withPacket: <A, E, R>(item: InboxItem, use: (packet: Packet) => Effect.Effect<A, E, R>) => Effect.Effect<A, SessionError | E, R>
  /** An item as a stream for its consumer: a packet becomes a one-chunk stream. */
  readonly toIncomingStream: (item: InboxItem) => IncomingStream
}

export const makeIncomingStreams = (ctx: SessionContext, maxMessageSize: number): IncomingStreams =>
  new StreamReceiver(ctx, maxMessageSize)

/**
 * A class, so that an idle session's receiving side for streams is one object rather than a closure
 * per operation (docs/resources.md, "Memory of an idle session").
 */
class StreamReceiver implements IncomingStreams {
  constructor(private readonly ctx: SessionContext, private readonly maxMessageSize: number) {}

  finish(state: IncomingStreamState, exit: Exit.Exit<void, SessionError>): void {
    state.done = exit
    if (state.waiter !== undefined && state.chunks.length === 0) {
      const waiter = state.waiter
      state.waiter = undefined
      waiter(Exit.isSuccess(exit) ? Exit.succeed(Option.none()) : Exit.failCause(exit.cause))
    }
  }

  cancel(state: IncomingStreamState): void {
    const ctx = this.ctx
    if (state.done !== undefined || state.cancelled || ctx.ended !== undefined) return
    state.cancelled = true
    for (const chunk of state.chunks.splice(0)) ctx.budget.refund(chunk.length)
    ctx.channel.write(MessageType.STREAM_CANCEL, encodeStreamCancel(state.streamId))
  }

  private pullChunk(state: IncomingStreamState): Effect.Effect<Option.Option<Uint8Array>, SessionError> {
    return Effect.async<Option.Option<Uint8Array>, SessionError>((resume) => {
      const chunk = state.chunks.shift()
      if (chunk !== undefined) return resume(Effect.succeed(Option.some(chunk)))
      if (state.done !== undefined) {
        return resume(Exit.isSuccess(state.done) ? Effect.succeed(Option.none()) : Effect.failCause(state.done.cause))
      }
      state.waiter = (exit) => resume(exit)
      return Effect.sync(() => {
        state.waiter = undefined
      })
    })
  }

  /** Hands credit back once half the window is consumed, so the sender rarely stalls. */
  private consumed(state: IncomingStreamState, bytes: number): void {
    this.ctx.budget.refund(bytes)
    state.consumedSinceCredit += bytes
    if (state.done === undefined && state.consumedSinceCredit >= INITIAL_STREAM_CREDIT / 2) {
      this.ctx.channel.write(MessageType.STREAM_CREDIT, encodeStreamCredit(state.streamId, state.consumedSinceCredit))
      state.granted += state.consumedSinceCredit
      state.consumedSinceCredit = 0
    }
  }

  /**
   * A stream's data for its consumer. A consumer that stops early cancels the rest (PROTOCOL.md
   * §9.4) and gives back what was waiting for it.
   */
  private streamOf(state: IncomingStreamState): Stream.Stream<Uint8Array, SessionError> {
    return Stream.repeatEffectOption(
      this.pullChunk(state).pipe(
        Effect.mapError(Option.some),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(Option.none()),
          onSome: (chunk) =>
            Effect.sync(() => {
              this.consumed(state, chunk.length)
              return chunk
            })
        }))
      )
    ).pipe(
      Stream.ensuring(Effect.sync(() => {
        for (const chunk of state.chunks.splice(0)) this.ctx.budget.refund(chunk.length)
        this.cancel(state)
      }))
    )
  }

  /**
   * The running total is checked against `maxMessageSize` as the data arrives and charged to the
   * budget, so an endless stream ends the session at the limit instead of growing without bound
   * (PROTOCOL.md §9.3).
   */
  collect(item: InboxItem): Effect.Effect<readonly [Packet, number], SessionError> {
    if (item._tag === "Packet") return Effect.succeed([item.packet, item.charged] as const)
    const { ctx, maxMessageSize } = this
    const chunks: Array<Uint8Array> = []
    let total = 0
    const tooLarge = () => {
      const error = new ProtocolError({ reason: "MessageTooLarge", detail: `stream over ${maxMessageSize} bytes` })
      ctx.fail(error)
      return error
    }
    return Stream.runForEach(this.streamOf(item.state), (chunk) =>
      Effect.suspend(() => {
        if (total + chunk.length > maxMessageSize) return Effect.fail(tooLarge())
        if (!ctx.charge(chunk.length)) return Effect.fail(ctx.ended ?? tooLarge())
        total += chunk.length
        chunks.push(chunk)
        return Effect.void
      })).pipe(
        Effect.onError(() => Effect.sync(() => ctx.budget.refund(total))),
        Effect.map(() => [new Packet({ id: item.id, type: item.type, payload: joinChunks(chunks) }, true), total] as const)
      )
  }

  open(streamId: number): IncomingStreamState {
    return {
      _tag: "Stream",
      streamId,
      chunks: [],
      granted: INITIAL_STREAM_CREDIT,
      received: 0,
      consumedSinceCredit: 0,
      done: undefined,
      waiter: undefined,
      hasher: newHasher(this.ctx),
      cancelled: false,
      pack: undefined
    }
  }

  data(state: IncomingStreamState, data: Uint8Array): void {
    const ctx = this.ctx
    state.received += data.length
    if (state.received > state.granted) return ctx.fail(new ProtocolError({ reason: "LimitExceeded", detail: "stream credit exceeded" }))
    if (state.cancelled) return
    if (!ctx.charge(data.length)) return
    state.hasher?.update(data)
    // A consumer already waiting takes the view at once; a chunk that waits is owned (`own`).
    if (state.waiter !== undefined) {
      const waiter = state.waiter
      state.waiter = undefined
      waiter(Exit.succeed(Option.some(data)))
    } else {
      queueChunk(state, data)
    }
  }

  end(state: IncomingStreamState, end: ChunkEnd): void {
    const ctx = this.ctx
    if (state.cancelled) return
    if (end.status !== ChunkEndStatus.OK) {
      return this.finish(state, Exit.fail(new ProtocolError({ reason: "StreamIntegrity", detail: "sender aborted the stream" })))
    }
    if (!intact(ctx, state.hasher, undefined, end.digest)) {
      this.finish(state, Exit.fail(new ProtocolError({ reason: "StreamIntegrity" })))
      return ctx.fail(new ProtocolError({ reason: "StreamIntegrity" }))
    }
    this.finish(state, Exit.void)
  }

  withPacket<A, E, R>(item: InboxItem, use: (packet: Packet) => Effect.Effect<A, E, R>): Effect.Effect<A, SessionError | E, R> {
    return Effect.flatMap(
      this.collect(item),
      ([packet, charged]) => Effect.ensuring(use(packet), Effect.sync(() => this.ctx.budget.refund(charged)))
    )
  }

  toIncomingStream(item: InboxItem): IncomingStream {
    release(this.ctx.budget, item)
    return item._tag === "Packet"
      ? { id: item.packet.id, type: item.packet.type, data: Stream.make(item.packet.payload) }
      : { id: item.id, type: item.type, data: this.streamOf(item.state) }
  }
}
