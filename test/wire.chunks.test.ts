import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import { ProtocolError } from "../src/errors.js"
import {
  CHUNK_DIGEST_LENGTH,
  chunkData,
  ChunkEndStatus,
  decodeChunkEnd,
  decodeStreamCancel,
  decodeStreamCredit,
  encodeChunkEnd,
  encodeStreamCancel,
  encodeStreamCredit,
  encodeStreamHead,
  readStreamId,
  STREAM_CREDIT_LENGTH
} from "../src/wire/Chunks.js"

const u32 = FastCheck.integer({ min: 0, max: 0xffffffff })
const digest = Uint8Array.from({ length: CHUNK_DIGEST_LENGTH }, (_, i) => i + 1)

const expectMalformed = <A>(result: Either.Either<A, ProtocolError>, detail: string): void => {
  expect(Either.isLeft(result)).toBe(true)
  if (Either.isLeft(result)) {
    expect(result.left).toBeInstanceOf(ProtocolError)
    expect(result.left).toMatchObject({ reason: "Malformed", detail })
  }
}

const right = <A>(result: Either.Either<A, ProtocolError>): A => {
  if (Either.isLeft(result)) throw new Error(`expected a decoded value, got ${result.left.detail ?? result.left.reason}`)
  return result.right
}

describe("CHUNK_DATA (PROTOCOL.md §9.2)", () => {
  it("the stream id leads the body and the data after it is a view, not a copy", () => {
    const body = new Uint8Array([0x01, 0x02, 0x03, 0x04, 9, 8, 7])
    expect(readStreamId(body)).toBe(0x01020304)
    const data = chunkData(body)
    expect(Array.from(data)).toEqual([9, 8, 7])
    expect(data.buffer).toBe(body.buffer)
    expect(readStreamId(body.subarray(0, 3))).toBeUndefined()
  })

  it("reads every u32 stream id back as encodeStreamHead wrote it", () => {
    FastCheck.assert(FastCheck.property(u32, (id) => readStreamId(encodeStreamHead(id)) === id))
  })
})

describe("CHUNK_END (PROTOCOL.md §9.2)", () => {
  it("round-trips a sealed end (no digest) and a plaintext one (digest on success only)", () => {
    FastCheck.assert(FastCheck.property(u32, (streamId) => {
      expect(right(decodeChunkEnd(encodeChunkEnd(streamId, ChunkEndStatus.OK, undefined), false)))
        .toEqual({ streamId, status: ChunkEndStatus.OK, digest: undefined })
      expect(right(decodeChunkEnd(encodeChunkEnd(streamId, ChunkEndStatus.ABORTED, undefined), false)))
        .toEqual({ streamId, status: ChunkEndStatus.ABORTED, digest: undefined })
      expect(right(decodeChunkEnd(encodeChunkEnd(streamId, ChunkEndStatus.ABORTED, undefined), true)))
        .toEqual({ streamId, status: ChunkEndStatus.ABORTED, digest: undefined })
      const ended = right(decodeChunkEnd(encodeChunkEnd(streamId, ChunkEndStatus.OK, digest), true))
      expect(ended.streamId).toBe(streamId)
      expect(ended.status).toBe(ChunkEndStatus.OK)
      expect(Array.from(ended.digest ?? [])).toEqual(Array.from(digest))
    }))
  })

  it("refuses any status but complete and aborted", () => {
    for (let status = 2; status < 256; status++) {
      expectMalformed(decodeChunkEnd(encodeChunkEnd(1, status, undefined), false), "chunk end")
      expectMalformed(decodeChunkEnd(encodeChunkEnd(1, status, digest), true), "chunk end")
    }
  })

  it("refuses a digest where it must be absent and its absence where it must be present", () => {
    // Sealed: never a digest.
    expectMalformed(decodeChunkEnd(encodeChunkEnd(1, ChunkEndStatus.OK, digest), false), "chunk end")
    // Plaintext: a digest on success, of exactly 32 bytes, and none on abort.
    expectMalformed(decodeChunkEnd(encodeChunkEnd(1, ChunkEndStatus.OK, undefined), true), "chunk end")
    expectMalformed(decodeChunkEnd(encodeChunkEnd(1, ChunkEndStatus.OK, digest.subarray(1)), true), "chunk end")
    expectMalformed(decodeChunkEnd(encodeChunkEnd(1, ChunkEndStatus.OK, Uint8Array.of(...digest, 0)), true), "chunk end")
    expectMalformed(decodeChunkEnd(encodeChunkEnd(1, ChunkEndStatus.ABORTED, digest), true), "chunk end")
    // Trailing bytes of any kind.
    expectMalformed(decodeChunkEnd(Uint8Array.of(0, 0, 0, 1, ChunkEndStatus.OK, 0), false), "chunk end")
  })

  it("refuses a body too short to carry its status", () => {
    for (let length = 0; length < 5; length++) {
      expectMalformed(decodeChunkEnd(new Uint8Array(length), false), "end of unknown stream")
      expectMalformed(decodeChunkEnd(new Uint8Array(length), true), "end of unknown stream")
    }
  })

  it("the digest is a view into the body", () => {
    const body = encodeChunkEnd(7, ChunkEndStatus.OK, digest)
    expect(right(decodeChunkEnd(body, true)).digest?.buffer).toBe(body.buffer)
  })
})

describe("STREAM_CREDIT (PROTOCOL.md §9.3)", () => {
  it("round-trips any stream id and any u32 of credit", () => {
    FastCheck.assert(FastCheck.property(u32, u32, (streamId, bytes) => {
      const body = encodeStreamCredit(streamId, bytes)
      expect(body.length).toBe(STREAM_CREDIT_LENGTH)
      expect(right(decodeStreamCredit(body))).toEqual({ streamId, bytes })
    }))
  })

  it("lays out stream_id ‖ bytes, both u32 big-endian", () => {
    expect(right(decodeStreamCredit(Uint8Array.of(0, 0, 0, 5, 0x80, 0, 0, 1)))).toEqual({ streamId: 5, bytes: 0x80000001 })
  })

  it("refuses any other length", () => {
    for (const length of [0, 3, 4, 7, 9, 16]) expectMalformed(decodeStreamCredit(new Uint8Array(length)), "stream credit")
  })
})

describe("STREAM_CANCEL (PROTOCOL.md §9.4)", () => {
  it("round-trips any stream id", () => {
    FastCheck.assert(FastCheck.property(u32, (streamId) => right(decodeStreamCancel(encodeStreamCancel(streamId))) === streamId))
  })

  it("refuses a body that is not exactly 4 bytes", () => {
    for (const length of [0, 1, 3, 5, 8]) expectMalformed(decodeStreamCancel(new Uint8Array(length)), "stream cancel")
  })
})
