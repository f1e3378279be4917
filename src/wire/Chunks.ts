/**
 * Chunked messages and streams (PROTOCOL.md §9): a payload too large for one frame, or of unknown
 * length, crosses as CHUNK_START, CHUNK_DATA…, CHUNK_END, all carrying the sender's stream id, so
 * several can interleave. Streams of unknown length are paced by STREAM_CREDIT from the receiver.
 *
 * Hand codecs: CHUNK_DATA is on the bulk path.
 */
import { Either } from "effect"
import { ProtocolError } from "../errors.js"
import type { PacketType } from "./PacketType.js"

export const ChunkFlags = {
  /** The packet answers a request (a REPLY rather than a PACKET, PROTOCOL.md §8.2); with STREAM, a streamed reply. */
  REPLY: 0x01,
  /** Length unknown up front: a stream, paced by credit. `total` is 0. */
  STREAM: 0x02,
  /** The packet is a request awaiting a reply (a REQUEST rather than a PACKET, PROTOCOL.md §8.2). */
  REQUEST: 0x04
} as const
const KNOWN_FLAGS = ChunkFlags.REPLY | ChunkFlags.STREAM | ChunkFlags.REQUEST

export const CHUNK_START_LENGTH = 18
export const STREAM_ID_LENGTH = 4

export interface ChunkStart {
  readonly streamId: number
  readonly flags: number
  readonly id: number
  readonly type: PacketType
  /** Total payload bytes; 0 for streams. */
  readonly total: number
}

const malformed = (detail: string) => new ProtocolError({ reason: "Malformed", detail })

export const encodeChunkStart = (start: ChunkStart): Uint8Array => {
  const out = new Uint8Array(CHUNK_START_LENGTH)
  const view = new DataView(out.buffer)
  view.setUint32(0, start.streamId)
  out[4] = start.flags
  view.setUint32(5, start.id)
  out[9] = start.type
  view.setBigUint64(10, BigInt(start.total))
  return out
}

export const decodeChunkStart = (body: Uint8Array): Either.Either<ChunkStart, ProtocolError> => {
  if (body.length !== CHUNK_START_LENGTH) return Either.left(malformed("chunk start length"))
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  const flags = body[4]!
  const type = body[9]!
  if ((flags & ~KNOWN_FLAGS) !== 0) return Either.left(malformed("chunk flags"))
  // A request is answered, a reply answers: one transfer cannot be both, and a request is never a stream (§9.1).
  if ((flags & ChunkFlags.REQUEST) !== 0 && (flags & (ChunkFlags.REPLY | ChunkFlags.STREAM)) !== 0) {
    return Either.left(malformed("chunk flags"))
  }
  if ((flags & ChunkFlags.STREAM) !== 0 && view.getBigUint64(10) !== 0n) return Either.left(malformed("stream with a total"))
  const total = view.getBigUint64(10)
  if (total > BigInt(Number.MAX_SAFE_INTEGER)) return Either.left(malformed("chunk total"))
  return Either.right({ streamId: view.getUint32(0), flags, id: view.getUint32(5), type, total: Number(total) })
}

/** The `streamId` that opens a CHUNK_DATA body; the data follows it without being copied next to it. */
export const encodeStreamHead = (streamId: number): Uint8Array => {
  const out = new Uint8Array(STREAM_ID_LENGTH)
  writeU32(out, 0, streamId)
  return out
}

/** Reads the leading stream id of CHUNK_DATA, CHUNK_END and STREAM_CREDIT bodies. */
export const readStreamId = (body: Uint8Array): number | undefined =>
  body.length < STREAM_ID_LENGTH ? undefined : ((body[0]! << 24) | (body[1]! << 16) | (body[2]! << 8) | body[3]!) >>> 0

export const ChunkEndStatus = { OK: 0, ABORTED: 1 } as const

/** `streamId ‖ status u8 ‖ digest?`: the SHA-256 digest of the whole payload, in plaintext mode only. */
export const encodeChunkEnd = (streamId: number, status: number, digest: Uint8Array | undefined): Uint8Array => {
  const out = new Uint8Array(STREAM_ID_LENGTH + 1 + (digest?.length ?? 0))
  writeU32(out, 0, streamId)
  out[4] = status
  if (digest !== undefined) out.set(digest, 5)
  return out
}

/** STREAM_CANCEL: the receiver of a stream wants no more of it (PROTOCOL.md §9.4). */
export const encodeStreamCancel = (streamId: number): Uint8Array => encodeStreamHead(streamId)

export const encodeStreamCredit = (streamId: number, bytes: number): Uint8Array => {
  const out = new Uint8Array(8)
  writeU32(out, 0, streamId)
  writeU32(out, 4, bytes)
  return out
}

export const writeU32 = (out: Uint8Array, offset: number, value: number): void => {
  out[offset] = value >>> 24
  out[offset + 1] = (value >>> 16) & 0xff
  out[offset + 2] = (value >>> 8) & 0xff
  out[offset + 3] = value & 0xff
}
