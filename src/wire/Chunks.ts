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
  body.length < STREAM_ID_LENGTH ? undefined : readU32(body, 0)

/**
 * The data of a CHUNK_DATA body, after its stream id: a view, not a copy, since CHUNK_DATA is the bulk
 * path. Call after `readStreamId` has found the id.
 */
export const chunkData = (body: Uint8Array): Uint8Array => body.subarray(STREAM_ID_LENGTH)

export const ChunkEndStatus = { OK: 0, ABORTED: 1 } as const
export type ChunkEndStatus = (typeof ChunkEndStatus)[keyof typeof ChunkEndStatus]

/** SHA-256, the digest a plaintext CHUNK_END carries (PROTOCOL.md §9.2). */
export const CHUNK_DIGEST_LENGTH = 32

export interface ChunkEnd {
  readonly streamId: number
  readonly status: ChunkEndStatus
  /** SHA-256 of the whole payload: present exactly on a complete transfer in plaintext mode. */
  readonly digest: Uint8Array | undefined
}

/**
 * CHUNK_END (PROTOCOL.md §9.2). `digested`: the channel is plaintext, so a complete transfer carries
 * its digest; sealed pieces are authenticated already and carry none. A digest where it must be
 * absent, or none where it must be present, is `Malformed` like an unknown status.
 */
export const decodeChunkEnd = (body: Uint8Array, digested: boolean): Either.Either<ChunkEnd, ProtocolError> => {
  // Too short to say how the transfer ended: the session reports it as it reports an end of no stream.
  if (body.length < STREAM_ID_LENGTH + 1) return Either.left(malformed("end of unknown stream"))
  const status = body[STREAM_ID_LENGTH]
  if (status !== ChunkEndStatus.OK && status !== ChunkEndStatus.ABORTED) return Either.left(malformed("chunk end"))
  const digestLength = digested && status === ChunkEndStatus.OK ? CHUNK_DIGEST_LENGTH : 0
  if (body.length !== STREAM_ID_LENGTH + 1 + digestLength) return Either.left(malformed("chunk end"))
  return Either.right({
    streamId: readU32(body, 0),
    status,
    digest: digestLength === 0 ? undefined : body.subarray(STREAM_ID_LENGTH + 1)
  })
}

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

/** The stream id of a STREAM_CANCEL, whose body is exactly that (PROTOCOL.md §9.4). */
export const decodeStreamCancel = (body: Uint8Array): Either.Either<number, ProtocolError> =>
  body.length === STREAM_ID_LENGTH ? Either.right(readU32(body, 0)) : Either.left(malformed("stream cancel"))

/** Credit every stream starts with (PROTOCOL.md §9.3). */
export const INITIAL_STREAM_CREDIT = 1024 * 1024

export const STREAM_CREDIT_LENGTH = 8

export interface StreamCredit {
  readonly streamId: number
  /** Further CHUNK_DATA bytes the receiver grants. */
  readonly bytes: number
}

export const encodeStreamCredit = (streamId: number, bytes: number): Uint8Array => {
  const out = new Uint8Array(STREAM_CREDIT_LENGTH)
  writeU32(out, 0, streamId)
  writeU32(out, 4, bytes)
  return out
}

/** STREAM_CREDIT (PROTOCOL.md §9.3): exactly `stream_id ‖ bytes`. */
export const decodeStreamCredit = (body: Uint8Array): Either.Either<StreamCredit, ProtocolError> =>
  body.length === STREAM_CREDIT_LENGTH
    ? Either.right({ streamId: readU32(body, 0), bytes: readU32(body, 4) })
    : Either.left(malformed("stream credit"))

export const writeU32 = (out: Uint8Array, offset: number, value: number): void => {
  out[offset] = value >>> 24
  out[offset + 1] = (value >>> 16) & 0xff
  out[offset + 2] = (value >>> 8) & 0xff
  out[offset + 3] = value & 0xff
}

const readU32 = (bytes: Uint8Array, offset: number): number =>
  ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0
