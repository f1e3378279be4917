/**
 * The typed layer's framing inside packets (PROTOCOL.md §12.2, §12.3): the status byte of a call's
 * reply, and the items of a streamed reply.
 *
 * A streamed reply is a byte stream (§9.3) of items `status: u8 ‖ length: u32 ‖ body`. Items may
 * span CHUNK_DATA pieces and several may share one; the reader below reassembles them, holding only
 * bytes that arrived and refusing an item over its limit before gathering any of it.
 */
import { writeU32 } from "./Chunks.js"

/** The first byte of a call's REPLY payload. */
export const ReplyStatus = { SUCCESS: 0, FAILURE: 1 } as const

/** The status of a stream item; FAILURE and ERROR end the stream. */
export const ItemStatus = { ITEM: 0, FAILURE: 1, ERROR: 2 } as const

export const ITEM_HEADER_LENGTH = 5

export const encodeReply = (status: number, body: Uint8Array): Uint8Array => {
  const out = new Uint8Array(1 + body.length)
  out[0] = status
  out.set(body, 1)
  return out
}

/** `status ‖ body`, or `undefined` for a payload that has no status byte or an unknown one. */
export const decodeReply = (payload: Uint8Array): { readonly status: number; readonly body: Uint8Array } | undefined => {
  const status = payload[0]
  return status === ReplyStatus.SUCCESS || status === ReplyStatus.FAILURE ? { status, body: payload.subarray(1) } : undefined
}

/** Appends one item to `out` at `offset`; returns the offset after it. */
export const encodeItemInto = (out: Uint8Array, offset: number, status: number, body: Uint8Array): number => {
  out[offset] = status
  writeU32(out, offset + 1, body.length)
  out.set(body, offset + ITEM_HEADER_LENGTH)
  return offset + ITEM_HEADER_LENGTH + body.length
}

export interface Item {
  readonly status: number
  readonly body: Uint8Array
}

export interface ItemReader {
  /** The items completed by `chunk`, or why the stream is malformed. */
  readonly push: (chunk: Uint8Array) => ReadonlyArray<Item> | string
  /** Whether the bytes so far end exactly at an item boundary. */
  readonly atBoundary: () => boolean
}

export const makeItemReader = (maxItemSize: number): ItemReader => {
  const header = new Uint8Array(ITEM_HEADER_LENGTH)
  let headerFill = 0
  let status = 0
  let bodyLength = -1
  let parts: Array<Uint8Array> = []
  let gathered = 0

  const push = (chunk: Uint8Array): ReadonlyArray<Item> | string => {
    const items: Array<Item> = []
    let i = 0
    while (i < chunk.length) {
      if (bodyLength < 0) {
        const take = Math.min(ITEM_HEADER_LENGTH - headerFill, chunk.length - i)
        header.set(chunk.subarray(i, i + take), headerFill)
        headerFill += take
        i += take
        if (headerFill < ITEM_HEADER_LENGTH) break
        headerFill = 0
        status = header[0]!
        if (status !== ItemStatus.ITEM && status !== ItemStatus.FAILURE && status !== ItemStatus.ERROR) return `item status ${status}`
        bodyLength = ((header[1]! << 24) | (header[2]! << 16) | (header[3]! << 8) | header[4]!) >>> 0
        if (bodyLength > maxItemSize) return `an item of ${bodyLength} bytes, over ${maxItemSize}`
      }
      const take = Math.min(bodyLength - gathered, chunk.length - i)
      // A whole item inside this chunk is handed over as a view; one in pieces is gathered.
      if (gathered === 0 && take === bodyLength) {
        items.push({ status, body: chunk.subarray(i, i + take) })
      } else {
        parts.push(chunk.slice(i, i + take))
        gathered += take
        if (gathered === bodyLength) {
          const body = new Uint8Array(bodyLength)
          let offset = 0
          for (const part of parts) {
            body.set(part, offset)
            offset += part.length
          }
          items.push({ status, body })
          parts = []
          gathered = 0
        } else {
          i += take
          break
        }
      }
      i += take
      bodyLength = -1
    }
    return items
  }

  return { push, atBoundary: () => bodyLength < 0 && headerFill === 0 }
}
