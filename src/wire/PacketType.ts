/**
 * Packet type bytes (PROTOCOL.md §8).
 *
 * The values are the seed's (cvg-core 0.1.3) so that its type names keep their meaning; COMMAND and
 * RESPONSE are the two the seed's README uses but its enum lacks.
 */
import { Schema } from "effect"

export const PacketType = {
  GATEWAY: 0x00,
  EXCHANGE: 0x01,
  PASSWORD: 0x02,
  GRANTED: 0xa0,
  DENIED: 0xa1,
  STREAM_START: 0xb0,
  STREAM_DATA: 0xb1,
  STREAM_END: 0xb2,
  COMMAND: 0xc0,
  RESPONSE: 0xc1,
  CRYPTO: 0xe0,
  PACKET: 0xf0,
  SUCCESS: 0xf1,
  ERROR: 0xf2,
  DROPPED: 0xf3,
  UNKNOWN: 0xff
} as const

export type PacketType = (typeof PacketType)[keyof typeof PacketType]

/** The type byte as a `Schema`; anything outside the table above fails to decode. */
export const PacketTypeSchema: Schema.Enums<typeof PacketType> = Schema.Enums(PacketType)

// Indexed by byte value: the decoder checks every incoming type byte, so this must be one array load
// rather than a search through the enum's values.
const names: ReadonlyArray<string | undefined> = (() => {
  const table: Array<string | undefined> = new Array<string | undefined>(256).fill(undefined)
  for (const [name, value] of Object.entries(PacketType)) table[value] = name
  return table
})()

/** Whether `byte` is a known packet type (PROTOCOL.md §8). Any number is accepted; non-bytes are `false`. */
export const isPacketType = (byte: number): byte is PacketType => names[byte] !== undefined

/** The name of a packet type, e.g. `"COMMAND"`, or `"0x42"` for a byte outside the table. */
export const packetTypeName = (type: number): string =>
  names[type] ?? `0x${(type >>> 0).toString(16).padStart(2, "0")}`
