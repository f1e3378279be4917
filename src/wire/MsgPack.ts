/**
 * A structural check of MessagePack bytes before they are decoded (PROTOCOL.md §12.1).
 *
 * A decoder allocates a container of the size its header declares: five bytes declaring an array of
 * 30 million elements cost a general-purpose decoder 230 MB and most of a second. This walk reads
 * only headers, allocates nothing, and refuses any container that declares more elements than bytes
 * remain (each element takes at least one), any extension type (none is used by §12), nesting deeper
 * than `MAX_DEPTH`, a truncated value, and trailing bytes. What passes decodes into memory in
 * proportion to the bytes that actually arrived.
 */

/** Deeper nesting than any Schema's encoded form needs, and shallow enough for a recursive decoder. */
export const MAX_DEPTH = 64

/**
 * Elements still to read at each open level; level 0 holds the value itself. One array for every
 * call (the walk is synchronous and never re-entered): a walk allocates nothing, and reads each
 * header inline, which makes it a fifth of what it cost with a growing array and a helper
 * (scratchpad/perf/codec-cost.ts). Counts up to 2 × (2³² − 1) fit a double exactly.
 */
const remaining = new Float64Array(MAX_DEPTH + 1)

/** Why `bytes` is not one well-formed MessagePack value, or `undefined` if it is. */
export const msgPackProblem = (bytes: Uint8Array): string | undefined => {
  const end = bytes.length
  let pos = 0
  let top = 0
  remaining[0] = 1
  while (top >= 0) {
    if (remaining[top] === 0) {
      top--
      continue
    }
    remaining[top]!--
    if (pos >= end) return "truncated value"
    const b = bytes[pos++]!
    // For a map or an array: how many values follow (a map's are key, value, key, ...).
    let elements = -1
    let skip = 0
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) continue
    else if (b <= 0x8f) elements = 2 * (b & 0x0f)
    else if (b <= 0x9f) elements = b & 0x0f
    else if (b <= 0xbf) skip = b & 0x1f
    else if (b === 0xc4 || b === 0xd9 || b === 0xc5 || b === 0xda || b === 0xc6 || b === 0xdb) {
      const size = b === 0xc4 || b === 0xd9 ? 1 : b === 0xc5 || b === 0xda ? 2 : 4
      if (pos + size > end) return "truncated length"
      skip = readLength(bytes, pos, size)
      pos += size
    } else if (b === 0xca || b === 0xce || b === 0xd2) skip = 4
    else if (b === 0xcb || b === 0xcf || b === 0xd3) skip = 8
    else if (b === 0xcc || b === 0xd0) skip = 1
    else if (b === 0xcd || b === 0xd1) skip = 2
    else if (b === 0xdc || b === 0xdd || b === 0xde || b === 0xdf) {
      const size = b === 0xdc || b === 0xde ? 2 : 4
      if (pos + size > end) return "truncated length"
      elements = (b === 0xde || b === 0xdf ? 2 : 1) * readLength(bytes, pos, size)
      pos += size
    } else return `unsupported type byte 0x${b.toString(16)}` // 0xc1, and the extension types
    if (elements >= 0) {
      if (elements > end - pos) return `a container of ${elements} elements in ${end - pos} bytes`
      if (top + 1 > MAX_DEPTH) return `nested deeper than ${MAX_DEPTH}`
      remaining[++top] = elements
      continue
    }
    if (skip > end - pos) return "truncated value"
    pos += skip
  }
  return pos === end ? undefined : `${end - pos} bytes after the value`
}

/** The big-endian unsigned length of `size` bytes at `pos`, which the caller checked are there. */
const readLength = (bytes: Uint8Array, pos: number, size: 1 | 2 | 4): number =>
  size === 1 ? bytes[pos]! : size === 2 ? (bytes[pos]! << 8) | bytes[pos + 1]! : ((bytes[pos]! << 24) | (bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) | bytes[pos + 3]!) >>> 0

/** What `decodeFlat` answers for bytes it leaves to the general decoder. */
export const NOT_FLAT: unique symbol = Symbol("cvg/MsgPack/NotFlat")

// `ignoreBOM`: a leading U+FEFF is part of the string, as msgpackr reads it.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/**
 * The value of bytes that hold a small request or reply in one pass, without the structure check
 * and msgpackr's set-up, which cost more than the value for the few bytes of a typical call (about
 * a third of the typed layer's decoding, scratchpad/perf/session-cost.ts with --cpu-prof): a nil,
 * boolean, integer up to 32 bits, float64 or string, or a map of string keys to those. Anything else
 * (arrays, nesting, bytes, 64-bit integers, float32, extensions, a `__proto__` key, invalid UTF-8,
 * truncation, trailing bytes) answers `NOT_FLAT`, and the caller takes the checked general path, so
 * every refusal and every value is as before. It allocates only the map and its strings: a map
 * declares at most 65535 entries here, and needs bytes for each before any is read.
 */
export const decodeFlat = (bytes: Uint8Array): unknown => {
  const end = bytes.length
  if (end === 0) return NOT_FLAT
  const b = bytes[0]!
  let entries = -1
  let pos = 1
  if (b >= 0x80 && b <= 0x8f) entries = b & 0x0f
  else if (b === 0xde) {
    if (end < 3) return NOT_FLAT
    entries = (bytes[1]! << 8) | bytes[2]!
    pos = 3
  }
  if (entries < 0) {
    const at = scalar(bytes, 0)
    return at !== NOT_FLAT && next === end ? at : NOT_FLAT
  }
  if (2 * entries > end - pos) return NOT_FLAT
  const out: Record<string, unknown> = {}
  for (let i = 0; i < entries; i++) {
    const key = scalar(bytes, pos)
    if (typeof key !== "string" || key === "__proto__") return NOT_FLAT
    const value = scalar(bytes, next)
    if (value === NOT_FLAT) return NOT_FLAT
    out[key] = value
    pos = next
  }
  return pos === end ? out : NOT_FLAT
}

/** Where the last `scalar` ended (a module variable rather than a returned pair: no allocation). */
let next = 0

/** The scalar at `pos`, with `next` set after it, or `NOT_FLAT`. */
const scalar = (bytes: Uint8Array, pos: number): unknown => {
  const end = bytes.length
  if (pos >= end) return NOT_FLAT
  const b = bytes[pos]!
  let length = -1
  let start = pos + 1
  if (b <= 0x7f) {
    next = pos + 1
    return b
  } else if (b >= 0xe0) {
    next = pos + 1
    return b - 0x100
  } else if (b >= 0xa0 && b <= 0xbf) length = b & 0x1f
  else if (b === 0xd9 && pos + 2 <= end) {
    length = bytes[pos + 1]!
    start = pos + 2
  } else if (b === 0xda && pos + 3 <= end) {
    length = (bytes[pos + 1]! << 8) | bytes[pos + 2]!
    start = pos + 3
  } else if (b === 0xc0 || b === 0xc2 || b === 0xc3) {
    next = pos + 1
    return b === 0xc0 ? null : b === 0xc3
  } else {
    const size = b === 0xcc || b === 0xd0 ? 1 : b === 0xcd || b === 0xd1 ? 2 : b === 0xce || b === 0xd2 ? 4 : b === 0xcb ? 8 : 0
    if (size === 0 || pos + 1 + size > end) return NOT_FLAT
    next = pos + 1 + size
    const view = new DataView(bytes.buffer, bytes.byteOffset + pos + 1, size)
    switch (b) {
      case 0xcc:
        return view.getUint8(0)
      case 0xcd:
        return view.getUint16(0)
      case 0xce:
        return view.getUint32(0)
      case 0xd0:
        return view.getInt8(0)
      case 0xd1:
        return view.getInt16(0)
      case 0xd2:
        return view.getInt32(0)
      default:
        return view.getFloat64(0)
    }
  }
  if (length < 0 || start + length > end) return NOT_FLAT
  next = start + length
  if (length <= 16) {
    // A short ASCII string, as keys are: cheaper built here than by a call into TextDecoder, which
    // is the cheaper one for longer strings (a 40-byte text: 0.3 us against 0.5 us).
    let text = ""
    let i = start
    for (; i < next && bytes[i]! < 0x80; i++) text += String.fromCharCode(bytes[i]!)
    if (i === next) return text
  }
  try {
    return utf8.decode(bytes.subarray(start, next))
  } catch {
    return NOT_FLAT
  }
}

/**
 * Room for one flat value as `encodeFlat` writes it: 15 entries of a key and a value, each at most
 * 2 + 255 bytes. One buffer for every call (the writer is synchronous); each result is a copy.
 */
const scratch = new Uint8Array(16 * 1024)
const scratchView = new DataView(scratch.buffer)

/**
 * The bytes msgpackr writes (with the codec's options) for a small flat value, written directly:
 * nil, a boolean, a number, an ASCII string up to 255 bytes, or a plain object of up to 15 such
 * keys and values. msgpackr's set-up costs more than the few bytes of a typical call. Anything
 * else answers `undefined` and the caller packs it with msgpackr; a property test compares the two
 * byte for byte (test/wire.typed.test.ts), so the wire format (PROTOCOL.md §12.1) is unchanged.
 */
export const encodeFlat = (value: unknown): Uint8Array | undefined => {
  let pos = 0
  if (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    const record = value as Record<string, unknown>
    const keys = Object.keys(record)
    if (keys.length > 15) return undefined
    scratch[pos++] = 0x80 | keys.length
    for (const key of keys) {
      pos = writeScalar(key, pos)
      if (pos < 0) return undefined
      pos = writeScalar(record[key], pos)
      if (pos < 0) return undefined
    }
  } else {
    pos = writeScalar(value, 0)
    if (pos < 0) return undefined
  }
  return scratch.slice(0, pos)
}

/** Writes a scalar at `pos` as msgpackr does; the position after it, or -1 for anything else. */
const writeScalar = (value: unknown, pos: number): number => {
  switch (typeof value) {
    case "string": {
      const length = value.length
      if (length > 255) return -1
      if (length < 0x20) scratch[pos++] = 0xa0 | length
      else {
        scratch[pos++] = 0xd9
        scratch[pos++] = length
      }
      for (let i = 0; i < length; i++) {
        const c = value.charCodeAt(i)
        if (c >= 0x80) return -1
        scratch[pos++] = c
      }
      return pos
    }
    case "boolean":
      scratch[pos] = value ? 0xc3 : 0xc2
      return pos + 1
    case "number":
      // msgpackr's choices, expression for expression (-0 included, which it writes as 0).
      if (value >>> 0 === value) {
        if (value < 0x80) scratch[pos++] = value
        else if (value < 0x100) {
          scratch[pos++] = 0xcc
          scratch[pos++] = value
        } else if (value < 0x10000) {
          scratch[pos++] = 0xcd
          scratchView.setUint16(pos, value)
          pos += 2
        } else {
          scratch[pos++] = 0xce
          scratchView.setUint32(pos, value)
          pos += 4
        }
      } else if (value >> 0 === value) {
        if (value >= -0x20) scratch[pos++] = 0x100 + value
        else if (value >= -0x80) {
          scratch[pos++] = 0xd0
          scratch[pos++] = value + 0x100
        } else if (value >= -0x8000) {
          scratch[pos++] = 0xd1
          scratchView.setInt16(pos, value)
          pos += 2
        } else {
          scratch[pos++] = 0xd2
          scratchView.setInt32(pos, value)
          pos += 4
        }
      } else {
        scratch[pos++] = 0xcb
        scratchView.setFloat64(pos, value)
        pos += 8
      }
      return pos
    case "object":
      if (value !== null) return -1
      scratch[pos] = 0xc0
      return pos + 1
    default:
      return -1
  }
}
