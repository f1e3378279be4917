/**
 * BATCH (PROTOCOL.md §7.3): several session messages in one frame, so that what a writer has ready
 * at once is sealed as one record (one AEAD operation and one tag) instead of one each.
 *
 * Body: one or more items `type: u8 ‖ length: u16 ‖ body[length]`, at most `BATCH_LIMIT` bytes in all.
 * Only the session's own messages may be items: a batch never holds another batch, a key update, a
 * close or an alert, which keep their own frames so that their place in the sequence is exact.
 */
import { ProtocolError } from "../errors.js"
import { MessageType } from "./Messages.js"

/** The largest BATCH body: TLS's record size, and far below any session's frame limit (§10.1). */
export const BATCH_LIMIT = 16 * 1024
export const BATCH_ITEM_HEADER = 3

const ITEM_TYPES: ReadonlySet<number> = new Set([
  MessageType.PACKET,
  MessageType.CHUNK_START,
  MessageType.CHUNK_DATA,
  MessageType.CHUNK_END,
  MessageType.STREAM_CREDIT,
  MessageType.REPLY,
  MessageType.REQUEST,
  MessageType.REPLY_ERROR,
  MessageType.STREAM_CANCEL
])

/** Whether a message of `type` may travel in a batch. */
export const batchable = (type: number): boolean => ITEM_TYPES.has(type)

export interface BatchItem {
  readonly type: number
  readonly head: Uint8Array
  readonly data: Uint8Array
}

/** The body of a BATCH of `items`, whose headers and bodies take `length` bytes in all. */
export const encodeBatch = (items: ReadonlyArray<BatchItem>, length: number): Uint8Array => {
  const out = new Uint8Array(length)
  let offset = 0
  for (const item of items) {
    const size = item.head.length + item.data.length
    out[offset] = item.type
    out[offset + 1] = size >>> 8
    out[offset + 2] = size & 0xff
    out.set(item.head, offset + BATCH_ITEM_HEADER)
    out.set(item.data, offset + BATCH_ITEM_HEADER + item.head.length)
    offset += BATCH_ITEM_HEADER + size
  }
  return out
}

const malformed = (detail: string) => new ProtocolError({ reason: "Malformed", detail })

/**
 * Hands each item of a BATCH body to `deliver`, in order, as views into `body`. Stops at the first
 * fault: an empty or over-long body, a truncated item, or a type that may not be batched.
 */
export const decodeBatch = (body: Uint8Array, deliver: (type: number, body: Uint8Array) => void): ProtocolError | undefined => {
  if (body.length === 0 || body.length > BATCH_LIMIT) return malformed("batch length")
  let offset = 0
  while (offset < body.length) {
    if (offset + BATCH_ITEM_HEADER > body.length) return malformed("truncated batch item")
    const type = body[offset]!
    const size = (body[offset + 1]! << 8) | body[offset + 2]!
    const start = offset + BATCH_ITEM_HEADER
    if (start + size > body.length) return malformed("truncated batch item")
    if (!ITEM_TYPES.has(type)) return malformed(`message type ${type} in a batch`)
    deliver(type, body.subarray(start, start + size))
    offset = start + size
  }
  return undefined
}
