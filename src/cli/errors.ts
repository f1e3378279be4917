/**
 * The CLI's own failures, and how every failure a command can end with becomes an exit code and one
 * line on stderr (README.md, "Command line": the exit code table).
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import { Cause, Option, Schema } from "effect"
import { PeerAlert } from "../index.js"
import { tagOf } from "../internal/tag.js"

/** The command line cannot be used as given: a missing or bad argument, `--password`, an unset variable. */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}

/** A local file or folder could not be read or written (`code` is the system's, e.g. `ENOENT`). */
export class FileError extends Schema.TaggedError<FileError>()("FileError", {
  path: Schema.String,
  code: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `${this.path}: ${this.detail}`
  }
}

/** A file transfer did not complete: the peer refused it, or the bytes did not add up. */
export class TransferFailed extends Schema.TaggedError<TransferFailed>()("TransferFailed", {
  detail: Schema.String
}) {
  override get message(): string {
    return `transfer failed: ${this.detail}`
  }
}

/** Something this copy of cvg cannot do (the bench, from an installed package). */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }
}

/** A program the CLI ran for the user (the bench) ended with a non-zero exit code, which cvg passes on. */
export class ChildExited extends Schema.TaggedError<ChildExited>()("ChildExited", {
  command: Schema.String,
  code: Schema.Number
}) {
  override get message(): string {
    return `${this.command} exited with code ${this.code}`
  }
}

/** The exit codes, as documented in README.md. */
export const ExitCode = {
  ok: 0,
  other: 1,
  usage: 2,
  unreachable: 3,
  auth: 4,
  handshake: 5,
  protocol: 6,
  closed: 7,
  refused: 8,
  file: 9,
  interrupted: 130
} as const

/** The exit codes as `--help` and README.md list them (a test checks that they agree). */
export const EXIT_CODES: ReadonlyArray<readonly [string, string]> = [
  ["0", "success"],
  ["1", "other failure: a socket error, an internal error, the bench not available"],
  ["2", "usage: bad or missing arguments, --password, an empty password file, an unset --password-env (UsageError, InvalidArgument)"],
  ["3", "cannot connect or listen (ConnectFailed, ListenFailed)"],
  ["4", "authentication failed: wrong or missing password, or not the server key pinned or known (AuthFailed, ServerKeyMismatch)"],
  ["5", "handshake failed (HandshakeError, EncryptionMismatch, CapabilityMismatch, PeerAlert during the handshake)"],
  ["6", "protocol error (ProtocolError, PeerAlert during the session, UnexpectedPacket, DecodeFailed)"],
  ["7", "the connection closed before the command was done (ConnectionClosed)"],
  ["8", "the peer refused or could not answer (RemoteError, RequestTimeout, TransferFailed)"],
  ["9", "a local file could not be read or written, or an identity key or known-hosts file is refused (FileError, IdentityKeyError)"],
  ["130", "interrupted (Ctrl-C, SIGTERM)"],
  ["N", "cvg bench: the bench's own exit code"]
]

/** Exit codes by error tag; a tag not listed (a socket error, a defect) exits with `other`. */
const CODES: Readonly<Record<string, number>> = {
  UsageError: ExitCode.usage,
  InvalidArgument: ExitCode.usage,
  ConnectFailed: ExitCode.unreachable,
  ListenFailed: ExitCode.unreachable,
  AuthFailed: ExitCode.auth,
  ServerKeyMismatch: ExitCode.auth,
  CapabilityMismatch: ExitCode.handshake,
  EncryptionMismatch: ExitCode.handshake,
  HandshakeError: ExitCode.handshake,
  ProtocolError: ExitCode.protocol,
  UnexpectedPacket: ExitCode.protocol,
  DecodeFailed: ExitCode.protocol,
  ConnectionClosed: ExitCode.closed,
  RemoteError: ExitCode.refused,
  RequestTimeout: ExitCode.refused,
  TransferFailed: ExitCode.refused,
  FileError: ExitCode.file,
  IdentityKeyError: ExitCode.file,
  Unavailable: ExitCode.other
}

const messageOf = (error: unknown): string => {
  if (error instanceof Error && error.message !== "") return error.message
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" && error.message !== "") {
    return error.message
  }
  return tagOf(error) ?? String(error)
}

/** One line: newlines and runs of spaces folded, ANSI styling removed. */
export const oneLine = (text: string): string =>
  text.replace(/\u001b\[[0-9;]*m/g, "").replace(/\s+/g, " ").trim()

/** What a failure exits with, and the line that says why (without the `cvg: ` prefix). */
export const describeFailure = (error: unknown): { readonly code: number; readonly line: string } => {
  // @effect/cli's own errors come first: one of them is also tagged "InvalidArgument".
  if (ValidationError.isValidationError(error)) {
    const tag: string = error._tag
    const text = "error" in error ? oneLine(helpText(error.error)) : ""
    return { code: ExitCode.usage, line: `${text === "" ? tag : text} (see cvg --help)` }
  }
  if (error instanceof ChildExited) return { code: error.code, line: error.message }
  const tag = tagOf(error)
  const code = error instanceof PeerAlert
    ? error.phase === "Handshake" ? ExitCode.handshake : ExitCode.protocol
    : tag === undefined
    ? ExitCode.other
    : CODES[tag] ?? ExitCode.other
  const message = oneLine(messageOf(error))
  // A socket error's message is terse ("An error occurred"): its cause says what happened.
  if (tag === "SocketError" || tag === "SocketServerError") {
    const cause = typeof error === "object" && error !== null && "cause" in error ? error.cause : undefined
    return { code, line: cause === undefined ? message : `${message}: ${oneLine(messageOf(cause))}` }
  }
  return { code, line: message }
}

/** The exit code and line of a whole run's cause: a failure, a defect, or an interruption. */
export const describeCause = (cause: Cause.Cause<unknown>): { readonly code: number; readonly line: string | undefined } => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return describeFailure(failure.value)
  if (Cause.isInterruptedOnly(cause)) return { code: ExitCode.interrupted, line: undefined }
  const defect = Cause.squash(cause)
  return { code: ExitCode.other, line: `internal error: ${oneLine(messageOf(defect))}` }
}

/** The text of a HelpDoc as @effect/cli renders it. */
const helpText = (doc: HelpDoc.HelpDoc): string => HelpDoc.toAnsiText(doc)
