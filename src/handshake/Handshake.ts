/**
 * The handshake, one program per role, in the order of PROTOCOL.md §3:
 *
 *   client                                   server
 *   ClientHello  (policy, nonce, P-521 key) →
 *                                          ← HelloRetry (difficulty, challenge)   only under load, §3.6
 *   PuzzleSolution (solution)              →
 *                                          ← ServerHello (policy, password?, nonce, P-521 key)
 *   [both: negotiate §4.1, ECDH, key schedule §4.2; records sealed from here when encrypted]
 *                                          ← ServerFinished (MAC over both hellos)
 *   ClientFinished (MAC, password proof?)  →
 *                                          ← ServerAccept (server's password proof?)
 *
 * Each returns a `SecureChannel`, which exists only once every check has passed.
 */
import * as Socket from "@effect/platform/Socket"
import { Cause, Duration, Effect, Either, Exit, Option, Redacted } from "effect"
import type { Scope } from "effect"
import type { CryptoError, CryptoService, EcdhKeyPair } from "../crypto/Crypto.js"
import { AEAD_TAG_LENGTH, Crypto } from "../crypto/Crypto.js"
import {
  AuthFailed,
  ConnectionClosed,
  EncryptionMismatch,
  type EncryptionPolicy,
  HandshakeError,
  type PeerAlert,
  ProtocolError
} from "../errors.js"
import { makeEncryptedRecordLayer, makeTaggedRecordLayer, MAX_RECORDS_PER_KEY, type RecordLayer } from "../channel/RecordLayer.js"
import { errorToAlert, handshakeAlertToError, unauthenticatedAlert } from "../channel/Alerts.js"
import { makeSecureChannel, type SecureChannel } from "../channel/SecureChannel.js"
import { FRAME_BOOKKEEPING, makeFramed, type Framed, type ReadEnd, type ReadLimits } from "../transport/Framed.js"
import { encodeFrame, FRAME_HEADER_LENGTH } from "../wire/Frame.js"
import {
  Alert,
  CHALLENGE_LENGTH,
  ClientHello,
  decodeHelloRetry,
  decodePuzzleSolution,
  encodeHelloRetry,
  HelloRetry,
  decodeAlert,
  decodeClientHello,
  decodeMacs,
  decodeServerHello,
  encodeAlert,
  encodeClientHello,
  encodeServerHello,
  HANDSHAKE_MAX_FRAME_SIZE,
  hasMagic,
  helloVersion,
  MessageType,
  NONCE_LENGTH,
  PROTOCOL_VERSION,
  ServerHello
} from "../wire/Messages.js"
import { concatBytes } from "../internal/bytes.js"
import { deriveHandshakeSecrets, type HandshakeSecrets, Labels, passwordProof } from "./KeySchedule.js"
import { negotiate } from "./Negotiation.js"
import { DEFAULT_PUZZLE_DIFFICULTY, MAX_PUZZLE_DIFFICULTY, solve, verifySolution } from "./Puzzle.js"
import { Transcript } from "./Transcript.js"
import { countTagged, errorName, handshakes, SPAN_HANDSHAKE } from "../Observability.js"

/** A password as the user may give it; kept `Redacted` from the moment it enters (PROTOCOL.md §5). */
export type PasswordInput = string | Uint8Array | Redacted.Redacted<string> | Redacted.Redacted<Uint8Array>

export interface HandshakeOptions {
  /** Default `"required"` (PROTOCOL.md §4.1). */
  readonly encryption?: EncryptionPolicy | undefined
  /** When set on the server, clients must prove it; when set on the client, the server must prove it. */
  readonly password?: PasswordInput | undefined
  /** Default 10 seconds. */
  readonly handshakeTimeout?: Duration.DurationInput | undefined
  /** Server: time allowed for the first message (within `handshakeTimeout`). Default 3 seconds. */
  readonly helloTimeout?: Duration.DurationInput | undefined
  /**
   * Server: P-521 jobs waiting at or above which a client must solve a puzzle before the server does
   * any P-521 work for it (PROTOCOL.md §3.6); `serve` keeps asking for 5 s after the queue was last
   * there. 0 asks every client. Default 16.
   */
  readonly puzzleThreshold?: number | undefined
  /** Server: leading zero bits the puzzle asks for (clients refuse more than 22). Default 13. */
  readonly puzzleDifficulty?: number | undefined
  /** Largest frame body accepted, in bytes. Default 1 MiB + 64 (one chunk plus headers). */
  readonly maxFrameSize?: number | undefined
  /** Records sealed under one key before an in-band key update. Default and maximum 2^24. */
  readonly rekeyAfter?: number | undefined
  /** Queued outgoing bytes above which senders wait. Default 1 MiB. */
  readonly highWaterMark?: number | undefined
}

export type HandshakeFailure =
  | EncryptionMismatch
  | AuthFailed
  | HandshakeError
  | ProtocolError
  | PeerAlert
  | ConnectionClosed
  | Socket.SocketError

export const DEFAULT_MAX_FRAME_SIZE = 1024 * 1024 + 64
export const DEFAULT_HANDSHAKE_TIMEOUT = Duration.seconds(10)
export const DEFAULT_HELLO_TIMEOUT = Duration.seconds(3)
/** An eighth of the default P-521 queue: under a flood the puzzle starts long before refusals do. */
export const DEFAULT_PUZZLE_THRESHOLD = 16

/**
 * What the server's admission control (src/server/Server.ts) shares with one handshake (PROTOCOL.md
 * §10.5): a signal that it was evicted to make room for a newer connection, whether it is waiting on
 * its peer (only those are evicted while others exist), and whether the server counts as loaded
 * (a puzzle is asked, §3.6).
 */
export interface Admission {
  readonly evicted: Effect.Effect<void>
  readonly waitingOnPeer: (waiting: boolean) => void
  readonly underLoad: () => boolean
  /** Run once when the handshake ends, however it ends: its slot is free again. */
  readonly done: Effect.Effect<void>
}

/** The detail of a handshake evicted by admission control; it ends as `Timeout` (ALERT TIMEOUT). */
export const EVICTED = "evicted: too many handshakes pending"
/** The detail that starts a refusal because the P-521 work queue is full (ALERT LIMIT_EXCEEDED). */
export const BUSY = "busy"

/** A refusal for load, which the server logs rate-limited instead of once per connection. */
export const isBusyRefusal = (error: unknown): boolean =>
  error instanceof ProtocolError && error.reason === "LimitExceeded" && (error.detail?.startsWith(BUSY) ?? false)

/** P-521 work refused by a full queue is `LimitExceeded` (ALERT LIMIT_EXCEEDED), any other failure `fallback`. */
const cryptoFailure = <E extends HandshakeFailure>(fallback: (e: CryptoError) => E) => (e: CryptoError): E | ProtocolError =>
  e.reason === "Busy"
    ? new ProtocolError({ reason: "LimitExceeded", detail: `${BUSY}: ${e.detail ?? "P-521 queue full"}`, cause: e })
    : fallback(e)

export const SUITE = "ECDHE-P521+HKDF-SHA256+AES-256-GCM"
/** Plaintext mode: records are readable but each carries an AES-GMAC tag (PROTOCOL.md §4.4). */
export const PLAINTEXT_SUITE = "ECDHE-P521+HKDF-SHA256+AES-256-GMAC"

const encoder = new TextEncoder()
const EMPTY = new Uint8Array(0)

/** The password's bytes, still redacted; strings are UTF-8. */
export const redactPassword = (input: PasswordInput | undefined): Option.Option<Redacted.Redacted<Uint8Array>> => {
  if (input === undefined) return Option.none()
  const value: string | Uint8Array = Redacted.isRedacted(input) ? Redacted.value<string | Uint8Array>(input) : input
  return Option.some(Redacted.make(typeof value === "string" ? encoder.encode(value) : value))
}

/** `cause` is the decoder's or the frame layer's error, when there is one. */
const malformed = (detail: string, cause?: ProtocolError) =>
  new HandshakeError(cause === undefined ? { reason: "Malformed", detail } : { reason: "Malformed", detail, cause })
const cut = new ConnectionClosed({ reason: "Cut" })

/** Shared state of one side during the handshake. */
interface Context {
  readonly crypto: CryptoService
  readonly framed: Framed
  readonly transcript: Transcript
  readonly policy: EncryptionPolicy
  readonly password: Option.Option<Redacted.Redacted<Uint8Array>>
  readonly maxFrameSize: number
  records: RecordLayer | undefined
  /** Frames read so far: the first one decides whether the peer speaks cvg at all (§3). */
  framesRead: number
  /** Frames read under the record layer: the first one that cannot be read means other keys (§3.3). */
  framesUnderKeys: number
  /** The client's own hello frame, to recognise an echo server (§3). */
  ownHello: Uint8Array | undefined
  readonly admission: Admission | undefined
}

/** Sends a handshake message, through the record layer once there is one, and records it. */
const send = (ctx: Context, type: number, body: Uint8Array): Uint8Array => {
  const frame = encodeFrame(type, body)
  if (ctx.records === undefined) ctx.framed.enqueue(frame)
  else ctx.records.write(type, body, EMPTY, ctx.framed.enqueue)
  ctx.transcript.add(frame)
  return frame
}

/**
 * Why the handshake stops, and whether the peer is told (PROTOCOL.md §6): not when it spoke last
 * (an alert is never answered with an alert) and not when it is gone.
 */
interface Stop {
  readonly error: HandshakeFailure
  readonly tell: boolean
}
const tell = (error: HandshakeFailure): Stop => ({ error, tell: true })
const quiet = (error: HandshakeFailure): Stop => ({ error, tell: false })

const notCvgPeer = (what: string) => new HandshakeError({ reason: "NotCvgPeer", detail: `not a cvg peer: ${what}` })

/** `first bytes "HTTP/1.1"` when they are printable, else in hex. */
const describeFirstBytes = (bytes: Uint8Array): string =>
  bytes.every((b) => b >= 0x20 && b < 0x7f)
    ? `first bytes ${JSON.stringify(String.fromCharCode(...bytes))}`
    : `first bytes 0x${Buffer.from(bytes).toString("hex")}`

/** A reset reads as a cut, like an end of stream (§3); a connection that never opened keeps its own error. */
const isCut = (error: Socket.SocketError): boolean => error.reason === "Read" || error.reason === "Close"

const readEndStop = (ctx: Context, end: ReadEnd): Stop => {
  switch (end._tag) {
    case "Eof":
      return quiet(cut)
    case "SocketError":
      return quiet(isCut(end.error) ? new ConnectionClosed({ reason: "Cut", cause: end.error }) : end.error)
    case "ProtocolError":
      // A first length over the handshake limit is another protocol's bytes (`HTTP`, `SSH-`), §3.
      if (ctx.framesRead === 0 && end.error.reason === "FrameTooLarge") {
        return tell(notCvgPeer(describeFirstBytes(ctx.framed.firstBytes())))
      }
      return tell(end.error.reason === "LimitExceeded" ? end.error : malformed(end.error.message, end.error))
  }
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i])

/**
 * Reads the next message and insists on its type. An alert from the peer becomes the error it
 * stands for (§6); the first frame must look like cvg at all (§3); once keys exist, frames go
 * through the record layer and the first that cannot be read is a key confirmation failure (§3.3).
 */
const read = (ctx: Context, expected: ReadonlyArray<number>): Effect.Effect<readonly [number, Uint8Array], Stop> =>
  Effect.gen(function*() {
    ctx.admission?.waitingOnPeer(true)
    const [outerType, header, frameBody] = yield* Effect.mapError(ctx.framed.nextFrame, (end) => readEndStop(ctx, end)).pipe(
      Effect.ensuring(Effect.sync(() => ctx.admission?.waitingOnPeer(false)))
    )
    const first = ctx.framesRead++ === 0
    let message: readonly [number, Uint8Array] | undefined
    if (ctx.records === undefined) {
      message = [outerType, frameBody]
    } else {
      const firstUnderKeys = ctx.framesUnderKeys++ === 0
      if (outerType === MessageType.ALERT && (ctx.records.encrypted || frameBody.length < AEAD_TAG_LENGTH)) {
        // §6: a peer with keys seals its alerts, or in plaintext mode tags them (§4.4); an alert too
        // short to carry a tag may have been written by anyone.
        const alert = decodeAlert(frameBody)
        return yield* Effect.fail(quiet(Either.isRight(alert) ? unauthenticatedAlert(alert.right.code) : malformed("alert", alert.left)))
      }
      const error = ctx.records.read(outerType, header, frameBody, (type, body) => {
        message = [type, body]
      })
      if (error !== undefined) {
        const unreadable = error.reason === "DecryptFailed" || outerType === MessageType.ENCRYPTED
        if (firstUnderKeys && unreadable) {
          return yield* Effect.fail(
            tell(
              new HandshakeError({ reason: "KeyConfirmation", detail: "the first frame under the new keys cannot be read", cause: error })
            )
          )
        }
        return yield* Effect.fail(tell(error.reason === "DecryptFailed" ? error : malformed(error.message, error)))
      }
      // The record layer consumed a KEY_UPDATE, which has no place in the handshake (§7.2).
      if (message === undefined) return yield* Effect.fail(tell(malformed("KEY_UPDATE inside the handshake")))
    }
    const [type, body] = message
    if (type === MessageType.ALERT) {
      const alert = decodeAlert(body)
      return yield* Effect.fail(quiet(Either.isRight(alert) ? handshakeAlertToError(alert.right.code) : malformed("alert", alert.left)))
    }
    if (first) {
      if (ctx.ownHello !== undefined && sameBytes(encodeFrame(type, body), ctx.ownHello)) {
        return yield* Effect.fail(tell(notCvgPeer("it echoed our own hello")))
      }
      const isHello = type === MessageType.CLIENT_HELLO || type === MessageType.SERVER_HELLO
      if (!expected.includes(type) || (isHello && !hasMagic(body))) {
        return yield* Effect.fail(tell(notCvgPeer(describeFirstBytes(ctx.framed.firstBytes()))))
      }
    }
    if (!expected.includes(type)) return yield* Effect.fail(tell(malformed(`expected message ${expected.join(" or ")}, got ${type}`)))
    ctx.transcript.add(encodeFrame(type, body))
    return message
  })

/** Tells the peer why we stop (PROTOCOL.md §6) unless `tell` is false, then fails with the same error. */
const abort = <E extends HandshakeFailure>(ctx: Context, error: E, tellPeer = true): Effect.Effect<never, E> =>
  Effect.suspend(() => {
    // A PeerAlert is the peer's own alert, which is never answered with one (§6).
    if (
      tellPeer && error._tag !== "ConnectionClosed" && error._tag !== "SocketError" && error._tag !== "EncryptionMismatch" &&
      error._tag !== "PeerAlert"
    ) {
      const body = encodeAlert(new Alert({ code: errorToAlert(error) }))
      if (ctx.records === undefined) ctx.framed.enqueue(encodeFrame(MessageType.ALERT, body))
      else ctx.records.write(MessageType.ALERT, body, EMPTY, ctx.framed.enqueue)
    }
    return Effect.zipRight(Effect.ignore(Effect.timeout(ctx.framed.endWrite, "1 second")), Effect.fail(error))
  })

const stop = (ctx: Context) => (s: Stop): Effect.Effect<never, HandshakeFailure> => abort(ctx, s.error, s.tell)

/** The next message, which must be of one of the `expected` types; any failure ends the handshake (§6). */
const receiveOneOf = (ctx: Context, expected: ReadonlyArray<number>): Effect.Effect<readonly [number, Uint8Array], HandshakeFailure> =>
  read(ctx, expected).pipe(Effect.catchAll(stop(ctx)))

const receive = (ctx: Context, expected: number): Effect.Effect<Uint8Array, HandshakeFailure> =>
  Effect.map(receiveOneOf(ctx, [expected]), ([, body]) => body)

/**
 * §3.6 on the server: under load (P-521 jobs waiting at or above the threshold) the client must
 * prove some work, bound to its hello and to a challenge fresh to this connection, before the server
 * spends any P-521 work on it. Checking costs one hash.
 */
const puzzleIfLoaded = (ctx: Context, options: HandshakeOptions, clientHelloFrame: Uint8Array) =>
  Effect.gen(function*() {
    const loaded = ctx.admission?.underLoad() ??
      (ctx.crypto.load?.().queued ?? 0) >= (options.puzzleThreshold ?? DEFAULT_PUZZLE_THRESHOLD)
    if (!loaded) return
    const difficulty = options.puzzleDifficulty ?? DEFAULT_PUZZLE_DIFFICULTY
    const challenge = yield* ctx.crypto.randomBytes(CHALLENGE_LENGTH)
    send(ctx, MessageType.HELLO_RETRY, encodeHelloRetry(new HelloRetry({ difficulty, challenge })))
    const solution = decodePuzzleSolution(yield* receive(ctx, MessageType.PUZZLE_SOLUTION))
    if (Either.isLeft(solution)) return yield* abort(ctx, malformed(solution.left.message, solution.left))
    if (!verifySolution(ctx.crypto, difficulty, challenge, ctx.crypto.sha256(clientHelloFrame), solution.right)) {
      return yield* abort(ctx, malformed("puzzle solution does not verify"))
    }
  })

/** §3.6 on the client: solve the server's puzzle, within a bound on the work it may ask for. */
const solvePuzzle = (ctx: Context, body: Uint8Array, ownHello: Uint8Array) =>
  Effect.gen(function*() {
    const retry = decodeHelloRetry(body)
    if (Either.isLeft(retry)) return yield* abort(ctx, malformed(retry.left.message, retry.left))
    const { challenge, difficulty } = retry.right
    if (difficulty > MAX_PUZZLE_DIFFICULTY) {
      return yield* abort(
        ctx,
        new HandshakeError({ reason: "Aborted", detail: `puzzle difficulty ${difficulty} is above the limit ${MAX_PUZZLE_DIFFICULTY}` })
      )
    }
    const solution = yield* solve(ctx.crypto, difficulty, challenge, ctx.crypto.sha256(ownHello))
    send(ctx, MessageType.PUZZLE_SOLUTION, solution)
  })

/**
 * Runs P-521 work, but gives up as soon as the peer breaks a read limit (§10.4) or is gone: a peer
 * that floods the handshake, or replays a hello and leaves, does not get the work done for it.
 */
const unlessReadFails = <A>(ctx: Context, work: Effect.Effect<A, HandshakeFailure>): Effect.Effect<A, HandshakeFailure> =>
  Effect.raceFirst(work, Effect.catchAll(ctx.framed.readFailure, (end) => stop(ctx)(readEndStop(ctx, end))))

const importAndDerive = (ctx: Context, own: EcdhKeyPair, peerKey: Uint8Array) =>
  Effect.gen(function*() {
    // The CryptoError says why the point was refused; it holds no key material, only the reason.
    const invalid = (cause: CryptoError) => new HandshakeError({ reason: "InvalidPublicKey", cause })
    const peer = yield* Effect.mapError(ctx.crypto.importPublicKey(peerKey), invalid)
    return yield* Effect.mapError(ctx.crypto.deriveSharedSecret(own, peer), cryptoFailure(invalid))
  })

const installRecords = (
  ctx: Context,
  encrypted: boolean,
  secrets: HandshakeSecrets,
  role: "client" | "server",
  rekeyAfter: number
): Effect.Effect<RecordLayer, HandshakeError> =>
  Effect.suspend(() => {
    const [sendKeys, receiveKeys] = role === "client"
      ? [secrets.clientTraffic, secrets.serverTraffic]
      : [secrets.serverTraffic, secrets.clientTraffic]
    // Both modes use the traffic keys: plaintext records are tagged, never unauthenticated (§4.4).
    const records = (encrypted ? makeEncryptedRecordLayer : makeTaggedRecordLayer)(ctx.crypto, sendKeys, receiveKeys, rekeyAfter)
    // A local failure is told to the peer too (ALERT INTERNAL, PROTOCOL.md §6), so it does not wait for its timeout.
    if (Either.isLeft(records)) {
      return abort(ctx, new HandshakeError({ reason: "Aborted", detail: "key schedule", cause: records.left }))
    }
    ctx.records = records.right
    return Effect.succeed(records.right)
  })

/**
 * The step both roles take once the hellos are exchanged: the negotiation table (§4.1; a mismatch
 * fails both sides, each of which can name both policies), then the ECDH secret and the key schedule
 * salted with the hash of both hellos (§4.2), and the record layer they give.
 */
const agreeOnKeys = (
  ctx: Context,
  role: "client" | "server",
  policies: { readonly client: EncryptionPolicy; readonly server: EncryptionPolicy },
  sharedSecret: Effect.Effect<Uint8Array, HandshakeFailure>,
  options: HandshakeOptions
) =>
  Effect.gen(function*() {
    const encrypted = negotiate(policies.client, policies.server)
    if (encrypted === undefined) return yield* abort(ctx, new EncryptionMismatch(policies))
    const shared = yield* Effect.catchAll(sharedSecret, (e) => abort(ctx, e))
    const secrets = deriveHandshakeSecrets(ctx.crypto, shared, ctx.transcript.hash())
    const records = yield* installRecords(ctx, encrypted, secrets, role, options.rekeyAfter ?? MAX_RECORDS_PER_KEY)
    return { encrypted, secrets, records }
  })

/**
 * Before authentication the reading side keeps almost nothing on the peer's word (PROTOCOL.md §10.4):
 * frames up to the handshake limit; on the server one message at a time until SERVER_ACCEPT, on the
 * client a few frame sizes in all (the server may start its session right after SERVER_ACCEPT, §3.5).
 */
const CLIENT_WAITING_FRAMES = 4
/** Frame sizes a server may hold after SERVER_ACCEPT, before its session reads them. */
const SERVER_WAITING_FRAMES = 2
const waitingBytes = (frames: number, frameSize: number) => frames * (FRAME_HEADER_LENGTH + frameSize + FRAME_BOOKKEEPING)
const sessionSized = (maxFrameSize: number, frames: number): ReadLimits => ({
  maxFrameSize,
  maxWaitingFrames: Number.POSITIVE_INFINITY,
  maxWaitingBytes: waitingBytes(frames, maxFrameSize)
})
const initialReadLimits = (role: "client" | "server", maxFrameSize: number) =>
  role === "server"
    ? {
      readLimits: {
        maxFrameSize: HANDSHAKE_MAX_FRAME_SIZE,
        maxWaitingFrames: 1,
        maxWaitingBytes: waitingBytes(1, HANDSHAKE_MAX_FRAME_SIZE)
      }
    }
    : {
      readLimits: { ...sessionSized(maxFrameSize, CLIENT_WAITING_FRAMES), maxFrameSize: HANDSHAKE_MAX_FRAME_SIZE },
      afterFirstFrame: sessionSized(maxFrameSize, CLIENT_WAITING_FRAMES)
    }

const setup = (options: HandshakeOptions, role: "client" | "server", admission?: Admission) =>
  Effect.gen(function*() {
    const socket = yield* Socket.Socket
    const crypto = yield* Crypto
    const maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE
    const framed = yield* makeFramed(socket, {
      maxFrameSize,
      ...initialReadLimits(role, maxFrameSize),
      ...(options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark })
    })
    const ctx: Context = {
      crypto,
      framed,
      transcript: new Transcript(crypto),
      policy: options.encryption ?? "required",
      password: redactPassword(options.password),
      maxFrameSize,
      records: undefined,
      framesRead: 0,
      framesUnderKeys: 0,
      ownHello: undefined,
      admission
    }
    return ctx
  })

/** This side's contribution to its hello: a fresh ephemeral key pair and nonce (PROTOCOL.md §3.1). */
const ephemeral = (ctx: Context) =>
  Effect.all({
    keyPair: unlessReadFails(
      ctx,
      Effect.catchAll(ctx.crypto.generateKeyPair, (e) =>
        abort(ctx, cryptoFailure((c) => new HandshakeError({ reason: "Aborted", detail: c.message, cause: c }))(e)))
    ),
    nonce: ctx.crypto.randomBytes(NONCE_LENGTH)
  })

/** The handshake's result: the channel exists only from here on. */
const established = (ctx: Context, records: RecordLayer, encrypted: boolean, peerPolicy: EncryptionPolicy): SecureChannel =>
  makeSecureChannel(ctx.framed, records, {
    encrypted,
    authenticated: Option.isSome(ctx.password),
    localPolicy: ctx.policy,
    peerPolicy,
    suite: encrypted ? SUITE : PLAINTEXT_SUITE
  })

/**
 * The whole handshake runs under its timeout (§3); on expiry this side tells the peer (ALERT
 * TIMEOUT, sealed once it has keys) before it fails.
 */
const withDeadline = (ctx: Context, options: HandshakeOptions, admission?: Admission) =>
<A>(steps: Effect.Effect<A, HandshakeFailure | Cause.TimeoutException>): Effect.Effect<A, HandshakeFailure> =>
  Effect.raceFirst(
    Effect.timeout(steps, options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT),
    admission === undefined ? Effect.never : Effect.zipRight(admission.evicted, Effect.fail(new Evicted()))
  ).pipe(
    Effect.catchTags({
      TimeoutException: () => abort(ctx, new HandshakeError({ reason: "Timeout" })),
      // Admission control made room for a newer connection: to the peer this is a timeout (§10.5).
      Evicted: () => abort(ctx, new HandshakeError({ reason: "Timeout", detail: EVICTED }))
    })
  )

class Evicted {
  readonly _tag = "Evicted"
}

/** What the library passes to a handshake beside the user's options: the peer's address, for its span. */
export interface HandshakeSetup extends HandshakeOptions {
  readonly peer?: string | undefined
}

/** How a handshake's end is named in its span and in the `cvg.handshakes` metric: `ok`, or the error's tag and reason. */
const outcomeReason = (exit: Exit.Exit<SecureChannel, HandshakeFailure>): string =>
  Exit.match(exit, {
    onSuccess: () => "ok",
    onFailure: (cause) =>
      Option.match(Cause.failureOption(cause), {
        onSome: errorName,
        onNone: () => (Cause.isInterruptedOnly(cause) ? "Interrupted" : "Defect")
      })
  })

/**
 * The handshake under its `cvg.handshake` span, counted in `cvg.handshakes` (README "Observability").
 * Attributes are what was asked and negotiated, never keys, passwords, nonces or proofs.
 */
const observed = (role: "client" | "server", options: HandshakeSetup) =>
<R>(handshake: Effect.Effect<SecureChannel, HandshakeFailure, R>): Effect.Effect<SecureChannel, HandshakeFailure, R> =>
  handshake.pipe(
    Effect.onExit((exit) => {
      const reason = outcomeReason(exit)
      const outcome = Exit.isSuccess(exit) ? "success" : "failure"
      countTagged(handshakes, { role, outcome, reason })
      const negotiated = Exit.isSuccess(exit)
        ? {
          "cvg.encrypted": exit.value.info.encrypted,
          "cvg.authenticated": exit.value.info.authenticated,
          "cvg.suite": exit.value.info.suite,
          "cvg.encryption.peer": exit.value.info.peerPolicy
        }
        : {}
      return Effect.annotateCurrentSpan({ ...negotiated, "cvg.outcome": outcome, "cvg.reason": reason })
    }),
    Effect.withSpan(SPAN_HANDSHAKE, {
      kind: role,
      // The call site would be this line, not the user's: not worth an Error per span.
      captureStackTrace: false,
      attributes: {
        "cvg.role": role,
        "cvg.protocol.version": PROTOCOL_VERSION,
        "cvg.encryption.local": options.encryption ?? "required",
        "cvg.password.configured": options.password !== undefined,
        ...(options.peer === undefined ? {} : { "cvg.peer": options.peer })
      }
    })
  )

/** The client's side of PROTOCOL.md §3. */
export const clientHandshake = (
  options: HandshakeSetup = {}
): Effect.Effect<SecureChannel, HandshakeFailure, Socket.Socket | Crypto | Scope.Scope> =>
  Effect.flatMap(setup(options, "client"), (ctx) => withDeadline(ctx, options)(clientSteps(ctx, options))).pipe(
    observed("client", options)
  )

const clientSteps = (ctx: Context, options: HandshakeOptions) =>
  Effect.gen(function*() {
    const { crypto, policy, password } = ctx

    // §3.1 ClientHello: our policy, a fresh nonce and an ephemeral key.
    const { keyPair, nonce } = yield* ephemeral(ctx)
    const hello = new ClientHello({ version: PROTOCOL_VERSION, policy, nonce, publicKey: keyPair.publicKey })
    const ownHello = send(ctx, MessageType.CLIENT_HELLO, encodeClientHello(hello))
    ctx.ownHello = ownHello

    // §3.6 A loaded server may first ask for a puzzle; §3.2 ServerHello.
    const [firstType, firstBody] = yield* receiveOneOf(ctx, [MessageType.SERVER_HELLO, MessageType.HELLO_RETRY])
    let serverHelloBody = firstBody
    if (firstType === MessageType.HELLO_RETRY) {
      yield* solvePuzzle(ctx, firstBody, ownHello)
      serverHelloBody = yield* receive(ctx, MessageType.SERVER_HELLO)
    }
    const version = helloVersion(serverHelloBody)
    if (Either.isRight(version) && version.right !== PROTOCOL_VERSION) {
      return yield* abort(ctx, new HandshakeError({ reason: "Version", detail: `server speaks version ${version.right}` }))
    }
    const serverHello = decodeServerHello(serverHelloBody)
    if (Either.isLeft(serverHello)) return yield* abort(ctx, malformed(serverHello.left.message, serverHello.left))
    const policies = { client: policy, server: serverHello.right.policy }

    // §4.1 negotiation and §4.2 key schedule, from the two hellos.
    const { encrypted, records, secrets } = yield* agreeOnKeys(
      ctx,
      "client",
      policies,
      unlessReadFails(ctx, importAndDerive(ctx, keyPair, serverHello.right.publicKey)),
      options
    )

    // §3.3 ServerFinished: the server saw the same hellos, policies included.
    const expectedServerMac = crypto.hmacSha256(secrets.serverFinishedKey, ctx.transcript.hash())
    const serverFinished = yield* receive(ctx, MessageType.SERVER_FINISHED)
    const [serverMac] = yield* decodeMacs(serverFinished, 1).pipe(Effect.catchAll((e) => abort(ctx, malformed(e.message, e))))
    if (serverMac === undefined || !crypto.timingSafeEqual(serverMac, expectedServerMac)) {
      return yield* abort(ctx, new HandshakeError({ reason: "KeyConfirmation" }))
    }

    // §5 Who proves what: a client holding a password insists that the server prove it too.
    if (serverHello.right.passwordRequired && Option.isNone(password)) {
      return yield* abort(ctx, new AuthFailed({ reason: "MissingPassword" }))
    }
    if (!serverHello.right.passwordRequired && Option.isSome(password)) {
      return yield* abort(ctx, new AuthFailed({ reason: "ServerUnproven" }))
    }

    // §3.4 ClientFinished: our MAC over everything so far, and the password proof.
    const beforeClientFinished = ctx.transcript.hash()
    const clientMac = crypto.hmacSha256(secrets.clientFinishedKey, beforeClientFinished)
    const proof = Option.match(password, {
      onNone: () => new Uint8Array(0),
      onSome: (p) => passwordProof(crypto, secrets.authKey, Redacted.value(p), Labels.clientProof, beforeClientFinished)
    })
    send(ctx, MessageType.CLIENT_FINISHED, concatBytes([clientMac, proof]))

    // §3.5 ServerAccept: the server's own proof, over the transcript including our proof.
    const beforeAccept = ctx.transcript.hash()
    const accept = yield* receive(ctx, MessageType.SERVER_ACCEPT)
    const [serverProof] = yield* decodeMacs(accept, Option.isSome(password) ? 1 : 0).pipe(
      Effect.catchAll((e) => abort(ctx, malformed(e.message, e)))
    )
    if (Option.isSome(password)) {
      const expected = passwordProof(crypto, secrets.authKey, Redacted.value(password.value), Labels.serverProof, beforeAccept)
      if (serverProof === undefined || !crypto.timingSafeEqual(serverProof, expected)) {
        return yield* abort(ctx, new AuthFailed({ reason: "ServerUnproven" }))
      }
    }

    return established(ctx, records, encrypted, policies.server)
  })

/** The server's side of PROTOCOL.md §3. */
export const serverHandshake = (
  options: HandshakeSetup = {},
  admission?: Admission
): Effect.Effect<SecureChannel, HandshakeFailure, Socket.Socket | Crypto | Scope.Scope> =>
  Effect.flatMap(setup(options, "server", admission), (ctx) => withDeadline(ctx, options, admission)(serverSteps(ctx, options))).pipe(
    Effect.ensuring(admission?.done ?? Effect.void),
    observed("server", options)
  )

const serverSteps = (ctx: Context, options: HandshakeOptions) =>
  Effect.gen(function*() {
    const { crypto, policy, password } = ctx

    // §3.1 ClientHello, within the shorter time allowed for a first message (§10.5), so that silent
    // connections give their place back early. The version is checked before the layout, so that a
    // newer client hears `Version`.
    const clientHelloBody = yield* Effect.timeout(receive(ctx, MessageType.CLIENT_HELLO), options.helloTimeout ?? DEFAULT_HELLO_TIMEOUT)
    const version = helloVersion(clientHelloBody)
    if (Either.isLeft(version)) return yield* abort(ctx, malformed(version.left.message, version.left))
    if (version.right !== PROTOCOL_VERSION) {
      return yield* abort(ctx, new HandshakeError({ reason: "Version", detail: `client speaks version ${version.right}` }))
    }
    const clientHello = decodeClientHello(clientHelloBody)
    if (Either.isLeft(clientHello)) return yield* abort(ctx, malformed(clientHello.left.message, clientHello.left))

    // §3.6 Under load, a puzzle before any P-521 work.
    yield* puzzleIfLoaded(ctx, options, encodeFrame(MessageType.CLIENT_HELLO, clientHelloBody))

    // §3.2 ServerHello, sent even when the policies clash so that the client can name both. The ECDH
    // secret is computed first: a server too busy for the P-521 work refuses (LIMIT_EXCEEDED, §10.5)
    // before it has said anything the client would have to authenticate.
    const { keyPair, nonce } = yield* ephemeral(ctx)
    const policies = { client: clientHello.right.policy, server: policy }
    const shared = negotiate(policies.client, policies.server) === undefined
      ? Either.right(new Uint8Array(0))
      : yield* Effect.either(unlessReadFails(ctx, importAndDerive(ctx, keyPair, clientHello.right.publicKey)))
    if (Either.isLeft(shared) && isBusyRefusal(shared.left)) return yield* abort(ctx, shared.left)
    const hello = new ServerHello({
      version: PROTOCOL_VERSION,
      policy,
      passwordRequired: Option.isSome(password),
      nonce,
      publicKey: keyPair.publicKey
    })
    send(ctx, MessageType.SERVER_HELLO, encodeServerHello(hello))

    // §4.1 negotiation and §4.2 key schedule, from the two hellos.
    const { encrypted, records, secrets } = yield* agreeOnKeys(ctx, "server", policies, shared, options)

    // §3.3 ServerFinished.
    send(ctx, MessageType.SERVER_FINISHED, crypto.hmacSha256(secrets.serverFinishedKey, ctx.transcript.hash()))

    // §3.4 ClientFinished: key confirmation first, then the password proof.
    const beforeClientFinished = ctx.transcript.hash()
    const clientFinished = yield* receive(ctx, MessageType.CLIENT_FINISHED)
    const macs = decodeMacs(clientFinished, Option.isSome(password) ? 2 : 1)
    if (Either.isLeft(macs)) return yield* abort(ctx, malformed(macs.left.message, macs.left))
    const [clientMac, clientProof] = macs.right
    const expectedClientMac = crypto.hmacSha256(secrets.clientFinishedKey, beforeClientFinished)
    if (clientMac === undefined || !crypto.timingSafeEqual(clientMac, expectedClientMac)) {
      return yield* abort(ctx, new HandshakeError({ reason: "KeyConfirmation" }))
    }
    if (Option.isSome(password)) {
      const expected = passwordProof(crypto, secrets.authKey, Redacted.value(password.value), Labels.clientProof, beforeClientFinished)
      if (clientProof === undefined || !crypto.timingSafeEqual(clientProof, expected)) {
        return yield* abort(ctx, new AuthFailed({ reason: "WrongPassword" }))
      }
    }

    // §3.5 ServerAccept, with our proof over the transcript that includes the client's.
    const beforeAccept = ctx.transcript.hash()
    send(
      ctx,
      MessageType.SERVER_ACCEPT,
      Option.match(password, {
        onNone: () => new Uint8Array(0),
        onSome: (p) => passwordProof(crypto, secrets.authKey, Redacted.value(p), Labels.serverProof, beforeAccept)
      })
    )
    // §10: the client is authenticated. It may send session frames as soon as it has SERVER_ACCEPT
    // (§3.5), so from this instant frames are session-sized and may wait for the session's sink.
    ctx.framed.setReadLimits(sessionSized(ctx.maxFrameSize, SERVER_WAITING_FRAMES))

    return established(ctx, records, encrypted, policies.client)
  })
