/**
 * Packet type bytes (PROTOCOL.md §8.1): any `u8`, the application's to give meaning to.
 *
 * The names below are the seed's (cvg-core 0.1.3) so that its type names keep their meaning; COMMAND
 * and RESPONSE are the two the seed's README uses but its enum lacks. `0xd0`-`0xdf` are the typed
 * layer's (PROTOCOL.md §12).
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

/** A packet type: any byte. The named constants above are conventions, not a closed set. */
export type PacketType = number

/** The type byte as a `Schema`: an integer in 0..255. */
export const PacketTypeSchema: Schema.Schema<number> = Schema.Int.pipe(Schema.between(0, 0xff)).annotations({
  identifier: "PacketType"
})

// Indexed by byte value, so that naming a type in a log line is one array load.
const names: ReadonlyArray<string | undefined> = (() => {
  const table: Array<string | undefined> = new Array<string | undefined>(256).fill(undefined)
  for (const [name, value] of Object.entries(PacketType)) table[value] = name
  return table
})()

/** Whether `value` can be a packet type: an integer in 0..255. */
export const isPacketType = (value: unknown): value is PacketType =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 0xff

/** The name of a packet type, e.g. `"COMMAND"`, or `"0x42"` for a byte without a name. */
export const packetTypeName = (type: number): string =>
  names[type] ?? `0x${(type >>> 0).toString(16).padStart(2, "0")}`
