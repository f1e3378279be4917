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
