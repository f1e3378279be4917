import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Either, Equal, FastCheck, ParseResult, Schema } from "effect"
import { ProtocolError } from "../src/errors.js"
import {
  decodePacket,
  encodePacket,
  encodePacketInto,
  Packet,
  PacketFromBytes,
  packetEncodedLength,
  packetOf
} from "../src/wire/Packet.js"
import { isPacketType, PacketType, PacketTypeSchema, packetTypeName } from "../src/wire/PacketType.js"

const packets = Arbitrary.make(Packet)
const everyByte = Array.from({ length: 256 }, (_, i) => i)

// Equal.equals on Schema.Class instances compares the payload by reference; these tests care about bytes.
const expectSamePacket = (actual: Packet, expected: Packet): void => {
  expect(actual).toBeInstanceOf(Packet)
  expect(actual.id).toBe(expected.id)
  expect(actual.type).toBe(expected.type)
  expect(Array.from(actual.payload)).toEqual(Array.from(expected.payload))
}

const expectMalformed = (result: Either.Either<Packet, ProtocolError>): void => {
  expect(Either.isLeft(result)).toBe(true)
  if (Either.isLeft(result)) {
    expect(result.left).toBeInstanceOf(ProtocolError)
    expect(result.left.reason).toBe("Malformed")
  }
}

const decodeSchema = Schema.decodeUnknownEither(PacketFromBytes)
const encodeSchema = Schema.encodeSync(PacketFromBytes)

describe("PacketType", () => {
  it("every byte is a packet type (PROTOCOL.md §8.1); non-bytes are not", () => {
    for (const b of everyByte) expect(isPacketType(b)).toBe(true)
    for (const x of [-1, 256, 0.5, Number.NaN, Infinity, "1", null]) expect(isPacketType(x)).toBe(false)
  })

  it("names types, and bytes outside the table in hex", () => {
    expect(packetTypeName(PacketType.COMMAND)).toBe("COMMAND")
    expect(packetTypeName(PacketType.GATEWAY)).toBe("GATEWAY")
    expect(packetTypeName(0x42)).toBe("0x42")
    expect(packetTypeName(0x05)).toBe("0x05")
  })

  it("the Schema accepts exactly the bytes", () => {
    for (const b of everyByte) expect(Schema.is(PacketTypeSchema)(b)).toBe(true)
    for (const x of [-1, 256, 0.5, Number.NaN]) expect(Schema.is(PacketTypeSchema)(x)).toBe(false)
  })
})

describe("Packet", () => {
  it("lays out id (u32 BE), type, payload (PROTOCOL.md §8)", () => {
    const p = new Packet({ id: 0x01020304, type: PacketType.COMMAND, payload: new Uint8Array([0xaa, 0xbb]) })
    expect(Array.from(encodePacket(p))).toEqual([1, 2, 3, 4, 0xc0, 0xaa, 0xbb])
    const max = new Packet({ id: 0xffffffff, type: PacketType.UNKNOWN, payload: new Uint8Array() })
    expect(Array.from(encodePacket(max))).toEqual([0xff, 0xff, 0xff, 0xff, 0xff])
    expect(packetEncodedLength(2)).toBe(7)
  })

  it("the constructor validates the id range unless told not to", () => {
    const payload = new Uint8Array()
    expect(() => new Packet({ id: -1, type: PacketType.PACKET, payload })).toThrow()
    expect(() => new Packet({ id: 2 ** 32, type: PacketType.PACKET, payload })).toThrow()
    expect(() => new Packet({ id: 1.5, type: PacketType.PACKET, payload })).toThrow()
    expect(new Packet({ id: 2 ** 32, type: PacketType.PACKET, payload }, true).id).toBe(2 ** 32)
  })

  it("prints a short summary", () => {
    const text = new Packet({ id: 7, type: PacketType.COMMAND, payload: new TextEncoder().encode("hello") })
    expect(String(text)).toBe(`Packet(COMMAND #7, 5 B "hello")`)
    const bin = new Packet({ id: 1, type: PacketType.PACKET, payload: new Uint8Array(40).fill(1) })
    expect(String(bin)).toBe(`Packet(PACKET #1, 40 B ${"01".repeat(16)}…)`)
    expect(String(new Packet({ id: 0, type: PacketType.GRANTED, payload: new Uint8Array() }))).toBe(
      "Packet(GRANTED #0, 0 B)"
    )
  })

  it.prop("packetOf (the decoder's constructor) makes the same instance as the class constructor", [packets], ([packet]) => {
    const made = packetOf(packet.id, packet.type, packet.payload)
    const built = new Packet({ id: packet.id, type: packet.type, payload: packet.payload }, true)
    expect(made).toBeInstanceOf(Packet)
    expect(Equal.equals(made, built)).toBe(true)
    expect(Object.keys(made)).toEqual(Object.keys(built))
    expect(String(made)).toBe(String(built))
    const decoded = decodePacket(encodePacket(packet))
    expect(Either.isRight(decoded) && Object.getPrototypeOf(decoded.right) === Packet.prototype).toBe(true)
  })

  it.prop("hand codec round-trips", [packets], ([packet]) => {
    const bytes = encodePacket(packet)
    expect(bytes.length).toBe(packetEncodedLength(packet.payload.length))
    const decoded = decodePacket(bytes)
    expect(Either.isRight(decoded)).toBe(true)
    if (Either.isRight(decoded)) expectSamePacket(decoded.right, packet)
  })

  it.prop("Schema transform round-trips and agrees with the hand codec byte for byte", [packets], ([packet]) => {
    const bytes = encodeSchema(packet)
    expect(Array.from(bytes)).toEqual(Array.from(encodePacket(packet)))
    const decoded = decodeSchema(bytes)
    expect(Either.isRight(decoded)).toBe(true)
    if (Either.isRight(decoded)) expectSamePacket(decoded.right, packet)
  })

  it.prop(
    "encodePacketInto writes the same bytes at an offset and returns the end",
    [packets, FastCheck.nat({ max: 64 }), FastCheck.nat({ max: 64 })],
    ([packet, before, after]) => {
      const length = packetEncodedLength(packet.payload.length)
      const buf = new Uint8Array(before + length + after).fill(0x5a)
      expect(encodePacketInto(buf, before, packet.id, packet.type, packet.payload)).toBe(before + length)
      expect(Array.from(buf.subarray(before, before + length))).toEqual(Array.from(encodePacket(packet)))
      expect(buf.subarray(0, before).every((b) => b === 0x5a)).toBe(true)
      expect(buf.subarray(before + length).every((b) => b === 0x5a)).toBe(true)
    }
  )

  it("decoded payload is a view into the input, not a copy", () => {
    const bytes = encodePacket(new Packet({ id: 9, type: PacketType.PACKET, payload: new Uint8Array([1, 2, 3]) }))
    const decoded = Either.getOrThrow(decodePacket(bytes))
    expect(decoded.payload.buffer).toBe(bytes.buffer)
    expect(decoded.payload.byteOffset).toBe(bytes.byteOffset + 5)
    bytes[5] = 42
    expect(decoded.payload[0]).toBe(42)
  })

  it.prop("every input shorter than 5 bytes is Malformed", [packets], ([packet]) => {
    const bytes = encodePacket(packet)
    for (let n = 0; n < 5; n++) {
      expectMalformed(decodePacket(bytes.subarray(0, n)))
      const viaSchema = decodeSchema(bytes.subarray(0, n))
      expect(Either.isLeft(viaSchema)).toBe(true)
      if (Either.isLeft(viaSchema)) expect(ParseResult.isParseError(viaSchema.left)).toBe(true)
    }
  })

  it("every type byte decodes, named or not, by both codecs alike", () => {
    for (const type of everyByte) {
      const bytes = new Uint8Array([0, 0, 0, 1, type, 1, 2, 3])
      const hand = decodePacket(bytes)
      const viaSchema = decodeSchema(bytes)
      expect(Either.isRight(hand) && hand.right.type).toBe(type)
      expect(Either.isRight(viaSchema) && viaSchema.right.type).toBe(type)
    }
  })

  it.prop("random garbage gives a packet or a typed error, never an exception", [FastCheck.uint8Array({ maxLength: 64 })], ([bytes]) => {
    const valid = bytes.length >= 5
    const hand = decodePacket(bytes)
    const viaSchema = decodeSchema(bytes)
    expect(Either.isRight(hand)).toBe(valid)
    expect(Either.isRight(viaSchema)).toBe(valid)
    if (Either.isLeft(hand)) expect(hand.left.reason).toBe("Malformed")
    if (Either.isLeft(viaSchema)) expect(ParseResult.isParseError(viaSchema.left)).toBe(true)
    if (Either.isRight(hand) && Either.isRight(viaSchema)) {
      expectSamePacket(viaSchema.right, hand.right)
      expect(Array.from(encodePacket(hand.right))).toEqual(Array.from(bytes))
    }
  })

  it("the Schema transform rejects non-bytes as a ParseError", () => {
    for (const input of [null, "abc", [1, 2, 3, 4, 5], { id: 1 }]) {
      const result = decodeSchema(input)
      expect(Either.isLeft(result)).toBe(true)
    }
  })
})
