/**
 * Packets: what procedures send and receive (PROTOCOL.md §8).
 *
 * Body layout: `id: u32 big-endian ‖ type: u8 ‖ payload (the rest)`. A body shorter than 5 bytes is
 * malformed; every type byte is valid (PROTOCOL.md §8.1), and there is no trailing data to reject because
 * the payload runs to the end of the body (the frame around it, PROTOCOL.md §2, says where that is).
 *
 * Two codecs share those rules: a hand-written one for the hot path (a Schema decode of a small packet
 * costs microseconds, the hand codec well under 0.1 us; docs/performance.md), and `PacketFromBytes` for code that
 * composes Schemas. Tests hold them to byte-for-byte agreement.
 */
import { Either, ParseResult, Schema } from "effect"
import { ProtocolError } from "../errors.js"
import { PacketTypeSchema, packetTypeName } from "./PacketType.js"

/** Bytes before the payload: the u32 id and the type byte. */
export const PACKET_HEADER_LENGTH = 5

/** A packet id: a u32, so that many requests can be in flight without ids colliding (the seed had one byte). */
export const PacketId = Schema.Int.pipe(Schema.between(0, 0xffffffff)).annotations({ identifier: "PacketId" })

const PREVIEW_BYTES = 16
const inspectSymbol = Symbol.for("nodejs.util.inspect.custom")

const preview = (payload: Uint8Array): string => {
  const head = payload.subarray(0, PREVIEW_BYTES)
  const more = payload.length > PREVIEW_BYTES ? "…" : ""
  let printable = head.length > 0
  for (let i = 0; i < head.length && printable; i++) {
    const b = head[i]!
    printable = b >= 0x20 && b < 0x7f
  }
  if (printable) return JSON.stringify(String.fromCharCode(...head)) + more
  let hex = ""
  for (let i = 0; i < head.length; i++) hex += head[i]!.toString(16).padStart(2, "0")
  return hex + more
}

export class Packet extends Schema.Class<Packet>("Packet")({
  id: PacketId,
  type: PacketTypeSchema,
  payload: Schema.Uint8ArrayFromSelf
}) {
  /** E.g. `Packet(COMMAND #7, 5 B "hello")`; the payload preview is cut at 16 bytes. */
  override toString(): string {
    const n = this.payload.length
    return n === 0
      ? `Packet(${packetTypeName(this.type)} #${this.id}, 0 B)`
      : `Packet(${packetTypeName(this.type)} #${this.id}, ${n} B ${preview(this.payload)})`
  }

  // console.log in the demo goes through util.inspect, which would otherwise dump every payload byte.
  [inspectSymbol](): string {
    return this.toString()
  }
}

/** Bytes an encoded packet takes for a payload of `payloadLength` bytes. */
export const packetEncodedLength = (payloadLength: number): number => PACKET_HEADER_LENGTH + payloadLength

/**
 * Writes a packet at `offset` in `buf` and returns the offset just past it, so the record layer can build
 * a frame in one preallocated buffer. The caller guarantees room (`packetEncodedLength`) and a valid id
 * and type: this is the hot path and it checks nothing (a larger id is truncated to its low 32 bits).
 */
export const encodePacketInto = (
  buf: Uint8Array,
  offset: number,
  id: number,
  type: number,
  payload: Uint8Array
): number => {
  buf[offset] = id >>> 24
  buf[offset + 1] = id >>> 16
  buf[offset + 2] = id >>> 8
  buf[offset + 3] = id
  buf[offset + 4] = type
  buf.set(payload, offset + PACKET_HEADER_LENGTH)
  return offset + PACKET_HEADER_LENGTH + payload.length
}

/** Encodes a packet into a fresh buffer (one allocation). */
export const encodePacket = (packet: Packet): Uint8Array => {
  const buf = new Uint8Array(PACKET_HEADER_LENGTH + packet.payload.length)
  encodePacketInto(buf, 0, packet.id, packet.type, packet.payload)
  return buf
}

/**
 * A `Packet` from fields that are valid by construction (a u32 id, a type byte), without the class
 * constructor: even with validation off, `Schema.Class`'s constructor (defaults merge, `Data.Class`
 * copy) costs microseconds a packet, several times the rest of the decode (docs/performance.md,
 * "Decode path"). The instance is the same: the class's prototype and the three own fields, so
 * `instanceof`, `Equal` and `toString` behave as for `new Packet(..., true)`.
 */
export const packetOf = (id: number, type: number, payload: Uint8Array): Packet => {
  const packet = Object.create(Packet.prototype) as { id: number; type: number; payload: Uint8Array }
  packet.id = id
  packet.type = type
  packet.payload = payload
  return packet as Packet
}

type DecodeFailure = { readonly detail: string }

// Shared by both codecs so that they cannot drift apart; returns the failure rather than building an
// error so each codec reports it in its own vocabulary.
const decodeRaw = (bytes: Uint8Array): Packet | DecodeFailure => {
  if (bytes.length < PACKET_HEADER_LENGTH) {
    return { detail: `packet of ${bytes.length} bytes is shorter than its ${PACKET_HEADER_LENGTH}-byte header` }
  }
  const type = bytes[4]!
  const id = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0
  // No Schema check: the id is a u32 and the type a byte by construction. The payload is a view so
  // that bulk data is never copied here.
  return packetOf(id, type, bytes.subarray(PACKET_HEADER_LENGTH))
}

/**
 * Decodes a packet body strictly (PROTOCOL.md §8). The payload is a view into `bytes`, not a copy: whoever
 * owns `bytes` must not reuse it while the packet is alive.
 */
export const decodePacket = (bytes: Uint8Array): Either.Either<Packet, ProtocolError> => {
  const out = decodeRaw(bytes)
  return out instanceof Packet
    ? Either.right(out)
    : Either.left(new ProtocolError({ reason: "Malformed", detail: out.detail }))
}

/** The packet codec as a Schema, with the same rules as `decodePacket` and `encodePacket`. */
export const PacketFromBytes: Schema.Schema<Packet, Uint8Array> = Schema.transformOrFail(
  Schema.Uint8ArrayFromSelf,
  Schema.typeSchema(Packet),
  {
    strict: true,
    decode: (bytes, _, ast) => {
      const out = decodeRaw(bytes)
      return out instanceof Packet ? ParseResult.succeed(out) : ParseResult.fail(new ParseResult.Type(ast, bytes, out.detail))
    },
    encode: (packet) => ParseResult.succeed(encodePacket(packet))
  }
).annotations({ identifier: "PacketFromBytes" })
