/**
 * The file transfer of `cvg send` and `cvg receive` (README.md, "Command line"), on the session's
 * public API:
 *
 * 1. the sender requests (COMMAND) with the UTF-8 JSON header `{"name": ..., "size": ...}`;
 * 2. the receiver answers RESPONSE (ready) or a `RemoteError` saying why it refuses;
 * 3. the sender streams the bytes (`sendStream`, type STREAM_DATA), paced by the receiver's credit;
 * 4. the receiver, once the bytes are on disk under their name, sends SUCCESS with `{"bytes": n}`, or
 *    ERROR with the reason, under the header's id; the sender then closes.
 */
import { open, type FileHandle } from "node:fs/promises"
import { Effect, Option, Schema, Stream } from "effect"
import { PacketType } from "../index.js"
import { fileError } from "./common.js"
import type { FileError } from "./errors.js"

export const HEADER_TYPE = PacketType.COMMAND
export const READY_TYPE = PacketType.RESPONSE
export const DATA_TYPE = PacketType.STREAM_DATA
export const DONE_TYPE = PacketType.SUCCESS
export const FAILED_TYPE = PacketType.ERROR

/** Bytes read from the file at a time: one chunk of the session (its default chunk size). */
export const READ_SIZE = 256 * 1024

export const Header = Schema.Struct({
  name: Schema.String,
  size: Schema.Int.pipe(Schema.nonNegative())
})
export type Header = typeof Header.Type

export const Done = Schema.Struct({ bytes: Schema.Int.pipe(Schema.nonNegative()) })

const HeaderJson = Schema.parseJson(Header)
const DoneJson = Schema.parseJson(Done)

export const encodeHeader = (header: Header): Uint8Array => new TextEncoder().encode(Schema.encodeSync(HeaderJson)(header))
export const decodeHeader = (bytes: Uint8Array): Option.Option<Header> =>
  Schema.decodeUnknownOption(HeaderJson)(new TextDecoder().decode(bytes))
export const encodeDone = (bytes: number): Uint8Array => new TextEncoder().encode(Schema.encodeSync(DoneJson)({ bytes }))
export const decodeDone = (bytes: Uint8Array): Option.Option<typeof Done.Type> =>
  Schema.decodeUnknownOption(DoneJson)(new TextDecoder().decode(bytes))

/**
 * Why a name from the peer cannot be used as a file name in the output folder, or none. Only a plain
 * name is accepted: no separator, no `.` or `..`, no NUL, so nothing is written outside the folder.
 */
export const unsafeName = (name: string): Option.Option<string> => {
  if (name === "") return Option.some("the name is empty")
  if (name === "." || name === "..") return Option.some(`"${name}" is not a file name`)
  if (/[/\\]/.test(name)) return Option.some("the name contains a path separator")
  if (name.includes("\u0000")) return Option.some("the name contains a NUL byte")
  if (Buffer.byteLength(name) > 255) return Option.some("the name is longer than 255 bytes")
  return Option.none()
}

/** Opens a file, closed with the scope. */
export const openFile = (path: string, flags: string) =>
  Effect.acquireRelease(
    Effect.tryPromise({ try: () => open(path, flags, 0o644), catch: (error) => fileError(path, error) }),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )

/** A file's bytes, `READ_SIZE` at a time, each read into a buffer of its own. */
export const readChunks = (path: string, handle: FileHandle): Stream.Stream<Uint8Array, FileError> =>
  Stream.repeatEffectOption(
    Effect.tryPromise({
      try: () => handle.read(Buffer.allocUnsafe(READ_SIZE), 0, READ_SIZE, null),
      catch: (error) => Option.some(fileError(path, error))
    }).pipe(
      Effect.flatMap(({ buffer, bytesRead }) =>
        bytesRead === 0 ? Effect.fail(Option.none()) : Effect.succeed(buffer.subarray(0, bytesRead))
      )
    )
  )

/** Writes all of `bytes` at the file's position. */
export const writeAll = (path: string, handle: FileHandle, bytes: Uint8Array): Effect.Effect<void, FileError> =>
  Effect.tryPromise({
    try: async () => {
      let offset = 0
      while (offset < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, null)
        offset += bytesWritten
      }
    },
    catch: (error) => fileError(path, error)
  })
