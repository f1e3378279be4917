/**
 * Chunked messages we receive (PROTOCOL.md §9.1, §9.2): a payload above the sender's chunk size,
 * put back together before it is delivered like a packet.
 *
 * Nothing is allocated on the sender's word: `total` is checked against `maxMessageSize` first, and
 * the message is then held as the pieces that arrived, each charged to the budget as it comes
 * (PROTOCOL.md §10.1, docs/resources.md). The pieces are joined once, when the message is complete:
 * growing one buffer as data arrived would copy every byte about twice more, and under a peer that
 * sends large messages fast that allocation is what drives garbage collection (docs/resources.md).
 */
import { ProtocolError } from "../errors.js"
import { type ChunkEnd, ChunkEndStatus, type ChunkStart } from "../wire/Chunks.js"
import { Packet } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import { intact, joinChunks, type Pieces, queueChunk, type SessionContext } from "./Context.js"

/** A chunked message being reassembled. */
export interface IncomingMessage extends Pieces {
  readonly _tag: "Message"
  /** `kind`: what the reassembled packet is, PACKET, REQUEST or REPLY (PROTOCOL.md §8). */
  readonly start: { readonly id: number; readonly type: PacketType; readonly kind: number }
  readonly total: number
  /** Bytes of data that arrived, all of them charged to the budget. */
  received: number
}

export interface Reassembly {
  /** The state of a message the peer opened with CHUNK_START; `undefined` (and the session ends) when it is too large. */
  readonly open: (start: ChunkStart, kind: number) => IncomingMessage | undefined
  /** CHUNK_DATA: kept and charged. */
  readonly data: (message: IncomingMessage, data: Uint8Array) => void
  /**
   * CHUNK_END: the complete packet, still charged its `total`, or `undefined` when there is none —
   * the sender aborted (the pieces go back to the budget) or the message is not intact (the session ends).
   */
  readonly end: (message: IncomingMessage, end: ChunkEnd) => Packet | undefined
}

export const makeReassembly = (ctx: SessionContext, maxMessageSize: number): Reassembly => new Reassembler(ctx, maxMessageSize)

/** A class, so that an idle session's reassembly is one small object (docs/resources.md). */
class Reassembler implements Reassembly {
  constructor(private readonly ctx: SessionContext, private readonly maxMessageSize: number) {}

  open(start: ChunkStart, kind: number): IncomingMessage | undefined {
    // Refused before allocating (PROTOCOL.md §9.1).
    if (start.total > this.maxMessageSize) {
      this.ctx.fail(new ProtocolError({ reason: "MessageTooLarge", detail: `${start.total} > ${this.maxMessageSize}` }))
      return undefined
    }
    return { _tag: "Message", start: { id: start.id, type: start.type, kind }, total: start.total, chunks: [], pack: undefined, received: 0 }
  }

  data(message: IncomingMessage, data: Uint8Array): void {
    if (message.received + data.length > message.total) {
      return this.ctx.fail(new ProtocolError({ reason: "StreamIntegrity", detail: "more data than declared" }))
    }
    if (!this.ctx.charge(data.length)) return
    queueChunk(message, data)
    message.received += data.length
  }

  end(message: IncomingMessage, end: ChunkEnd): Packet | undefined {
    if (end.status !== ChunkEndStatus.OK) {
      this.ctx.budget.refund(message.received)
      return undefined
    }
    if (message.received !== message.total) {
      this.ctx.fail(new ProtocolError({ reason: "StreamIntegrity" }))
      return undefined
    }
    const payload = joinChunks(message.chunks)
    if (!intact(this.ctx, undefined, payload, end.digest)) {
      this.ctx.fail(new ProtocolError({ reason: "StreamIntegrity" }))
      return undefined
    }
    return new Packet({ id: message.start.id, type: message.start.type, payload }, true)
  }
}
