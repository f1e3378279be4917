/**
 * File system failures of the identity files (key files, known hosts) as `IdentityKeyError`s, and
 * the permission rule both follow (README "Server identity").
 */
import { Effect } from "effect"
import { IdentityKeyError } from "../errors.js"

const codeOf = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : undefined

/** Maps a failed `node:fs` call on `path` to its reason; `what` names the operation for the detail. */
export const fileError = (path: string, what: string) => (error: unknown): IdentityKeyError => {
  const code = codeOf(error)
  const reason = code === "ENOENT" ? "NotFound" : code === "EEXIST" ? "Exists" : code === "EACCES" || code === "EPERM" ? "Permissions" : "Io"
  return new IdentityKeyError({ reason, path, detail: `${what}: ${code ?? String(error)}`, cause: error })
}

/** A `node:fs` promise as an Effect whose failure is the file's `IdentityKeyError`. */
export const tryFile = <A>(path: string, what: string, run: () => Promise<A>): Effect.Effect<A, IdentityKeyError> =>
  Effect.tryPromise({ try: run, catch: fileError(path, what) })

/**
 * Refuses a file whose mode grants `forbidden` bits (e.g. `0o077` for a private key, `0o022` for a
 * trust file): another local user could read the key, or plant a key in the trust file. POSIX only:
 * Windows has no mode bits to check.
 */
export const checkMode = (path: string, mode: number, forbidden: number, why: string): Effect.Effect<void, IdentityKeyError> =>
  process.platform === "win32" || (mode & forbidden) === 0
    ? Effect.void
    : Effect.fail(
      new IdentityKeyError({
        reason: "Permissions",
        path,
        detail: `mode ${(mode & 0o777).toString(8).padStart(3, "0")} ${why} (chmod ${(0o600).toString(8)} ${path})`
      })
    )
