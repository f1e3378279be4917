/**
 * Server identity keys at rest (README "Server identity"): a PKCS#8 PEM file that only its owner may
 * read, or an environment variable for deployments that inject secrets that way. The private key is
 * never part of an error, a log line or a detail: only the path or the variable's name is.
 */
import { Effect } from "effect"
import * as NodeCrypto from "node:crypto"
import { open, readFile, stat } from "node:fs/promises"
import { IdentityKeyError } from "../errors.js"
import { checkMode, tryFile } from "./FileErrors.js"
import { type IdentityKey, identityKeyFromPrivate } from "./IdentityKey.js"

/** A key file larger than this is not a key file (an Ed25519 PEM is 119 bytes). */
const MAX_KEY_FILE_SIZE = 64 * 1024

/** The private key of a PEM (PKCS#8) or of base64 PKCS#8 DER, or `Format` naming `where` and what was wrong. */
const parse = (where: string, text: string): Effect.Effect<IdentityKey, IdentityKeyError> =>
  Effect.gen(function*() {
    const trimmed = text.trim()
    const key = yield* Effect.try({
      try: () =>
        trimmed.startsWith("-----BEGIN")
          ? NodeCrypto.createPrivateKey({ key: trimmed, format: "pem" })
          : NodeCrypto.createPrivateKey({ key: Buffer.from(trimmed, "base64"), format: "der", type: "pkcs8" }),
      // node:crypto's message says only which decoder failed; the text itself is never quoted.
      catch: (cause) =>
        new IdentityKeyError({ reason: "Format", path: where, detail: "not a PKCS#8 private key (PEM, or base64 DER)", cause })
    })
    return yield* identityKeyFromPrivate(key).pipe(
      Effect.mapError((e) => new IdentityKeyError({ reason: "Format", path: where, detail: e.detail }))
    )
  })

/**
 * Loads an identity key from a PEM file. A file that group or others may read is refused
 * (`Permissions`), as OpenSSH refuses such a host key: anyone who can read it can be the server.
 */
export const loadIdentityKey = (path: string): Effect.Effect<IdentityKey, IdentityKeyError> =>
  Effect.gen(function*() {
    const info = yield* tryFile(path, "stat", () => stat(path))
    if (!info.isFile()) return yield* new IdentityKeyError({ reason: "Format", path, detail: "not a regular file" })
    if (info.size > MAX_KEY_FILE_SIZE) {
      return yield* new IdentityKeyError({ reason: "Format", path, detail: `larger than ${MAX_KEY_FILE_SIZE} bytes` })
    }
    yield* checkMode(path, info.mode, 0o077, "lets other users read the private key")
    return yield* parse(path, yield* tryFile(path, "read", () => readFile(path, "utf8")))
  })

/** Loads an identity key from an environment variable holding the PEM, or the base64 of the PKCS#8 DER. */
export const identityKeyFromEnv = (name: string): Effect.Effect<IdentityKey, IdentityKeyError> =>
  Effect.suspend(() => {
    const where = `$${name}`
    const value = process.env[name]
    return value === undefined || value.trim() === ""
      ? Effect.fail(new IdentityKeyError({ reason: "NotFound", path: where, detail: "the environment variable is not set or empty" }))
      : parse(where, value)
  })

/**
 * Writes `key` as a PKCS#8 PEM file readable by its owner alone. It never replaces a file
 * (`Exists`): overwriting a server's identity would turn away every client that pinned it.
 */
export const saveIdentityKey = (key: IdentityKey, path: string): Effect.Effect<void, IdentityKeyError> =>
  Effect.acquireUseRelease(
    // O_EXCL with mode 600: the file is never readable by others, not even between create and chmod.
    tryFile(path, "create", () => open(path, "wx", 0o600)),
    (handle) =>
      tryFile(path, "write", async () => {
        await handle.writeFile(key.privateKey.export({ format: "pem", type: "pkcs8" }))
        await handle.sync()
      }),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )
