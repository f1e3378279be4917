import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { ProtocolError } from "../src/errors.js"
import { concatBytes } from "../src/internal/bytes.js"
import {
  encodeFrame,
  FRAME_HEADER_LENGTH,
  frameHeader,
  makeFrameDecoder,
  writeFrameHeader
} from "../src/wire/Frame.js"

interface Decoded {
  readonly type: number
  readonly header: ReadonlyArray<number>
  readonly body: ReadonlyArray<number>
}

const frameArb = FastCheck.record({
  type: FastCheck.integer({ min: 0, max: 255 }),
  body: FastCheck.uint8Array({ maxLength: 300 })
})
const framesArb = FastCheck.array(frameArb, { maxLength: 20 })


// Cuts `bytes` at the given points (taken modulo its length), so any split, including empty chunks.
const split = (bytes: Uint8Array, points: ReadonlyArray<number>): Array<Uint8Array> => {
  const cuts = [...new Set(points.map((p) => (bytes.length === 0 ? 0 : p % (bytes.length + 1))))].sort((a, b) => a - b)
  const chunks: Array<Uint8Array> = []
  let prev = 0
  for (const c of cuts) {
    chunks.push(bytes.subarray(prev, c))
    prev = c
  }
  chunks.push(bytes.subarray(prev))
  return chunks
}

const oneByteChunks = (bytes: Uint8Array): Array<Uint8Array> =>
  Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1))

const run = (maxFrameSize: number, chunks: ReadonlyArray<Uint8Array>, reuseBuffers = false) => {
  const decoder = makeFrameDecoder(maxFrameSize)
  if (reuseBuffers) decoder.reuseBuffers()
  const frames: Array<Decoded> = []
  let error: ProtocolError | undefined
  const onFrame = (type: number, header: Uint8Array, body: Uint8Array): void => {
    frames.push({ type, header: Array.from(header), body: Array.from(body) })
  }
  for (const chunk of chunks) {
    error = decoder.push(chunk, onFrame)
    if (error !== undefined) break
  }
  return { frames, error, end: decoder.end(), pending: decoder.pending() }
}

const expected = (frames: ReadonlyArray<{ type: number; body: Uint8Array }>): Array<Decoded> =>
  frames.map(({ body, type }) => ({
    type,
    header: Array.from(frameHeader(type, body.length)),
    body: Array.from(body)
  }))

describe("frame encoding (PROTOCOL.md §2)", () => {
  it("lays out length (u32 BE, body only), type, body", () => {
    expect(Array.from(encodeFrame(0x17, new Uint8Array([9, 8, 7])))).toEqual([0, 0, 0, 3, 0x17, 9, 8, 7])
    expect(Array.from(frameHeader(0xff, 0x01020304))).toEqual([1, 2, 3, 4, 0xff])
    expect(Array.from(frameHeader(0, 0xffffffff))).toEqual([0xff, 0xff, 0xff, 0xff, 0])
    expect(FRAME_HEADER_LENGTH).toBe(5)
  })

  it.prop("writeFrameHeader + body equals encodeFrame", [frameArb, FastCheck.nat({ max: 32 })], ([{ body, type }, at]) => {
    const buf = new Uint8Array(at + FRAME_HEADER_LENGTH + body.length)
    const bodyAt = writeFrameHeader(buf, at, type, body.length)
    expect(bodyAt).toBe(at + FRAME_HEADER_LENGTH)
    buf.set(body, bodyAt)
    expect(Array.from(buf.subarray(at))).toEqual(Array.from(encodeFrame(type, body)))
    expect(Array.from(concatBytes([frameHeader(type, body.length), body]))).toEqual(Array.from(encodeFrame(type, body)))
  })
})

describe("frame decoder", () => {
  it.prop(
    "with reused buffers, a handler that copies what it keeps sees the same frames",
    [framesArb, FastCheck.array(FastCheck.nat(), { maxLength: 40 })],
    ([frames, points]) => {
      const stream = concatBytes(frames.map(({ body, type }) => encodeFrame(type, body)))
      for (const chunks of [split(stream, points), oneByteChunks(stream)]) {
        const got = run(300, chunks, true)
        expect(got.error).toBeUndefined()
        expect(got.frames).toEqual(expected(frames))
      }
    }
  )

  it.prop(
    "decodes the same frames whatever the chunk boundaries",
    [framesArb, FastCheck.array(FastCheck.nat(), { maxLength: 40 })],
    ([frames, points]) => {
      const stream = concatBytes(frames.map(({ body, type }) => encodeFrame(type, body)))
      const want = expected(frames)
      for (const chunks of [split(stream, points), oneByteChunks(stream), [stream]]) {
        const got = run(300, chunks)
        expect(got.error).toBeUndefined()
        expect(got.frames).toEqual(want)
        expect(got.pending).toBe(0)
        expect(got.end).toBeUndefined()
      }
    }
  )

  it("delivers synchronously, before push returns", () => {
    const decoder = makeFrameDecoder(16)
    let seen = 0
    decoder.push(concatBytes([encodeFrame(1, new Uint8Array(2)), encodeFrame(2, new Uint8Array(0))]), () => {
      seen++
    })
    expect(seen).toBe(2)
  })

  it("a frame that arrives whole is a view into the chunk", () => {
    const decoder = makeFrameDecoder(1024)
    const chunk = concatBytes([encodeFrame(1, new Uint8Array([1, 2, 3])), encodeFrame(2, new Uint8Array([4, 5]))])
    const bodies: Array<Uint8Array> = []
    const headers: Array<Uint8Array> = []
    decoder.push(chunk, (_type, header, body) => {
      headers.push(header)
      bodies.push(body)
    })
    expect(bodies.map((b) => b.buffer === chunk.buffer)).toEqual([true, true])
    expect(bodies.map((b) => b.byteOffset)).toEqual([5, 13])
    expect(headers.map((h) => h.byteOffset)).toEqual([0, 8])
  })

  it.prop(
    "a frame that arrives in pieces is gathered in one buffer of its exact size",
    [frameArb, FastCheck.array(FastCheck.nat(), { minLength: 1, maxLength: 10 })],
    ([{ body, type }, points]) => {
      const frame = encodeFrame(type, body)
      const decoder = makeFrameDecoder(300)
      const got: Array<{ header: Uint8Array; body: Uint8Array }> = []
      const chunks = split(frame, points)
      for (const chunk of chunks) {
        decoder.push(chunk, (_t, header, b) => {
          got.push({ header, body: b })
        })
      }
      expect(got.length).toBe(1)
      const [only] = got
      if (only !== undefined && chunks.filter((c) => c.length > 0).length > 1) {
        expect(only.body.buffer).not.toBe(frame.buffer)
        expect(only.body.buffer.byteLength).toBe(frame.length)
        expect(only.header.buffer).toBe(only.body.buffer)
        expect(Array.from(only.body)).toEqual(Array.from(body))
      }
    }
  )

  it("refuses an oversized declared length from the header alone, before any body byte", () => {
    const decoder = makeFrameDecoder(1024)
    const never = (): void => {
      throw new Error("no frame expected")
    }
    expect(decoder.push(frameHeader(1, 1024), never)).toBeUndefined()
    expect(decoder.pending()).toBe(FRAME_HEADER_LENGTH)

    const big = makeFrameDecoder(1024)
    const error = big.push(frameHeader(1, 1025), never)
    expect(error).toBeInstanceOf(ProtocolError)
    expect(error?.reason).toBe("FrameTooLarge")
    expect(big.pending()).toBeLessThanOrEqual(FRAME_HEADER_LENGTH)
    // Stays failed with the same error, and buffers nothing more.
    expect(big.push(new Uint8Array(4096), never)).toBe(error)
    expect(big.pending()).toBeLessThanOrEqual(FRAME_HEADER_LENGTH)
    expect(big.end()).toBe(error)
  })

  it("refuses as soon as the 4 length bytes are in, even one byte at a time", () => {
    const decoder = makeFrameDecoder(100)
    const header = frameHeader(7, 0xffffffff)
    const never = (): void => {
      throw new Error("no frame expected")
    }
    expect(decoder.push(header.subarray(0, 1), never)).toBeUndefined()
    expect(decoder.push(header.subarray(1, 2), never)).toBeUndefined()
    expect(decoder.push(header.subarray(2, 3), never)).toBeUndefined()
    expect(decoder.push(header.subarray(3, 4), never)?.reason).toBe("FrameTooLarge")
    expect(decoder.pending()).toBeLessThanOrEqual(4)
  })

  it("delivers the good frames before an oversized one, then stops", () => {
    const types: Array<number> = []
    const chunk = concatBytes([encodeFrame(1, new Uint8Array(3)), frameHeader(2, 11), encodeFrame(3, new Uint8Array(1))])
    const error = makeFrameDecoder(10).push(chunk, (t) => {
      types.push(t)
    })
    expect(error?.reason).toBe("FrameTooLarge")
    expect(types).toEqual([1])
  })

  it("accepts a body of exactly maxFrameSize, and an empty body with maxFrameSize 0", () => {
    expect(run(64, [encodeFrame(1, new Uint8Array(64))]).frames.length).toBe(1)
    expect(run(63, [encodeFrame(1, new Uint8Array(64))]).error?.reason).toBe("FrameTooLarge")
    expect(run(0, [encodeFrame(1, new Uint8Array(0))]).frames.length).toBe(1)
  })

  it("rejects a maxFrameSize that is not a u32 length", () => {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 32]) expect(() => makeFrameDecoder(bad)).toThrow(RangeError)
  })

  it.prop(
    "input that ends mid-frame is Malformed (truncated frame) at end()",
    [FastCheck.array(frameArb, { minLength: 1, maxLength: 5 }), FastCheck.nat(), FastCheck.array(FastCheck.nat(), { maxLength: 5 })],
    ([frames, cut, points]) => {
      const encoded = frames.map(({ body, type }) => encodeFrame(type, body))
      const stream = concatBytes(encoded)
      const boundaries = new Set<number>([0])
      let at = 0
      for (const f of encoded) boundaries.add((at += f.length))
      const length = cut % stream.length
      const truncated = stream.subarray(0, length)
      const got = run(300, split(truncated, points))
      expect(got.error).toBeUndefined()
      if (boundaries.has(length)) {
        expect(got.end).toBeUndefined()
      } else {
        expect(got.end).toBeInstanceOf(ProtocolError)
        expect(got.end?.reason).toBe("Malformed")
        expect(got.end?.detail).toBe("truncated frame")
        expect(got.pending).toBe(0)
      }
    }
  )

  it.prop(
    "random garbage never throws: frames, FrameTooLarge, or Malformed at end",
    [FastCheck.array(FastCheck.uint8Array({ maxLength: 64 }), { maxLength: 10 }), FastCheck.nat({ max: 64 })],
    ([chunks, max]) => {
      const got = run(max, chunks)
      if (got.error !== undefined) expect(got.error.reason).toBe("FrameTooLarge")
      if (got.end !== undefined) expect(["FrameTooLarge", "Malformed"]).toContain(got.end.reason)
      for (const f of got.frames) expect(f.body.length).toBeLessThanOrEqual(max)
    }
  )

  it("pending() counts buffered bytes, header included", () => {
    const decoder = makeFrameDecoder(100)
    const frame = encodeFrame(5, new Uint8Array(50))
    const ignore = (): void => {}
    decoder.push(frame.subarray(0, 3), ignore)
    expect(decoder.pending()).toBe(3)
    decoder.push(frame.subarray(3, 20), ignore)
    expect(decoder.pending()).toBe(20)
    decoder.push(frame.subarray(20), ignore)
    expect(decoder.pending()).toBe(0)
  })

  it.each([false, true])("a split frame's buffer grows with the bytes that arrived, not the declared length (reuse %s)", (reuse) => {
    const size = 4 * 1024 * 1024
    const decoder = makeFrameDecoder(size)
    if (reuse) decoder.reuseBuffers()
    const frame = encodeFrame(7, Uint8Array.from({ length: size }, (_, i) => i & 0xff))
    const got: Array<Uint8Array> = []
    decoder.push(frame.subarray(0, 15), (_type, _header, body) => got.push(Uint8Array.from(body)))
    expect(decoder.pending()).toBe(15)
    expect(decoder.held()).toBeLessThanOrEqual(64 * 1024)
    decoder.push(frame.subarray(15, 300_000), () => {})
    expect(decoder.held()).toBeLessThan(2 * 300_000)
    decoder.push(frame.subarray(300_000), (_type, _header, body) => got.push(Uint8Array.from(body)))
    expect(got).toHaveLength(1)
    expect(Buffer.compare(got[0]!, frame.subarray(5))).toBe(0)
    expect(decoder.held()).toBe(0)
  })
})
