/**
 * What a session sends: packets, cut into chunks above the chunk size (PROTOCOL.md §9.1, §9.2), and
 * streams paced by the receiver's credit (§9.3) that end early when it cancels them (§9.4).
 *
 * Writes are synchronous calls into the channel, in call order; Effects only wait, on back-pressure
 * or on credit (docs/performance.md).
 */
import { Chunk, Effect, Exit, Stream } from "effect"
import {
  ChunkEndStatus,
  ChunkFlags,
  encodeChunkEnd,
  encodeChunkStart,
  encodeStreamHead,
  INITIAL_STREAM_CREDIT,
  type StreamCredit
} from "../wire/Chunks.js"
import { MessageType } from "../wire/Messages.js"
import { encodePacketInto, type Packet, PACKET_HEADER_LENGTH } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import { EMPTY, newHasher, type SessionContext } from "./Context.js"
import type { SessionError } from "./Session.js"

export interface Outgoing {
  /**
   * Writes a packet as a PACKET, REQUEST or REPLY (`kind`), or as chunks flagged the same way
   * (PROTOCOL.md §9.1), yielding to back-pressure between chunks.
   */
  readonly sendPacket: (packet: Packet, kind: number) => Effect.Effect<void, SessionError>
  /**
   * Sends a stream (`flags` STREAM, or STREAM|REPLY for a streamed reply) paced by the receiver's
   * credit (PROTOCOL.md §9.3). A STREAM_CANCEL from the receiver ends it early as a success: the
   * receiver took what it wanted (§9.4).
   */
  readonly sendStream: <E, R>(
    header: { readonly id: number; readonly type: PacketType },
    data: Stream.Stream<Uint8Array, E, R>,
    flags: number
  ) => Effect.Effect<void, SessionError | E, R>
  /**
   * Writes a packet that fits in one message (no chunks) at once, without waiting for back-pressure:
   * for callers that checked the queue. False, and nothing written, when it needs chunks.
   */
  readonly writeNow: (packet: Packet, kind: number) => boolean
  /** Whether `writeNow` takes a payload of this many bytes. */
  readonly fitsOne: (length: number) => boolean
  /** Writes one message at once; the Effect waits out back-pressure. The caller has checked the session is open. */
  readonly write: (type: number, body: Uint8Array) => Effect.Effect<void, SessionError>
  /** STREAM_CREDIT for one of our streams; one that already ended ignores it. */
  readonly credit: (credit: StreamCredit) => void
  /** STREAM_CANCEL for one of our streams; one that already ended ignores it (PROTOCOL.md §9.4). */
  readonly cancel: (streamId: number) => void
  /** The session ended: streams waiting for credit wake up to fail. */
  readonly end: () => void
}

/** One of our streams: credit left, the sender waiting for more, and whether the receiver cancelled. */
interface Flow {
  credit: number
  wake: (() => void) | undefined
  cancelled: boolean
}

/** Ends an outgoing stream whose receiver sent STREAM_CANCEL; never leaves this module. */
interface StreamCancelled {
  readonly _tag: "StreamCancelled"
}
const STREAM_CANCELLED: StreamCancelled = { _tag: "StreamCancelled" }

export const makeOutgoing = (ctx: SessionContext, chunkSize: number): Outgoing => new Sender(ctx, chunkSize)

/**
 * A class, so that an idle session's sending side is one object rather than a closure per operation
 * (docs/resources.md, "Memory of an idle session"); a stream's closures live as long as the stream.
 */
class Sender implements Outgoing {
  /** Our streams, by id; made by the first. */
  private flows: Map<number, Flow> | undefined = undefined
  /** One counter for chunked messages and streams: their ids share one space per direction (PROTOCOL.md §9). */
  private nextStreamId = 1

  constructor(private readonly ctx: SessionContext, private readonly chunkSize: number) {}

  private get checkOpen(): Effect.Effect<void, SessionError> {
    const ctx = this.ctx
    return Effect.suspend(() => ctx.ended === undefined ? Effect.void : Effect.fail(ctx.ended))
  }

  /**
   * Waits out back-pressure after a write, then reports a session that ended meanwhile; decided now,
   * so only for callers already running.
   */
  private afterWriteNow(): Effect.Effect<void, SessionError> {
    const channel = this.ctx.channel
    return channel.pendingBytes() > 0 ? Effect.zipRight(channel.awaitWritable, this.checkOpen) : Effect.void
  }

  private writeSmall(type: number, id: number, packetType: number, payload: Uint8Array): void {
    // The payload goes to the record layer as is: only the 5-byte packet header is built here.
    const head = new Uint8Array(PACKET_HEADER_LENGTH)
    encodePacketInto(head, 0, id, packetType, EMPTY)
    this.ctx.channel.write(type, head, payload)
  }

  sendPacket(packet: Packet, kind: number): Effect.Effect<void, SessionError> {
    return Effect.suspend(() => {
      const { ctx, chunkSize } = this
      const { channel, crypto } = ctx
      if (ctx.ended !== undefined) return Effect.fail(ctx.ended)
      const payload = packet.payload
      if (payload.length <= chunkSize) {
        this.writeSmall(kind, packet.id, packet.type, payload)
        return this.afterWriteNow()
      }
      const streamId = this.nextStreamId++
      const streamHead = encodeStreamHead(streamId)
      const flags = kind === MessageType.REPLY ? ChunkFlags.REPLY : kind === MessageType.REQUEST ? ChunkFlags.REQUEST : 0
      channel.write(MessageType.CHUNK_START, encodeChunkStart({ streamId, flags, id: packet.id, type: packet.type, total: payload.length }))
      let offset = 0
      let finished = false
      const checkOpen = this.checkOpen
      const step: Effect.Effect<void, SessionError> = Effect.suspend(() => {
        if (ctx.ended !== undefined) return Effect.fail(ctx.ended)
        const end = Math.min(offset + chunkSize, payload.length)
        channel.write(MessageType.CHUNK_DATA, streamHead, payload.subarray(offset, end))
        offset = end
        if (offset < payload.length) return Effect.zipRight(channel.awaitWritable, step)
        channel.write(MessageType.CHUNK_END, encodeChunkEnd(streamId, ChunkEndStatus.OK, ctx.encrypted ? undefined : crypto.sha256(payload)))
        finished = true
        return Effect.zipRight(channel.awaitWritable, checkOpen)
      })
      // Interrupted mid-way (a request or reply given up): tell the peer, so it frees its buffer.
      return Effect.onExit(step, () =>
        Effect.sync(() => {
          if (!finished) channel.write(MessageType.CHUNK_END, encodeChunkEnd(streamId, ChunkEndStatus.ABORTED, undefined))
        }))
    })
  }

  sendStream<E, R>(
    header: { readonly id: number; readonly type: PacketType },
    data: Stream.Stream<Uint8Array, E, R>,
    flags: number
  ): Effect.Effect<void, SessionError | E, R> {
    return Effect.suspend(() => {
      const { ctx, chunkSize } = this
      const channel = ctx.channel
      if (ctx.ended !== undefined) return Effect.fail(ctx.ended)
      const streamId = this.nextStreamId++
      const streamHead = encodeStreamHead(streamId)
      const flow: Flow = { credit: INITIAL_STREAM_CREDIT, wake: undefined, cancelled: false }
      const flows = this.flows ?? (this.flows = new Map())
      flows.set(streamId, flow)
      const hasher = newHasher(ctx)
      channel.write(MessageType.CHUNK_START, encodeChunkStart({ streamId, flags, id: header.id, type: header.type, total: 0 }))

      const awaitCredit = (bytes: number): Effect.Effect<void, SessionError> =>
        Effect.async<void, SessionError>((resume) => {
          const check = () => {
            if (ctx.ended !== undefined) return resume(Effect.fail(ctx.ended))
            if (flow.credit >= bytes || flow.cancelled) return resume(Effect.void)
            flow.wake = check
          }
          check()
          return Effect.sync(() => {
            flow.wake = undefined
          })
        })

      const sendPiece = (piece: Uint8Array): Effect.Effect<void, SessionError | StreamCancelled> =>
        Effect.suspend(() => {
          if (ctx.ended !== undefined) return Effect.fail(ctx.ended)
          if (flow.cancelled) return Effect.fail(STREAM_CANCELLED)
          if (flow.credit < piece.length) return Effect.zipRight(awaitCredit(piece.length), sendPiece(piece))
          flow.credit -= piece.length
          hasher?.update(piece)
          channel.write(MessageType.CHUNK_DATA, streamHead, piece)
          return channel.pendingBytes() > 0 ? channel.awaitWritable : Effect.void
        })

      const pieceSize = Math.min(chunkSize, INITIAL_STREAM_CREDIT)
      const sendChunk = (chunk: Uint8Array): Effect.Effect<void, SessionError | StreamCancelled> => {
        if (chunk.length <= pieceSize) return sendPiece(chunk)
        let offset = 0
        return Effect.whileLoop({
          while: () => offset < chunk.length,
          body: () => {
            const piece = chunk.subarray(offset, Math.min(offset + pieceSize, chunk.length))
            offset += piece.length
            return sendPiece(piece)
          },
          step: () => {}
        })
      }

      // Small items of one upstream chunk go out as one piece: a stream of many tiny items would
      // otherwise cost a frame (and a seal) each.
      const sendGroup = (group: Chunk.Chunk<Uint8Array>): Effect.Effect<void, SessionError | StreamCancelled> => {
        if (group.length === 1) return sendChunk(Chunk.unsafeHead(group))
        let total = 0
        for (const item of group) total += item.length
        if (total > pieceSize) return Effect.forEach(group, sendChunk, { discard: true })
        const piece = new Uint8Array(total)
        let offset = 0
        for (const item of group) {
          piece.set(item, offset)
          offset += item.length
        }
        return sendPiece(piece)
      }

      return Stream.runForEachChunk(data, sendGroup).pipe(
        Effect.onExit((exit) =>
          Effect.sync(() => {
            flows.delete(streamId)
            const ok = Exit.isSuccess(exit)
            channel.write(
              MessageType.CHUNK_END,
              encodeChunkEnd(streamId, ok ? ChunkEndStatus.OK : ChunkEndStatus.ABORTED, ok && hasher !== undefined ? hasher.digest() : undefined)
            )
          })
        ),
        Effect.catchIf((error): error is StreamCancelled => error === STREAM_CANCELLED, () => Effect.void),
        Effect.zipRight(this.checkOpen)
      )
    })
  }

  fitsOne(length: number): boolean {
    return length <= this.chunkSize
  }

  writeNow(packet: Packet, kind: number): boolean {
    if (packet.payload.length > this.chunkSize) return false
    this.writeSmall(kind, packet.id, packet.type, packet.payload)
    return true
  }

  write(type: number, body: Uint8Array): Effect.Effect<void, SessionError> {
    this.ctx.channel.write(type, body)
    return Effect.suspend(() => this.afterWriteNow())
  }

  credit({ bytes, streamId }: StreamCredit): void {
    const flow = this.flows?.get(streamId)
    if (flow === undefined) return
    flow.credit += bytes
    wake(flow)
  }

  cancel(streamId: number): void {
    const flow = this.flows?.get(streamId)
    if (flow === undefined) return
    flow.cancelled = true
    wake(flow)
  }

  end(): void {
    if (this.flows !== undefined) for (const flow of this.flows.values()) flow.wake?.()
  }
}

const wake = (flow: Flow) => {
  const waiting = flow.wake
  flow.wake = undefined
  waiting?.()
}
