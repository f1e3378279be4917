/**
 * Trust on first use (README "Server identity"): a file of `host:port sha256:<hex>` lines that
 * remembers the identity key each server showed the first time, so that a later connection to the
 * same address with another key is refused. Opt-in, like OpenSSH's `known_hosts`: pinning a
 * fingerprint (`serverKey`) is the stronger choice, since the very first connection is unprotected.
 *
 * The file is read at each lookup (it is small and may be edited by hand or by another process) and
 * appended to, never rewritten, so that concurrent clients cannot lose each other's entries.
 */
import { Effect } from "effect"
import { open, readFile, stat } from "node:fs/promises"
import { IdentityKeyError } from "../errors.js"
import { checkMode, tryFile } from "./FileErrors.js"

export interface KnownHosts {
  /** The fingerprint remembered for `peer` (`host:port`), or undefined when there is none (or no file yet). */
  readonly lookup: (peer: string) => Effect.Effect<string | undefined, IdentityKeyError>
  /**
   * Remembers `fingerprint` for `peer`, creating the file (mode 600) if needed. A peer already
   * remembered with the same key is left as is; one remembered with another key is `Exists`: replacing
   * a trusted key is for a person editing the file, never for the library.
   */
  readonly remember: (peer: string, fingerprint: string) => Effect.Effect<void, IdentityKeyError>
}

/** A known-hosts file larger than this is refused rather than read: it is a list of servers, not data. */
const MAX_FILE_SIZE = 4 * 1024 * 1024
const FINGERPRINT = /^sha256:[0-9a-f]{64}$/
const PEER = /^\S+:\d{1,5}$/

/** Host names are case-insensitive; the port is kept as written. */
const normalize = (peer: string) => peer.toLowerCase()

const formatError = (path: string, detail: string) => new IdentityKeyError({ reason: "Format", path, detail })

/** Every entry of the file; a line that is not `peer fingerprint`, or a peer listed with two keys, is `Format`. */
const parse = (path: string, text: string): Effect.Effect<ReadonlyMap<string, string>, IdentityKeyError> =>
  Effect.suspend(() => {
    const entries = new Map<string, string>()
    const lines = text.split("\n")
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim()
      if (line === "" || line.startsWith("#")) continue
      const fields = line.split(/\s+/)
      const [peer, fingerprint] = fields
      if (fields.length !== 2 || peer === undefined || fingerprint === undefined) {
        return Effect.fail(formatError(path, `line ${i + 1}: expected "host:port sha256:<64 hex digits>"`))
      }
      if (!PEER.test(peer)) return Effect.fail(formatError(path, `line ${i + 1}: expected host:port, got ${JSON.stringify(peer)}`))
      if (!FINGERPRINT.test(fingerprint)) {
        return Effect.fail(formatError(path, `line ${i + 1}: expected sha256:<64 lowercase hex digits>`))
      }
      const known = entries.get(normalize(peer))
      if (known !== undefined && known !== fingerprint) {
        return Effect.fail(formatError(path, `line ${i + 1}: ${peer} is listed with two different keys`))
      }
      entries.set(normalize(peer), fingerprint)
    }
    return Effect.succeed(entries)
  })

/** The file's entries, or none when it does not exist yet; a file others may write is refused. */
const read = (path: string): Effect.Effect<{ readonly entries: ReadonlyMap<string, string>; readonly text: string }, IdentityKeyError> =>
  Effect.gen(function*() {
    const info = yield* tryFile(path, "stat", () => stat(path)).pipe(
      Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(undefined))
    )
    if (info === undefined) return { entries: new Map<string, string>(), text: "" }
    if (!info.isFile()) return yield* formatError(path, "not a regular file")
    if (info.size > MAX_FILE_SIZE) return yield* formatError(path, `larger than ${MAX_FILE_SIZE} bytes`)
    yield* checkMode(path, info.mode, 0o022, "lets other users add keys to it")
    const text = yield* tryFile(path, "read", () => readFile(path, "utf8"))
    return { entries: yield* parse(path, text), text }
  })

const checkPeer = (path: string, peer: string, fingerprint?: string): Effect.Effect<void, IdentityKeyError> =>
  !PEER.test(peer)
    ? Effect.fail(formatError(path, `peer must be host:port, got ${JSON.stringify(peer)}`))
    : fingerprint !== undefined && !FINGERPRINT.test(fingerprint)
    ? Effect.fail(formatError(path, "fingerprint must be sha256:<64 lowercase hex digits>"))
    : Effect.void

export const makeKnownHosts = (path: string): KnownHosts => ({
  lookup: (peer) =>
    Effect.zipRight(
      checkPeer(path, peer),
      Effect.map(read(path), ({ entries }) => entries.get(normalize(peer)))
    ),
  remember: (peer, fingerprint) =>
    Effect.gen(function*() {
      yield* checkPeer(path, peer, fingerprint)
      const { entries, text } = yield* read(path)
      const known = entries.get(normalize(peer))
      if (known === fingerprint) return
      if (known !== undefined) {
        return yield* new IdentityKeyError({
          reason: "Exists",
          path,
          detail: `${peer} is already known with another key (${known}); edit the file to replace it`
        })
      }
      const separator = text === "" || text.endsWith("\n") ? "" : "\n"
      // One append of one line: concurrent writers each add theirs, and a crash leaves no half file.
      yield* Effect.acquireUseRelease(
        tryFile(path, "open", () => open(path, "a", 0o600)),
        (handle) => tryFile(path, "write", () => handle.appendFile(`${separator}${normalize(peer)} ${fingerprint}\n`)),
        // A failed close after a successful append loses nothing.
        (handle) => Effect.promise(() => handle.close().catch(() => undefined))
      )
    })
})
