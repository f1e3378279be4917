/**
 * Length-prefixed frames (PROTOCOL.md §2): `length: u32 big-endian ‖ type: u8 ‖ body[length]`.
 *
 * `length` counts only the body. The seed had no framing at all and assumed one `recv(4096)` was one
 * packet (README: the seed it re-creates); a stream transport may split or coalesce writes anywhere, so every frame says
 * how long it is, and the decoder reassembles frames whatever the chunk boundaries.
 *
 * This is the hot path for bulk transfers (docs/performance.md): no per-byte work on bodies, no allocation per
 * frame when a frame arrives whole, and one exact-size allocation when it arrives in pieces.
 */
import { ProtocolError } from "../errors.js"

/** The 4 length bytes and the type byte. */
export const FRAME_HEADER_LENGTH = 5

/** The largest length the 4-byte prefix can state. */
export const MAX_FRAME_LENGTH = 0xffffffff

/**
 * Writes a frame header at `offset` and returns the offset just past it, where the body goes. The caller
 * guarantees room and a body length within the limit the peer enforces (PROTOCOL.md §2).
 */
export const writeFrameHeader = (buf: Uint8Array, offset: number, type: number, bodyLength: number): number => {
  buf[offset] = bodyLength >>> 24
  buf[offset + 1] = bodyLength >>> 16
  buf[offset + 2] = bodyLength >>> 8
  buf[offset + 3] = bodyLength
  buf[offset + 4] = type
  return offset + FRAME_HEADER_LENGTH
}

/** A frame header on its own, for writers that send the body from its own buffer (or authenticate it). */
export const frameHeader = (type: number, bodyLength: number): Uint8Array => {
  const buf = new Uint8Array(FRAME_HEADER_LENGTH)
  writeFrameHeader(buf, 0, type, bodyLength)
  return buf
}

/** A whole frame in one allocation. */
export const encodeFrame = (type: number, body: Uint8Array): Uint8Array => {
  const buf = new Uint8Array(FRAME_HEADER_LENGTH + body.length)
  writeFrameHeader(buf, 0, type, body.length)
  buf.set(body, FRAME_HEADER_LENGTH)
  return buf
}

/**
 * Receives one frame. `header` is the 5 raw header bytes (the record layer authenticates them as AEAD
 * associated data, PROTOCOL.md §2). `header` and `body` may be views into the chunk that was pushed, so
 * they stay valid only as long as the pusher leaves that chunk alone. It must not throw or call `push`.
 */
export type FrameHandler = (type: number, header: Uint8Array, body: Uint8Array) => void

export interface FrameDecoder {
  /**
   * Feeds bytes, delivering every frame they complete, synchronously and in order. Returns the error that
   * stopped decoding, if any; once failed, the decoder stays failed and returns that same error.
   */
  readonly push: (chunk: Uint8Array, onFrame: FrameHandler) => ProtocolError | undefined
  /** Bytes held for an incomplete frame (header included). */
  readonly pending: () => number
  /** Bytes of buffer allocated for the incomplete frame: grows with `pending`, not with the declared length. */
  readonly held: () => number
  /**
   * Says the input is over. A frame cut short is `Malformed` with detail "truncated frame" (PROTOCOL.md §2),
   * so a cut connection is never mistaken for a finished one; after an earlier failure, that failure.
   * `undefined` means the input ended on a frame boundary.
   */
  readonly end: () => ProtocolError | undefined
  /**
   * From now on, gather split frames in one buffer reused from frame to frame. Only for a handler that
   * is done with `header` and `body` when it returns (a record layer that decrypts into new memory):
   * on the bulk path this saves a frame-sized allocation, and its garbage, per frame.
   */
  readonly reuseBuffers: () => void
  /**
   * Changes the largest body accepted from the next frame header on (the handshake starts with a small
   * limit and raises it once the peer is authenticated, PROTOCOL.md §10). Same range as the constructor.
   */
  readonly setMaxFrameSize: (maxFrameSize: number) => void
}

const readU32 = (bytes: Uint8Array, offset: number): number =>
  ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0

/**
 * A decoder that refuses any frame whose declared body length exceeds `maxFrameSize`, as soon as the 4
 * length bytes are in and before a single body byte is buffered (PROTOCOL.md §2). A frame that arrives
 * in pieces is gathered in a buffer that grows with the bytes that actually arrived, never sized by
 * the declared length alone (PROTOCOL.md §10): a peer that declares 1 MiB and sends 10 bytes costs
 * a few KiB, not 1 MiB.
 *
 * `maxFrameSize` must be an integer from 0 to 2^32 - 1; anything else is a programming error (RangeError).
 */
/**
 * Frame buffers are filled completely before anyone sees them, so they skip zero-filling: on the bulk
 * path that fill is a measurable share of the cost.
 */
const allocFrame = (size: number): Uint8Array => Buffer.allocUnsafeSlow(size)
/** The smallest gather buffer: below this, growing step by step would cost more copies than it saves. */
const MIN_GATHER = 64 * 1024

const checkMaxFrameSize = (maxFrameSize: number): number => {
  if (!Number.isInteger(maxFrameSize) || maxFrameSize < 0 || maxFrameSize > MAX_FRAME_LENGTH) {
    throw new RangeError(`maxFrameSize must be an integer from 0 to ${MAX_FRAME_LENGTH}, got ${maxFrameSize}`)
  }
  return maxFrameSize
}

export const makeFrameDecoder = (initialMaxFrameSize: number): FrameDecoder => new StreamDecoder(checkMaxFrameSize(initialMaxFrameSize))

/**
 * The decoder's state for one connection. A class, so that an idle connection's decoder is one
 * object, not a closure per step (docs/resources.md, "Memory of an idle session").
 *
 * A header split across chunks is gathered in `head` until its length is known; then the whole
 * frame, header included, moves to `frame`, whose capacity grows (doubling, capped at the frame's
 * size) as its bytes arrive.
 */
class StreamDecoder implements FrameDecoder {
  /** Made by the first header that arrives split. */
  private head: Uint8Array | undefined = undefined
  private headFill = 0
  private frame: Uint8Array | undefined = undefined
  /** The size of the frame being gathered, header included; `frame` may still be smaller. */
  private frameLength = 0
  private frameFill = 0
  private failed: ProtocolError | undefined = undefined
  private reuse = false
  private scratch: Uint8Array | undefined = undefined

  constructor(private maxFrameSize: number) {}

  /** A buffer for `needed` bytes of a frame of `frameLength`, keeping what `frame` already holds. */
  private grow(needed: number): Uint8Array {
    const current = this.frame
    if (current !== undefined && current.length >= needed) return current
    const scratch = this.scratch
    if (this.reuse && scratch !== undefined && scratch.length >= needed) {
      const view = scratch.subarray(0, Math.min(scratch.length, this.frameLength))
      if (current !== undefined && current.buffer !== scratch.buffer) view.set(current.subarray(0, this.frameFill), 0)
      return view
    }
    const size = Math.min(this.frameLength, Math.max(needed, MIN_GATHER, 2 * (current?.length ?? 0)))
    const next = allocFrame(size)
    if (current !== undefined) next.set(current.subarray(0, this.frameFill), 0)
    if (this.reuse) this.scratch = next
    return next
  }

  /** Starts gathering a frame of `length` body bytes from the first `bytes` of it. */
  private begin(length: number, bytes: Uint8Array): void {
    this.frameLength = FRAME_HEADER_LENGTH + length
    this.frame = undefined
    this.frameFill = 0
    const frame = this.grow(bytes.length)
    frame.set(bytes, 0)
    this.frame = frame
    this.frameFill = bytes.length
  }

  private fail(error: ProtocolError): ProtocolError {
    this.failed = error
    this.frame = undefined
    this.frameLength = 0
    this.frameFill = 0
    this.headFill = 0
    return error
  }

  private tooLarge(length: number): ProtocolError {
    return this.fail(
      new ProtocolError({
        reason: "FrameTooLarge",
        detail: `declared length ${length} exceeds maxFrameSize ${this.maxFrameSize}`
      })
    )
  }

  /** Copies what the frame still lacks from `chunk` at `offset`; returns the new offset. */
  private fill(chunk: Uint8Array, offset: number): number {
    const take = Math.min(this.frameLength - this.frameFill, chunk.length - offset)
    const target = this.grow(this.frameFill + take)
    target.set(chunk.subarray(offset, offset + take), this.frameFill)
    this.frame = target
    this.frameFill += take
    return offset + take
  }

  /** Hands over a completed frame; its buffer belongs to the handler from here on. */
  private deliver(onFrame: FrameHandler): void {
    const done = this.frame!.subarray(0, this.frameLength)
    this.frame = undefined
    this.frameLength = 0
    this.frameFill = 0
    onFrame(done[4]!, done.subarray(0, FRAME_HEADER_LENGTH), done.subarray(FRAME_HEADER_LENGTH))
  }

  /** Keeps the start of a header that the chunk cuts short. */
  private keepHead(chunk: Uint8Array, offset: number): void {
    const head = this.head ?? (this.head = new Uint8Array(FRAME_HEADER_LENGTH))
    head.set(chunk.subarray(offset), 0)
    this.headFill = chunk.length - offset
  }

  push(chunk: Uint8Array, onFrame: FrameHandler): ProtocolError | undefined {
    if (this.failed !== undefined) return this.failed
    const n = chunk.length
    let off = 0

    // First finish whatever the previous chunks left incomplete.
    if (this.frame !== undefined) {
      off = this.fill(chunk, off)
      if (this.frameFill < this.frameLength) return undefined
      this.deliver(onFrame)
    } else if (this.headFill > 0) {
      const head = this.head!
      while (this.headFill < FRAME_HEADER_LENGTH && off < n) head[this.headFill++] = chunk[off++]!
      if (this.headFill < 4) return undefined
      const length = readU32(head, 0)
      if (length > this.maxFrameSize) return this.tooLarge(length)
      if (this.headFill < FRAME_HEADER_LENGTH) return undefined
      this.headFill = 0
      this.begin(length, head)
      off = this.fill(chunk, off)
      if (this.frameFill < this.frameLength) return undefined
      this.deliver(onFrame)
    }

    // Then whole frames straight out of the chunk, as views; the common case for bulk data.
    for (;;) {
      const rest = n - off
      if (rest < 4) {
        if (rest > 0) this.keepHead(chunk, off)
        return undefined
      }
      const length = readU32(chunk, off)
      if (length > this.maxFrameSize) return this.tooLarge(length)
      if (rest < FRAME_HEADER_LENGTH) {
        this.keepHead(chunk, off)
        return undefined
      }
      const bodyEnd = off + FRAME_HEADER_LENGTH + length
      if (bodyEnd > n) {
        this.begin(length, chunk.subarray(off))
        return undefined
      }
      onFrame(chunk[off + 4]!, chunk.subarray(off, off + FRAME_HEADER_LENGTH), chunk.subarray(off + FRAME_HEADER_LENGTH, bodyEnd))
      off = bodyEnd
    }
  }

  pending(): number {
    return this.frame !== undefined ? this.frameFill : this.headFill
  }

  held(): number {
    return this.frame?.length ?? 0
  }

  end(): ProtocolError | undefined {
    if (this.failed !== undefined) return this.failed
    if (this.pending() === 0) return undefined
    return this.fail(new ProtocolError({ reason: "Malformed", detail: "truncated frame" }))
  }

  reuseBuffers(): void {
    this.reuse = true
  }

  setMaxFrameSize(next: number): void {
    this.maxFrameSize = checkMaxFrameSize(next)
  }
}
