/**
 * REPLY_ERROR (PROTOCOL.md §8.3): a request's answer when its handler could not give one.
 *
 * Body: `id: u32 ‖ reason: u8 ‖ detail (UTF-8, at most 1024 bytes)`. The sender cuts a longer detail at
 * a character boundary; a receiver refuses a longer one, or an unknown reason, as `Malformed`.
 */
import { Either } from "effect"
import { ProtocolError, RemoteError, type RemoteErrorReason } from "../errors.js"
import { writeU32 } from "./Chunks.js"

export const MAX_REPLY_ERROR_DETAIL = 1024

const reasons: ReadonlyArray<RemoteErrorReason> = ["Failure", "Defect", "NoReply", "Unsupported", "Undecodable"]
/** Wire codes start at 1, so that a zeroed body is never a valid reason. */
const codeOf = (reason: RemoteErrorReason): number => reasons.indexOf(reason) + 1

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: false })

/** The longest prefix of `text` whose UTF-8 fits in `max` bytes, so a cut never splits a character. */
const utf8Prefix = (text: string, max: number): Uint8Array => {
  const bytes = encoder.encode(text)
  if (bytes.length <= max) return bytes
  let end = max
  // Back off over continuation bytes (10xxxxxx) to the start of the character that did not fit.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--
  return bytes.subarray(0, end)
}

/** `reason ‖ detail`: REPLY_ERROR without its id, also the body of a typed stream's ERROR item (§12.3). */
export const encodeRemoteError = (error: RemoteError, idLength = 0): Uint8Array => {
  const detail = utf8Prefix(error.detail, MAX_REPLY_ERROR_DETAIL)
  const out = new Uint8Array(idLength + 1 + detail.length)
  out[idLength] = codeOf(error.reason)
  out.set(detail, idLength + 1)
  return out
}

/** The inverse of `encodeRemoteError`, or `undefined` for an unknown reason or an over-long detail. */
export const decodeRemoteError = (body: Uint8Array): RemoteError | undefined => {
  const reason = body.length >= 1 ? reasons[body[0]! - 1] : undefined
  if (reason === undefined || body.length - 1 > MAX_REPLY_ERROR_DETAIL) return undefined
  return new RemoteError({ reason, detail: decoder.decode(body.subarray(1)) })
}

export const encodeReplyError = (id: number, error: RemoteError): Uint8Array => {
  const out = encodeRemoteError(error, 4)
  writeU32(out, 0, id)
  return out
}

export const decodeReplyError = (body: Uint8Array): Either.Either<{ readonly id: number; readonly error: RemoteError }, ProtocolError> => {
  const error = body.length >= 5 ? decodeRemoteError(body.subarray(4)) : undefined
  if (error === undefined) return Either.left(new ProtocolError({ reason: "Malformed", detail: "reply error" }))
  const id = ((body[0]! << 24) | (body[1]! << 16) | (body[2]! << 8) | body[3]!) >>> 0
  return Either.right({ id, error })
}
