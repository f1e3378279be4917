/**
 * What the parts of a session share (docs/architecture.md, `session/`): the channel, the byte budget
 * that what the peer makes us hold is charged to (PROTOCOL.md §10.1), and how the session ended.
 * Each part gets this one object and keeps the rest of its state to itself, so that what crosses
 * between parts is named here.
 */
import type { Exit } from "effect"
import type { SecureChannel } from "../channel/SecureChannel.js"
import type { CryptoService, Sha256Hasher } from "../crypto/Crypto.js"
import { ProtocolError } from "../errors.js"
import { concatBytes } from "../internal/bytes.js"
import { budgetExhaustions, countTagged } from "../Observability.js"
import type { ByteBudget } from "./Budget.js"
import type { SessionError } from "./Session.js"

export interface SessionContext {
  readonly channel: SecureChannel
  readonly crypto: CryptoService
  /** Sealed pieces are authenticated already; plaintext transfers carry a digest (PROTOCOL.md §9.2). */
  readonly encrypted: boolean
  readonly budget: ByteBudget
  /**
   * How the session ended, once it has: set by the session's end handler alone, read by every part
   * before it starts work. A field rather than a getter, since it is read on every send.
   */
  ended: SessionError | undefined
  /** Ends the session from the frame path; the channel sends the matching alert (PROTOCOL.md §6). */
  readonly fail: (error: ProtocolError) => void
  /** Charges `bytes` to the budget; on refusal the session ends and `false` comes back. */
  readonly charge: (bytes: number) => boolean
}

export const makeContext = (
  channel: SecureChannel,
  crypto: CryptoService,
  budget: ByteBudget,
  maxBuffered: number
): SessionContext => new Shared(channel, crypto, budget, maxBuffered)

/** A class, so that what every part of an idle session shares is one object (docs/resources.md). */
class Shared implements SessionContext {
  readonly encrypted: boolean
  ended: SessionError | undefined = undefined

  constructor(
    readonly channel: SecureChannel,
    readonly crypto: CryptoService,
    readonly budget: ByteBudget,
    private readonly maxBuffered: number
  ) {
    this.encrypted = channel.info.encrypted
  }

  fail(error: ProtocolError): void {
    this.channel.fail(error)
  }

  charge(bytes: number): boolean {
    const refusal = this.budget.charge(bytes)
    if (refusal === undefined) return true
    countTagged(budgetExhaustions, { reason: refusal })
    this.fail(
      new ProtocolError({
        reason: "LimitExceeded",
        detail: refusal === "ConnectionLimit"
          ? `more than maxBufferedBytes (${this.maxBuffered}) held for the peer`
          : "the server's memory budget is exhausted"
      })
    )
    return false
  }
}

/** Resumes a caller waiting in `Effect.async`: how waiting is done without a Deferred per message (docs/performance.md). */
export type Resume<A, E = SessionError> = (exit: Exit.Exit<A, E>) => void

export const EMPTY = new Uint8Array(0)

export const malformed = (detail: string) => new ProtocolError({ reason: "Malformed", detail })

/**
 * Bytes from the frame path that a session keeps: a view that is most of its buffer is kept as is;
 * a small view into a large buffer (a plaintext frame inside a socket read) is copied, so that what
 * the budget is charged is what memory holds (docs/resources.md).
 */
export const own = (bytes: Uint8Array): Uint8Array => (bytes.byteLength * 2 >= bytes.buffer.byteLength ? bytes : bytes.slice())

/** Data held in arrival order: a stream's queue, a chunked message's pieces. */
export interface Pieces {
  readonly chunks: Array<Uint8Array>
  /** The buffer small pieces are packed into (`queueChunk`). */
  pack: Uint8Array | undefined
}

/** Data under this size is packed with its neighbours, in buffers from `PACK_MIN` to `PACK_MAX` bytes. */
const PACK_BELOW = 4096
const PACK_MIN = 256
const PACK_MAX = 64 * 1024

/**
 * Appends data to `pieces`. Small pieces are packed into a shared buffer behind the last one, so
 * that a peer sending many tiny CHUNK_DATA frames costs memory in proportion to its bytes, not one
 * object per frame (PROTOCOL.md §10.1); chunk boundaries are not kept. Each new pack is twice the
 * last, from `PACK_MIN`: what the packs hold beyond the bytes charged stays within about as much again,
 * where a full-size pack for a transfer's first byte would let a peer that opens many transfers
 * hold 64 KiB uncharged per byte.
 */
export const queueChunk = (pieces: Pieces, data: Uint8Array) => {
  const last = pieces.chunks.length - 1
  const tail = pieces.chunks[last]
  if (data.length < PACK_BELOW && tail !== undefined && tail.buffer === pieces.pack?.buffer) {
    const pack = pieces.pack
    const end = tail.byteOffset - pack.byteOffset + tail.length
    if (end + data.length <= pack.length) {
      pack.set(data, end)
      pieces.chunks[last] = pack.subarray(tail.byteOffset - pack.byteOffset, end + data.length)
      return
    }
  }
  if (data.length < PACK_BELOW) {
    pieces.pack = new Uint8Array(Math.min(PACK_MAX, Math.max(PACK_MIN, 2 * (pieces.pack?.length ?? 0), data.length)))
    pieces.pack.set(data, 0)
    pieces.chunks.push(pieces.pack.subarray(0, data.length))
    return
  }
  pieces.chunks.push(own(data))
}

/** Chunks as one payload; a single chunk is not copied unless it is a small view (`own`). */
export const joinChunks = (chunks: ReadonlyArray<Uint8Array>): Uint8Array =>
  chunks.length === 1 ? own(chunks[0]!) : concatBytes(chunks)

/** A running digest of a transfer, in plaintext mode only (PROTOCOL.md §9.2). */
export const newHasher = (ctx: SessionContext): Sha256Hasher | undefined =>
  ctx.encrypted ? undefined : ctx.crypto.sha256Hasher()

/**
 * Whether a transfer that ended complete is intact: always when sealed; in plaintext mode when the
 * SHA-256 of what arrived (`hasher`'s, or of `data` when given) is the `digest` its CHUNK_END carried.
 */
export const intact = (
  ctx: SessionContext,
  hasher: Sha256Hasher | undefined,
  data: Uint8Array | undefined,
  digest: Uint8Array | undefined
): boolean => {
  if (ctx.encrypted) return true
  const ours = data === undefined ? hasher?.digest() : ctx.crypto.sha256(data)
  return ours !== undefined && digest !== undefined && ctx.crypto.timingSafeEqual(ours, digest)
}
