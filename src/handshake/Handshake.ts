/**
 * The handshake, one program per role, in the order of PROTOCOL.md §3:
 *
 *   client                                   server
 *   ClientHello  (policy, capabilities, nonce, P-521 key, CPace share?) →
 *                                          ← HelloRetry (difficulty, challenge)   only under load, §3.6
 *   PuzzleSolution (solution)              →
 *                                          ← ServerHello (policy, capabilities, nonce, P-521 key, CPace share?)
 *   [both: negotiate §4.1, ECDH, CPace §5, key schedule §4.2; sealed or tagged from here, handshake keys]
 *                                          ← ServerIdentity (key, signature over both hellos)   §3.7
 *                                          ← ServerFinished (MAC over the transcript, keyed from ISK)
 *   ClientFinished (MAC over the transcript) →
 *                                          ← ServerAccept (empty)
 *   [both: the traffic keys, §3.5]
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
  type CapabilityMismatch,
  ConnectionClosed,
  EncryptionMismatch,
  type EncryptionPolicy,
  HandshakeError,
  type IdentityKeyError,
  type PeerAlert,
  ProtocolError,
  type ServerKeyMismatch
} from "../errors.js"
import { makeKnownHosts } from "../identity/KnownHosts.js"
import type { ServerKeyInfo } from "../channel/SecureChannel.js"
import type { IdentityKey } from "../identity/IdentityKey.js"
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
  decodeServerIdentity,
  encodeAlert,
  encodeClientHello,
  encodeServerHello,
  encodeServerIdentity,
  helloAssociatedData,
  HANDSHAKE_MAX_FRAME_SIZE,
  hasMagic,
  helloVersion,
  MessageType,
  NONCE_LENGTH,
  PROTOCOL_VERSION,
  ServerHello
} from "../wire/Messages.js"
import { deriveHandshakeSecrets, deriveSessionSecrets, type SessionSecrets, type TrafficKeys } from "./KeySchedule.js"
import { finishPake, startPake } from "./Pake.js"
import { capabilityMismatch, negotiate } from "./Negotiation.js"
import { DEFAULT_PUZZLE_DIFFICULTY, MAX_PUZZLE_DIFFICULTY, solve, verifySolution } from "./Puzzle.js"
import { checkIdentity, proveIdentity } from "./ServerIdentity.js"
import { Transcript } from "./Transcript.js"
import { countTagged, errorName, handshakes, SPAN_HANDSHAKE } from "../Observability.js"

/** A password as the user may give it; kept `Redacted` from the moment it enters (PROTOCOL.md §5). */
export type PasswordInput = string | Uint8Array | Redacted.Redacted<string> | Redacted.Redacted<Uint8Array>

export interface HandshakeOptions {
  /** Default `"required"` (PROTOCOL.md §4.1). */
  readonly encryption?: EncryptionPolicy | undefined
  /** When set on the server, clients must prove it; when set on the client, the server must prove it. */
  readonly password?: PasswordInput | undefined
  /**
   * Server: the identity key it proves in every handshake (PROTOCOL.md §3.7), from
   * `generateIdentityKey` or `identityKeyFromPrivate`.
   */
  readonly identity?: IdentityKey | undefined
  /**
   * Client: the fingerprint (`sha256:` and 64 lowercase hex digits) of the only server key it accepts;
   * another key is `ServerKeyMismatch`, a server without one `CapabilityMismatch` (§3.7, §4.1).
   */
  readonly serverKey?: string | undefined
  /**
   * Client: a known-hosts file for trust on first use (§3.7): the first key a `host:port` proves is
   * remembered, and a later different one is `ServerKeyMismatch`. Needs the peer's address (`connect`
   * knows it; `ClientSession.session` takes it as `peer`). `serverKey`, when also given, is what counts.
   */
  readonly knownHosts?: string | undefined
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
  | CapabilityMismatch
  | ServerKeyMismatch
  | AuthFailed
  | IdentityKeyError
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
  /** The server's identity key (§3.7); the client's trust in the server's key is in its options. */
  readonly identity: IdentityKey | undefined
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

/** Sends a handshake message before there are keys, and records it. */
const send = (ctx: Context, type: number, body: Uint8Array): Uint8Array => {
  const frame = encodeFrame(type, body)
  ctx.framed.enqueue(frame)
  ctx.transcript.add(frame)
  return frame
}

/**
 * Sends a handshake message through the record layer (§3.3), and records it. A message this side's
 * own `Crypto` cannot seal aborts the handshake (`HandshakeError("Aborted")`): the peer would wait
 * for it until its timeout.
 */
const sendSealed = (ctx: Context, type: number, body: Uint8Array): Effect.Effect<void, HandshakeError> => {
  // Only called once the handshake keys are installed (`installRecords`).
  if (ctx.records === undefined) return Effect.dieMessage("a sealed handshake message before the handshake keys")
  const failure = ctx.records.write(type, body, EMPTY, ctx.framed.enqueue)
  if (failure !== undefined) {
    return abort(ctx, new HandshakeError({ reason: "Aborted", detail: "a handshake message could not be sealed", cause: failure }))
  }
  ctx.transcript.add(encodeFrame(type, body))
  return Effect.void
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
      error._tag !== "CapabilityMismatch" && error._tag !== "PeerAlert"
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

/**
 * Seals from here on with one direction's keys each way: the handshake keys after the hellos, the
 * traffic keys once the handshake is done (§4.2, §4.3).
 */
const installRecords = (
  ctx: Context,
  encrypted: boolean,
  keys: { readonly client: TrafficKeys; readonly server: TrafficKeys },
  role: "client" | "server",
  rekeyAfter: number
): Effect.Effect<RecordLayer, HandshakeError> =>
  Effect.suspend(() => {
    const [sendKeys, receiveKeys] = role === "client" ? [keys.client, keys.server] : [keys.server, keys.client]
    // Both modes use the keys: plaintext records are tagged, never unauthenticated (§4.4).
    const records = (encrypted ? makeEncryptedRecordLayer : makeTaggedRecordLayer)(ctx.crypto, sendKeys, receiveKeys, rekeyAfter)
    // A local failure is told to the peer too (ALERT INTERNAL, PROTOCOL.md §6), so it does not wait for its timeout.
    if (Either.isLeft(records)) {
      return abort(ctx, new HandshakeError({ reason: "Aborted", detail: "key schedule", cause: records.left }))
    }
    ctx.records = records.right
    return Effect.succeed(records.right)
  })

/**
 * The step both roles take once the hellos are exchanged: the negotiation tables (§4.1; a mismatch
 * fails both sides, each of which can name both policies or both sides' capabilities), then the ECDH
 * secret and the key schedule salted with the hash of both hellos (§4.2), and the record layer they give.
 */
const agreeOnKeys = (
  ctx: Context,
  role: "client" | "server",
  hellos: { readonly client: ClientHello; readonly server: ServerHello },
  sharedSecret: Effect.Effect<Uint8Array, HandshakeFailure>,
  options: HandshakeOptions
) =>
  Effect.gen(function*() {
    const policies = { client: hellos.client.policy, server: hellos.server.policy }
    const encrypted = negotiate(policies.client, policies.server)
    if (encrypted === undefined) return yield* abort(ctx, new EncryptionMismatch(policies))
    const capabilities = capabilityMismatch(hellos.client, hellos.server)
    if (capabilities !== undefined) return yield* abort(ctx, capabilities)
    const shared = yield* Effect.catchAll(sharedSecret, (e) => abort(ctx, e))
    const secrets = deriveHandshakeSecrets(ctx.crypto, shared, ctx.transcript.hash())
    yield* installRecords(
      ctx,
      encrypted,
      { client: secrets.clientHandshake, server: secrets.serverHandshake },
      role,
      options.rekeyAfter ?? MAX_RECORDS_PER_KEY
    )
    return { encrypted, secrets }
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
      identity: role === "server" ? options.identity : undefined,
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
const established = (
  ctx: Context,
  records: RecordLayer,
  encrypted: boolean,
  peerPolicy: EncryptionPolicy,
  serverKey: Option.Option<ServerKeyInfo>,
  passwordAuthenticated: boolean
): SecureChannel =>
  makeSecureChannel(ctx.framed, records, {
    encrypted,
    passwordAuthenticated,
    serverKey,
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
          "cvg.password": exit.value.info.passwordAuthenticated,
          "cvg.server_key.trust": Option.match(exit.value.info.serverKey, { onNone: () => "none", onSome: (key) => key.trust }),
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
        "cvg.server_key.configured": options.identity !== undefined || options.serverKey !== undefined,
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

const clientSteps = (ctx: Context, options: HandshakeSetup) =>
  Effect.gen(function*() {
    const { crypto, policy, password } = ctx
    const pinned = options.serverKey?.toLowerCase()
    // §3.7 Trust on first use: what the known-hosts file holds for this address, read before anything
    // is sent, so that an unreadable file fails the connection before the peer sees it.
    const knownHosts = pinned === undefined && options.knownHosts !== undefined && options.peer !== undefined
      ? { file: makeKnownHosts(options.knownHosts), peer: options.peer }
      : undefined
    const known = knownHosts === undefined ? undefined : (yield* knownHosts.file.lookup(knownHosts.peer)) ?? null

    // §3.1 ClientHello: our policy, what we hold and require (§4.1), a fresh nonce, an ephemeral key,
    // and, with a password, our CPace share over all of that (§5).
    const { keyPair, nonce } = yield* ephemeral(ctx)
    const base = new ClientHello({
      version: PROTOCOL_VERSION,
      policy,
      password: Option.isSome(password),
      requiresServerKey: pinned !== undefined || knownHosts !== undefined,
      nonce,
      publicKey: keyPair.publicKey
    })
    const pake = Option.isSome(password)
      ? yield* startPake(crypto, Redacted.value(password.value), nonce, encodeClientHello(base), "initiator")
      : undefined
    const hello = pake === undefined ? base : new ClientHello({ ...base, cpaceShare: pake.share })
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
    const serverHello = decodeServerHello(serverHelloBody, pake !== undefined)
    if (Either.isLeft(serverHello)) return yield* abort(ctx, malformed(serverHello.left.message, serverHello.left))

    // §4.1 negotiation and §4.2 handshake keys, from the two hellos.
    const { encrypted, secrets } = yield* agreeOnKeys(
      ctx,
      "client",
      { client: hello, server: serverHello.right },
      unlessReadFails(ctx, importAndDerive(ctx, keyPair, serverHello.right.publicKey)),
      options
    )
    // §5 CPace: ISK when both hellos carry a share, bound into the second stage of the key schedule.
    const serverShare = serverHello.right.cpaceShare
    const isk = pake === undefined || serverShare === undefined
      ? new Uint8Array(0)
      : yield* Effect.catchAll(finishPake(pake, serverShare, helloAssociatedData(serverHelloBody)), (e) => abort(ctx, e))
    const withPake = isk.length > 0
    const session = deriveSessionSecrets(crypto, secrets, isk)

    // §3.7 ServerIdentity, when the server announced a key: its signature over both hellos proves it
    // holds the key for this handshake; then it must be the key we trust. Checked under the handshake
    // keys, before anything bound to the password, so that a relay with a key of its own is named as
    // such whether or not there is a password.
    let serverKey = Option.none<ServerKeyInfo>()
    if (serverHello.right.serverKey) {
      const helloHash = ctx.transcript.hash()
      const decoded = decodeServerIdentity(yield* receive(ctx, MessageType.SERVER_IDENTITY))
      if (Either.isLeft(decoded)) return yield* abort(ctx, malformed(decoded.left.message, decoded.left))
      const checked = checkIdentity(crypto, decoded.right, helloHash, { pinned, known })
      serverKey = Option.some(yield* Effect.catchAll(checked, (e) => abort(ctx, e)))
    }

    // §3.3 ServerFinished: the server saw the same hellos (policies and capabilities included), sent
    // the identity we checked, and, with CPace, holds the same password: its MAC key comes from ISK.
    const expectedServerMac = crypto.hmacSha256(session.serverFinishedKey, ctx.transcript.hash())
    const serverFinished = yield* receive(ctx, MessageType.SERVER_FINISHED)
    const [serverMac] = yield* decodeMacs(serverFinished, 1).pipe(Effect.catchAll((e) => abort(ctx, malformed(e.message, e))))
    if (serverMac === undefined || !crypto.timingSafeEqual(serverMac, expectedServerMac)) {
      return yield* abort(ctx, withPake ? new AuthFailed({ reason: "WrongPassword" }) : new HandshakeError({ reason: "KeyConfirmation" }))
    }

    // §3.7 A key seen for the first time is remembered once it is proven and confirmed.
    if (knownHosts !== undefined && Option.isSome(serverKey) && serverKey.value.trust === "FirstUse") {
      yield* Effect.catchAll(knownHosts.file.remember(knownHosts.peer, serverKey.value.fingerprint), (e) => abort(ctx, e))
    }

    // §5 Who proves what: a client holding a password insists on CPace, and never completes without it.
    if (serverHello.right.passwordRequired && Option.isNone(password)) {
      return yield* abort(ctx, new AuthFailed({ reason: "MissingPassword" }))
    }
    if (!withPake && Option.isSome(password)) {
      return yield* abort(ctx, new AuthFailed({ reason: "ServerUnproven" }))
    }

    // §3.4 ClientFinished: our MAC over everything so far.
    yield* sendSealed(ctx, MessageType.CLIENT_FINISHED, crypto.hmacSha256(session.clientFinishedKey, ctx.transcript.hash()))

    // §3.5 ServerAccept: the server accepted our MAC; the session starts under the traffic keys.
    const accept = yield* receive(ctx, MessageType.SERVER_ACCEPT)
    yield* decodeMacs(accept, 0).pipe(Effect.catchAll((e) => abort(ctx, malformed(e.message, e))))
    const records = yield* startSession(ctx, encrypted, session, "client", options)

    return established(ctx, records, encrypted, serverHello.right.policy, serverKey, withPake)
  })

/** §4.3: the session's records use the traffic keys from the second stage, never the handshake keys. */
const startSession = (ctx: Context, encrypted: boolean, session: SessionSecrets, role: "client" | "server", options: HandshakeOptions) =>
  installRecords(
    ctx,
    encrypted,
    { client: session.clientTraffic, server: session.serverTraffic },
    role,
    options.rekeyAfter ?? MAX_RECORDS_PER_KEY
  )

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
    const { crypto, policy, password, identity } = ctx

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
    const base = new ServerHello({
      version: PROTOCOL_VERSION,
      policy,
      passwordRequired: Option.isSome(password),
      serverKey: identity !== undefined,
      nonce,
      publicKey: keyPair.publicKey
    })
    const agreed = negotiate(clientHello.right.policy, policy) !== undefined &&
      capabilityMismatch(clientHello.right, base) === undefined
    const shared = !agreed
      ? Either.right(new Uint8Array(0))
      : yield* Effect.either(unlessReadFails(ctx, importAndDerive(ctx, keyPair, clientHello.right.publicKey)))
    if (Either.isLeft(shared) && isBusyRefusal(shared.left)) return yield* abort(ctx, shared.left)
    // §5 CPace when both sides hold a password: our share last, over the rest of our hello. Like the
    // P-521 work, only after the puzzle (§3.6), so that a replayed hello costs none of it; even when
    // the hellos disagree, since the two capability bits alone fix the hello's length (§3.2).
    const clientShare = clientHello.right.cpaceShare
    const pake = Option.isSome(password) && clientShare !== undefined
      ? yield* startPake(crypto, Redacted.value(password.value), clientHello.right.nonce, encodeServerHello(base), "responder")
      : undefined
    const hello = pake === undefined ? base : new ServerHello({ ...base, cpaceShare: pake.share })
    send(ctx, MessageType.SERVER_HELLO, encodeServerHello(hello))

    // §4.1 negotiation and §4.2 handshake keys, from the two hellos.
    const { encrypted, secrets } = yield* agreeOnKeys(ctx, "server", { client: clientHello.right, server: hello }, shared, options)
    const isk = pake === undefined || clientShare === undefined
      ? new Uint8Array(0)
      : yield* Effect.catchAll(finishPake(pake, clientShare, helloAssociatedData(clientHelloBody)), (e) => abort(ctx, e))
    const withPake = isk.length > 0
    const session = deriveSessionSecrets(crypto, secrets, isk)

    // §3.7 ServerIdentity: our signature over both hellos, so that the client knows whom it reached.
    if (identity !== undefined) {
      const proof = proveIdentity(crypto, identity, ctx.transcript.hash())
      if (Either.isLeft(proof)) return yield* abort(ctx, proof.left)
      yield* sendSealed(ctx, MessageType.SERVER_IDENTITY, encodeServerIdentity(proof.right))
    }

    // §3.3 ServerFinished: our MAC over everything so far, the identity included, keyed from ISK.
    yield* sendSealed(ctx, MessageType.SERVER_FINISHED, crypto.hmacSha256(session.serverFinishedKey, ctx.transcript.hash()))

    // §5 From here on a client holding a guess knows whether it was right (SERVER_FINISHED is keyed
    // from ISK), so in a CPace handshake any end short of success counts as one wrong password: one
    // run, one guess. A client that read its answer and hung up is counted too (the throttle, §10.5).
    return yield* finishServer(ctx, options, { encrypted, session, withPake, clientPolicy: clientHello.right.policy }).pipe(
      Effect.mapError((error) => withPake && error._tag !== "AuthFailed" ? new AuthFailed({ reason: "WrongPassword" }) : error)
    )
  })

const finishServer = (
  ctx: Context,
  options: HandshakeOptions,
  agreed: { readonly encrypted: boolean; readonly session: SessionSecrets; readonly withPake: boolean; readonly clientPolicy: EncryptionPolicy }
) =>
  Effect.gen(function*() {
    const { crypto, password, identity } = ctx
    const { encrypted, session, withPake } = agreed

    // §3.4 ClientFinished: the client saw the same transcript and, with CPace, holds our password.
    const expectedClientMac = crypto.hmacSha256(session.clientFinishedKey, ctx.transcript.hash())
    const clientFinished = yield* receive(ctx, MessageType.CLIENT_FINISHED)
    const [clientMac] = yield* decodeMacs(clientFinished, 1).pipe(Effect.catchAll((e) => abort(ctx, malformed(e.message, e))))
    if (clientMac === undefined || !crypto.timingSafeEqual(clientMac, expectedClientMac)) {
      return yield* abort(ctx, withPake ? new AuthFailed({ reason: "WrongPassword" }) : new HandshakeError({ reason: "KeyConfirmation" }))
    }
    // §5 A client without a share told us MISSING_PASSWORD already; one that goes on anyway is refused.
    if (Option.isSome(password) && !withPake) return yield* abort(ctx, new AuthFailed({ reason: "MissingPassword" }))

    // §3.5 ServerAccept, then the session under the traffic keys.
    yield* sendSealed(ctx, MessageType.SERVER_ACCEPT, new Uint8Array(0))
    const records = yield* startSession(ctx, encrypted, session, "server", options)
    // §10: the client is authenticated. It may send session frames as soon as it has SERVER_ACCEPT
    // (§3.5), so from this instant frames are session-sized and may wait for the session's sink.
    ctx.framed.setReadLimits(sessionSized(ctx.maxFrameSize, SERVER_WAITING_FRAMES))

    return established(
      ctx,
      records,
      encrypted,
      agreed.clientPolicy,
      identity === undefined ? Option.none() : Option.some({ fingerprint: identity.fingerprint, trust: "Own" }),
      withPake
    )
  })
