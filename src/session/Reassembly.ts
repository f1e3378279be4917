/**
 * Chunked messages we receive (PROTOCOL.md §9.1, §9.2): a payload above the sender's chunk size,
 * put back together before it is delivered like a packet.
 *
 * Nothing is allocated on the sender's word: `total` is checked against `maxMessageSize` first, and
 * the buffer then grows with the data that arrived (doubling, capped at `total`); its capacity is
 * what the budget is charged (PROTOCOL.md §10.1, docs/resources.md).
 */
import { ProtocolError } from "../errors.js"
import { type ChunkEnd, ChunkEndStatus, type ChunkStart } from "../wire/Chunks.js"
import { Packet } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import { EMPTY, intact, type SessionContext } from "./Context.js"

/** A chunked message being reassembled. */
export interface IncomingMessage {
  readonly _tag: "Message"
  /** `kind`: what the reassembled packet is, PACKET, REQUEST or REPLY (PROTOCOL.md §8). */
  readonly start: { readonly id: number; readonly type: PacketType; readonly kind: number }
  readonly total: number
  buffer: Uint8Array
  offset: number
}

export interface Reassembly {
  /** The state of a message the peer opened with CHUNK_START; `undefined` (and the session ends) when it is too large. */
  readonly open: (start: ChunkStart, kind: number) => IncomingMessage | undefined
  /** CHUNK_DATA: appended, growing the buffer as needed. */
  readonly data: (message: IncomingMessage, data: Uint8Array) => void
  /**
   * CHUNK_END: the complete packet, or `undefined` when there is none — the sender aborted (the buffer
   * goes back to the budget) or the message is not intact (the session ends).
   */
  readonly end: (message: IncomingMessage, end: ChunkEnd) => Packet | undefined
}

/** The smallest reassembly buffer; below it, growing step by step would cost more copies than it saves. */
const MIN_REASSEMBLY = 64 * 1024

export const makeReassembly = (ctx: SessionContext, maxMessageSize: number): Reassembly => new Reassembler(ctx, maxMessageSize)

/** A class, so that an idle session's reassembly is one small object (docs/resources.md). */
class Reassembler implements Reassembly {
  constructor(private readonly ctx: SessionContext, private readonly maxMessageSize: number) {}

  /** Makes room for `bytes` more in a message's buffer, charging the growth; false if refused. */
  private reserve(message: IncomingMessage, bytes: number): boolean {
    const needed = message.offset + bytes
    if (needed <= message.buffer.length) return true
    const size = Math.min(message.total, Math.max(needed, MIN_REASSEMBLY, 2 * message.buffer.length))
    if (!this.ctx.charge(size - message.buffer.length)) return false
    const next = new Uint8Array(size)
    next.set(message.buffer.subarray(0, message.offset), 0)
    message.buffer = next
    return true
  }

  open(start: ChunkStart, kind: number): IncomingMessage | undefined {
    // Refused before allocating (PROTOCOL.md §9.1).
    if (start.total > this.maxMessageSize) {
      this.ctx.fail(new ProtocolError({ reason: "MessageTooLarge", detail: `${start.total} > ${this.maxMessageSize}` }))
      return undefined
    }
    return { _tag: "Message", start: { id: start.id, type: start.type, kind }, total: start.total, buffer: EMPTY, offset: 0 }
  }

  data(message: IncomingMessage, data: Uint8Array): void {
    if (message.offset + data.length > message.total) {
      return this.ctx.fail(new ProtocolError({ reason: "StreamIntegrity", detail: "more data than declared" }))
    }
    if (!this.reserve(message, data.length)) return
    message.buffer.set(data, message.offset)
    message.offset += data.length
  }

  end(message: IncomingMessage, end: ChunkEnd): Packet | undefined {
    if (end.status !== ChunkEndStatus.OK) {
      this.ctx.budget.refund(message.buffer.length)
      return undefined
    }
    // Growth is capped at `total`, so a complete message fills its buffer exactly.
    if (message.offset !== message.total || !intact(this.ctx, undefined, message.buffer, end.digest)) {
      this.ctx.fail(new ProtocolError({ reason: "StreamIntegrity" }))
      return undefined
    }
    return new Packet({ id: message.start.id, type: message.start.type, payload: message.buffer }, true)
  }
}
