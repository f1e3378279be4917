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

/** Why `bytes` is not one well-formed MessagePack value, or `undefined` if it is. */
export const msgPackProblem = (bytes: Uint8Array): string | undefined => {
  const end = bytes.length
  let pos = 0
  // Elements still to read at each open level; the value itself is the one element of level 0.
  const remaining: Array<number> = [1]
  const length = (size: 1 | 2 | 4): number => {
    if (pos + size > end) return -1
    const n = size === 1 ? bytes[pos]! : size === 2 ? (bytes[pos]! << 8) | bytes[pos + 1]! : ((bytes[pos]! << 24) | (bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) | bytes[pos + 3]!) >>> 0
    pos += size
    return n
  }
  while (remaining.length > 0) {
    const top = remaining.length - 1
    if (remaining[top] === 0) {
      remaining.pop()
      continue
    }
    remaining[top]!--
    if (pos >= end) return "truncated value"
    const b = bytes[pos++]!
    let skip = 0
    // For a map or an array: how many values follow (a map's are key, value, key, ...).
    let elements: number | undefined
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) skip = 0
    else if (b <= 0x8f) elements = 2 * (b & 0x0f)
    else if (b <= 0x9f) elements = b & 0x0f
    else if (b <= 0xbf) skip = b & 0x1f
    else if (b === 0xc4 || b === 0xd9) skip = length(1)
    else if (b === 0xc5 || b === 0xda) skip = length(2)
    else if (b === 0xc6 || b === 0xdb) skip = length(4)
    else if (b === 0xca) skip = 4
    else if (b === 0xcb) skip = 8
    else if (b === 0xcc || b === 0xd0) skip = 1
    else if (b === 0xcd || b === 0xd1) skip = 2
    else if (b === 0xce || b === 0xd2) skip = 4
    else if (b === 0xcf || b === 0xd3) skip = 8
    else if (b === 0xdc) elements = length(2)
    else if (b === 0xdd) elements = length(4)
    else if (b === 0xde) elements = 2 * length(2)
    else if (b === 0xdf) elements = 2 * length(4)
    else return `unsupported type byte 0x${b.toString(16)}` // 0xc1, and the extension types
    if (skip < 0 || (elements !== undefined && elements < 0)) return "truncated length"
    if (elements !== undefined) {
      if (elements > end - pos) return `a container of ${elements} elements in ${end - pos} bytes`
      if (remaining.length > MAX_DEPTH) return `nested deeper than ${MAX_DEPTH}`
      remaining.push(elements)
      continue
    }
    if (skip > end - pos) return "truncated value"
    pos += skip
  }
  return pos === end ? undefined : `${end - pos} bytes after the value`
}
