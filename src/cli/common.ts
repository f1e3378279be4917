/**
 * What several commands share: the password and encryption options, HOST:PORT, output to stdout
 * with back-pressure, and the one-line logger.
 */
import * as Options from "@effect/cli/Options"
import { readFile } from "node:fs/promises"
import { Cause, Effect, HashMap, Logger, Option, Redacted } from "effect"
import type { EncryptionPolicy, IdentityKey, IdentityKeyError } from "../index.js"
import { identityKeyFromEnv, loadIdentityKey } from "../identity/KeyFile.js"
import { describeCause, FileError, oneLine, UsageError } from "./errors.js"

const passwordFile = Options.text("password-file").pipe(
  Options.withPseudoName("PATH"),
  Options.withDescription(
    "Read the password from this file (its first line; a trailing newline is dropped). Passwords are never given on the command line: --password is refused."
  ),
  Options.optional
)

const passwordEnv = Options.text("password-env").pipe(
  Options.withPseudoName("NAME"),
  Options.withDescription(
    "Read the password from this environment variable, e.g. --password-env CVG_PASSWORD. Passwords are never given on the command line: --password is refused."
  ),
  Options.optional
)

const encryption = Options.choice("encryption", ["required", "preferred", "disabled"]).pipe(
  Options.withDescription("Encryption policy, negotiated with the peer (PROTOCOL.md §4): required (default), preferred or disabled."),
  Options.withDefault<EncryptionPolicy>("required")
)

const port = Options.integer("port").pipe(
  Options.withPseudoName("PORT"),
  Options.withDescription("TCP port to listen on; 0 picks a free one, and the listening line on stderr names it.")
)

const host = Options.text("host").pipe(
  Options.withPseudoName("HOST"),
  Options.withDescription("Address to listen on (default 127.0.0.1; 0.0.0.0 or :: for every interface)."),
  Options.withDefault("127.0.0.1")
)

const identityFile = Options.text("identity").pipe(
  Options.withPseudoName("PATH"),
  Options.withDescription(
    "Prove this server identity key (a file from `cvg keygen`, readable by its owner only) in every handshake, so that clients can pin it with --server-key."
  ),
  Options.optional
)

const identityEnv = Options.text("identity-env").pipe(
  Options.withPseudoName("NAME"),
  Options.withDescription("Like --identity, with the key's PEM (or base64 PKCS#8 DER) in this environment variable."),
  Options.optional
)

const serverKey = Options.text("server-key").pipe(
  Options.withPseudoName("FINGERPRINT"),
  Options.withDescription(
    "Refuse any server that does not prove this identity key (sha256:… as `cvg keygen` printed it): safe against a man in the middle, with or without a password."
  ),
  Options.optional
)

const knownHosts = Options.text("known-hosts").pipe(
  Options.withPseudoName("PATH"),
  Options.withDescription(
    "Trust on first use: remember the identity key each HOST:PORT proves the first time in this file, and refuse a different one later. --server-key is the stronger choice."
  ),
  Options.optional
)

/** The options every client command (`connect`, `send`) takes: how to authenticate, whom to trust. */
export const clientOptions = { passwordFile, passwordEnv, encryption, serverKey, knownHosts }

/** The options every server command (`serve`, `receive`) takes: where to listen, how to authenticate. */
export const serverOptions = { port, host, passwordFile, passwordEnv, encryption, identity: identityFile, identityEnv }

interface ClientOptionValues extends PasswordSource {
  readonly encryption: EncryptionPolicy
  readonly serverKey: Option.Option<string>
  readonly knownHosts: Option.Option<string>
}

interface ServerOptionValues extends PasswordSource {
  readonly port: number
  readonly host: string
  readonly encryption: EncryptionPolicy
  readonly identity: Option.Option<string>
  readonly identityEnv: Option.Option<string>
}

/** A client command's `connect` options, with the password read (host and port come from its address). */
export const clientSessionOptions = (options: ClientOptionValues) =>
  Effect.map(loadPassword(options), (password) => ({
    encryption: options.encryption,
    password,
    serverKey: Option.getOrUndefined(options.serverKey),
    knownHosts: Option.getOrUndefined(options.knownHosts)
  }))

/** A server command's `serve` options, with the password and the identity key read. */
export const serverSessionOptions = (options: ServerOptionValues) =>
  Effect.gen(function*() {
    const password = yield* loadPassword(options)
    const identity = yield* loadIdentity(options)
    return { host: options.host, port: options.port, encryption: options.encryption, password, identity }
  })

/** The server's identity key from `--identity` or `--identity-env`, if either was given. */
const loadIdentity = (source: {
  readonly identity: Option.Option<string>
  readonly identityEnv: Option.Option<string>
}): Effect.Effect<IdentityKey | undefined, UsageError | IdentityKeyError> =>
  Option.isSome(source.identity) && Option.isSome(source.identityEnv)
    ? Effect.fail(new UsageError({ detail: "give either --identity or --identity-env, not both" }))
    : Option.isSome(source.identity)
    ? loadIdentityKey(source.identity.value)
    : Option.isSome(source.identityEnv)
    ? identityKeyFromEnv(source.identityEnv.value)
    : Effect.succeed(undefined)

/** What the user asked for: the password's source, if any. */
interface PasswordSource {
  readonly passwordFile: Option.Option<string>
  readonly passwordEnv: Option.Option<string>
}

/** The password from `--password-file` or `--password-env`, `Redacted` from the moment it is read. */
const loadPassword = (
  source: PasswordSource
): Effect.Effect<Redacted.Redacted<string> | undefined, UsageError | FileError> =>
  Effect.gen(function*() {
    if (Option.isSome(source.passwordFile) && Option.isSome(source.passwordEnv)) {
      return yield* new UsageError({ detail: "give either --password-file or --password-env, not both" })
    }
    if (Option.isSome(source.passwordFile)) {
      const path = source.passwordFile.value
      const text = yield* Effect.tryPromise({
        try: () => readFile(path, "utf8"),
        catch: (error) => fileError(path, error)
      })
      const password = text.split(/\r?\n/, 1)[0] ?? ""
      if (password === "") return yield* new UsageError({ detail: `the password file ${path} is empty` })
      return Redacted.make(password)
    }
    if (Option.isSome(source.passwordEnv)) {
      const name = source.passwordEnv.value
      const value = process.env[name]
      if (value === undefined || value === "") {
        return yield* new UsageError({ detail: `the environment variable ${name} (--password-env) is not set or empty` })
      }
      return Redacted.make(value)
    }
    return undefined
  })

/** A node:fs error as a `FileError`. */
export const fileError = (path: string, error: unknown): FileError => {
  const code = typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : "EIO"
  const detail = DESCRIPTIONS[code] ?? (error instanceof Error ? oneLine(error.message) : String(error))
  return new FileError({ path, code, detail })
}

const DESCRIPTIONS: Readonly<Record<string, string>> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EISDIR: "is a directory",
  ENOTDIR: "not a directory",
  EEXIST: "already exists",
  ENOSPC: "no space left on device",
  EPIPE: "the reader went away (broken pipe)"
}

/** Parses `HOST:PORT`, `[IPv6]:PORT`; the host defaults to nothing, so both parts are required. */
export const parseAddress = (text: string): Effect.Effect<{ readonly host: string; readonly port: number }, UsageError> => {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text)
  const port = match === null ? NaN : Number(match[2])
  if (match === null || !Number.isInteger(port) || port < 1 || port > 65535) {
    return Effect.fail(new UsageError({ detail: `expected HOST:PORT (e.g. 127.0.0.1:5000 or [::1]:5000), got "${text}"` }))
  }
  return Effect.succeed({ host: match[1]!, port })
}

/** Writes to stdout, waiting for it to drain when its buffer is full (back-pressure towards the peer). */
export const writeStdout = (bytes: Uint8Array): Effect.Effect<void, FileError> =>
  bytes.length === 0 ? Effect.void : Effect.async<void, FileError>((resume) => {
    const stdout = process.stdout
    const onError = (error: unknown) => {
      cleanup()
      resume(Effect.fail(fileError("stdout", error)))
    }
    const onDrain = () => {
      cleanup()
      resume(Effect.void)
    }
    const cleanup = () => {
      stdout.off("error", onError)
      stdout.off("drain", onDrain)
    }
    stdout.on("error", onError)
    if (stdout.write(bytes)) {
      cleanup()
      resume(Effect.void)
    } else {
      stdout.on("drain", onDrain)
    }
    return Effect.sync(cleanup)
  })

/** Whether progress and status lines are for a person: stderr is a terminal. */
export const stderrIsTty = (): boolean => process.stderr.isTTY === true

/**
 * Every log line as one line on stderr, `cvg: ` first: the message, the failure's own message when
 * a cause is attached, and the peer when the library annotated it.
 */
export const lineLogger = Logger.make(({ annotations, cause, message }) => {
  const parts: Array<string> = []
  const peer = HashMap.get(annotations, "peer")
  if (Option.isSome(peer)) parts.push(String(peer.value))
  const messages: ReadonlyArray<unknown> = Array.isArray(message) ? message : [message]
  for (const item of messages) {
    const text = typeof item === "string" ? item.replace(/^cvg-core: /, "") : String(item)
    if (text !== "") parts.push(text)
  }
  if (!Cause.isEmpty(cause)) {
    const line = describeCause(cause).line
    if (line !== undefined) parts.push(line)
  }
  process.stderr.write(`cvg: ${oneLine(parts.join(": "))}\n`)
})
