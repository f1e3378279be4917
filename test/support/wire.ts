/**
 * Test helpers that work on the bytes of the wire: frame parsing, taps that remember the order in
 * which bytes entered the wire, frame-level man-in-the-middle relays for `MemorySocket`'s
 * `transform`, and raw peers that speak bytes instead of the protocol.
 */
import type * as Socket from "@effect/platform/Socket"
import { Effect, ExecutionStrategy, Exit, Fiber, Scope } from "effect"
import { concatBytes } from "../../src/internal/bytes.js"

export type Direction = "C->S" | "S->C"

/** One frame as it was on the wire: `len: u32 ‖ type: u8 ‖ body`. */
export interface WireFrame {
  readonly direction: Direction
  /** Index of the tap call in which the frame's first byte entered the wire (global across directions). */
  readonly tapIndex: number
  readonly bytes: Uint8Array
  readonly type: number
}

export { concatBytes }

export const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")
export const fromHex = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, "hex"))

const readU32 = (bytes: Uint8Array, offset: number): number =>
  ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0

/** Splits a byte stream into whole frames; returns them and the bytes of an incomplete last frame. */
export const splitFrames = (stream: Uint8Array): { readonly frames: Array<Uint8Array>; readonly rest: Uint8Array } => {
  const frames: Array<Uint8Array> = []
  let offset = 0
  while (stream.length - offset >= 5) {
    const end = offset + 5 + readU32(stream, offset)
    if (end > stream.length) break
    frames.push(stream.slice(offset, end))
    offset = end
  }
  return { frames, rest: stream.slice(offset) }
}

/** Whether `needle` occurs anywhere in `haystack`. */
export const containsBytes = (haystack: Uint8Array, needle: Uint8Array): boolean =>
  needle.length === 0 || Buffer.from(haystack).indexOf(Buffer.from(needle)) >= 0

/**
 * Records what enters the wire in both directions, in order. Pass `tap(direction)` as a
 * `MemorySocket` direction's `tap`.
 */
export const makeRecorder = () => {
  const chunks: Array<{ readonly direction: Direction; readonly index: number; readonly bytes: Uint8Array }> = []
  let index = 0
  const tap = (direction: Direction) => (bytes: Uint8Array): void => {
    chunks.push({ direction, index: index++, bytes })
  }
  /** All bytes one direction carried. */
  const stream = (direction: Direction): Uint8Array =>
    concatBytes(chunks.filter((c) => c.direction === direction).map((c) => c.bytes))
  /** Whole frames of one direction, each tagged with the tap call that carried its first byte. */
  const framesOf = (direction: Direction): Array<WireFrame> => {
    const out: Array<WireFrame> = []
    let buffer: Uint8Array = new Uint8Array(0)
    let bufferStart = 0
    for (const chunk of chunks) {
      if (chunk.direction !== direction) continue
      if (buffer.length === 0) bufferStart = chunk.index
      buffer = concatBytes([buffer, chunk.bytes])
      for (;;) {
        if (buffer.length < 5) break
        const end = 5 + readU32(buffer, 0)
        if (end > buffer.length) break
        out.push({ direction, tapIndex: bufferStart, bytes: buffer.slice(0, end), type: buffer[4]! })
        buffer = buffer.slice(end)
        bufferStart = chunk.index
      }
    }
    return out
  }
  /** Frames of both directions in the order they entered the wire. */
  const frames = (): Array<WireFrame> => {
    const all = [...framesOf("C->S"), ...framesOf("S->C")]
    // Stable: frames from the same tap call keep their order within their direction.
    return all.sort((a, b) => a.tapIndex - b.tapIndex)
  }
  return { tap, stream, framesOf, frames, chunks }
}

/**
 * A man in the middle that works on whole frames: `MemorySocket`'s `transform` hands it written
 * chunks, it reassembles frames and lets `relay(frame, index)` decide what goes on the wire instead
 * (nothing, the frame, a modified frame, several frames). `index` counts frames in this direction
 * from 0. Bytes of an incomplete frame are held until the frame is complete.
 */
export const frameRelay = (
  relay: (frame: Uint8Array, index: number) => ReadonlyArray<Uint8Array>
): ((chunk: Uint8Array) => Uint8Array | undefined) => {
  let pending: Uint8Array = new Uint8Array(0)
  let index = 0
  return (chunk) => {
    const { frames, rest } = splitFrames(concatBytes([pending, chunk]))
    pending = rest
    const out: Array<Uint8Array> = []
    for (const frame of frames) out.push(...relay(frame, index++))
    return out.length === 0 ? undefined : concatBytes(out)
  }
}

/** Rewrites the byte at an absolute stream offset, whatever the chunk boundaries. */
export const rewriteByteAt = (
  offset: number,
  rewrite: (byte: number) => number
): ((chunk: Uint8Array) => Uint8Array) => {
  let seen = 0
  return (chunk) => {
    const at = offset - seen
    seen += chunk.length
    if (at >= 0 && at < chunk.length) chunk[at] = rewrite(chunk[at]!) & 0xff
    return chunk
  }
}

/** A peer that speaks raw bytes: it reads everything into a buffer and writes what it is told. */
export interface RawPeer {
  readonly write: (bytes: Uint8Array) => Effect.Effect<void, Socket.SocketError>
  /** Everything received so far. */
  readonly received: () => Uint8Array
  /** Waits until at least `n` bytes have arrived (or the read side ended). */
  readonly waitFor: (n: number) => Effect.Effect<Uint8Array>
  /** Waits until `count` whole frames have arrived (or the read side ended); returns the frames. */
  readonly waitForFrames: (count: number) => Effect.Effect<Array<Uint8Array>>
  /** Completes when the read side has ended (end of stream or error). */
  readonly ended: Effect.Effect<void>
  /** Ends our write side. */
  readonly endWrite: Effect.Effect<void>
}

export const rawPeer = (socket: Socket.Socket): Effect.Effect<RawPeer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const parts: Array<Uint8Array> = []
    let total = 0
    let done = false
    const wake = yield* Effect.makeLatch(false)
    const reader = yield* socket.run((chunk) => {
      parts.push(new Uint8Array(chunk))
      total += chunk.length
      wake.unsafeOpen()
    }).pipe(
      Effect.exit,
      Effect.ensuring(Effect.sync(() => {
        done = true
        wake.unsafeOpen()
      })),
      Effect.forkScoped
    )
    const writerScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const write = yield* Scope.extend(socket.writer, writerScope)
    // Writes wait until our own run has opened; after this one, ending the write side takes effect.
    yield* Effect.ignore(write(new Uint8Array(0)))
    const received = () => concatBytes(parts)
    const waitUntil = (ready: () => boolean): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (ready() || done) return Effect.void
        wake.unsafeClose()
        return Effect.zipRight(wake.await, waitUntil(ready))
      })
    return {
      write: (bytes) => write(bytes),
      received,
      waitFor: (n) => Effect.zipRight(waitUntil(() => total >= n), Effect.sync(received)),
      waitForFrames: (count) =>
        Effect.zipRight(
          waitUntil(() => splitFrames(received()).frames.length >= count),
          Effect.sync(() => splitFrames(received()).frames)
        ),
      ended: Effect.asVoid(Fiber.await(reader)),
      endWrite: Scope.close(writerScope, Exit.void)
    }
  })
