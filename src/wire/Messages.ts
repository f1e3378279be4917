/**
 * Control messages: the handshake (PROTOCOL.md §3), alerts (§6), key update (§7) and close (§7).
 *
 * Each is a `Schema` class for users and tests, with a strict hand codec: exact lengths, no trailing
 * bytes, known enum values only. Handshake messages are not on the hot path, but strictness matters
 * more there than anywhere: they are what an attacker controls before any key exists.
 */
import { Either, Schema } from "effect"
import { PUBLIC_KEY_LENGTH } from "../crypto/Crypto.js"
import { EncryptionPolicy } from "../errors.js"
import { ProtocolError } from "../errors.js"

/** Message types (PROTOCOL.md §2.2). `ENCRYPTED` only ever appears as the outer type of a sealed frame. */
export const MessageType = {
  CLIENT_HELLO: 0x01,
  SERVER_HELLO: 0x02,
  SERVER_FINISHED: 0x03,
  CLIENT_FINISHED: 0x04,
  SERVER_ACCEPT: 0x05,
  HELLO_RETRY: 0x06,
  PUZZLE_SOLUTION: 0x07,
  PACKET: 0x10,
  CHUNK_START: 0x11,
  CHUNK_DATA: 0x12,
  CHUNK_END: 0x13,
  STREAM_CREDIT: 0x14,
  ALERT: 0x15,
  REPLY: 0x16,
  ENCRYPTED: 0x17,
  REQUEST: 0x18,
  REPLY_ERROR: 0x19,
  STREAM_CANCEL: 0x1a,
  BATCH: 0x1b,
  PING: 0x1c,
  PONG: 0x1d,
  KEY_UPDATE: 0x20,
  CLOSE: 0x21
} as const
export type MessageType = (typeof MessageType)[keyof typeof MessageType]

/** "CVG" opens every hello, so that a peer of another protocol is recognised at once (`NotCvgPeer`, PROTOCOL.md §3). */
export const MAGIC = Uint8Array.of(0x43, 0x56, 0x47)
/**
 * Version 2 added the puzzle under load (HELLO_RETRY, PUZZLE_SOLUTION; PROTOCOL.md §3.6); version 3
 * opened packet types and added REQUEST, REPLY_ERROR, STREAM_CANCEL and streamed replies (§8, §9),
 * BATCH (§7.3) and PING/PONG (§7.4).
 */
export const PROTOCOL_VERSION = 3
/** The opaque body of a PING, echoed by its PONG (PROTOCOL.md §7.4): exactly this long, else `Malformed`. */
export const KEEP_ALIVE_BODY_LENGTH = 8
export const NONCE_LENGTH = 32
export const MAC_LENGTH = 32
/**
 * Largest frame body accepted during the handshake until the peer is authenticated (PROTOCOL.md §10):
 * every handshake message is under 256 bytes, plus a 16-byte tag when sealed.
 */
export const HANDSHAKE_MAX_FRAME_SIZE = 1024

const policyCodes: ReadonlyArray<EncryptionPolicy> = ["required", "preferred", "disabled"]
export const policyCode = (policy: EncryptionPolicy): number => policyCodes.indexOf(policy)

const malformed = (detail: string) => new ProtocolError({ reason: "Malformed", detail })

const Bytes = (length: number) =>
  Schema.Uint8ArrayFromSelf.pipe(Schema.filter((b) => b.length === length || `expected ${length} bytes`))

export class ClientHello extends Schema.Class<ClientHello>("ClientHello")({
  version: Schema.Number,
  policy: EncryptionPolicy,
  nonce: Bytes(NONCE_LENGTH),
  publicKey: Bytes(PUBLIC_KEY_LENGTH)
}) {}

export class ServerHello extends Schema.Class<ServerHello>("ServerHello")({
  version: Schema.Number,
  policy: EncryptionPolicy,
  passwordRequired: Schema.Boolean,
  nonce: Bytes(NONCE_LENGTH),
  publicKey: Bytes(PUBLIC_KEY_LENGTH)
}) {}

/** Where a hello's fixed fields start: `magic[3] ‖ version u8`, then the rest. */
const HELLO_PREFIX = MAGIC.length + 1
export const CLIENT_HELLO_LENGTH = HELLO_PREFIX + 1 + NONCE_LENGTH + PUBLIC_KEY_LENGTH
export const SERVER_HELLO_LENGTH = HELLO_PREFIX + 2 + NONCE_LENGTH + PUBLIC_KEY_LENGTH

export const encodeClientHello = (hello: ClientHello): Uint8Array => {
  const out = new Uint8Array(CLIENT_HELLO_LENGTH)
  out.set(MAGIC, 0)
  out[3] = hello.version
  out[4] = policyCode(hello.policy)
  out.set(hello.nonce, 5)
  out.set(hello.publicKey, 5 + NONCE_LENGTH)
  return out
}

export const encodeServerHello = (hello: ServerHello): Uint8Array => {
  const out = new Uint8Array(SERVER_HELLO_LENGTH)
  out.set(MAGIC, 0)
  out[3] = hello.version
  out[4] = policyCode(hello.policy)
  out[5] = hello.passwordRequired ? 1 : 0
  out.set(hello.nonce, 6)
  out.set(hello.publicKey, 6 + NONCE_LENGTH)
  return out
}

/**
 * The version is read before the length is checked: a future version may change the layout, and
 * the peer deserves `Version` rather than `Malformed` for that (PROTOCOL.md §3.1).
 */
export const helloVersion = (body: Uint8Array): Either.Either<number, ProtocolError> => {
  if (body.length < HELLO_PREFIX || !hasMagic(body)) {
    return Either.left(malformed("not a cvg hello"))
  }
  return Either.right(body[3]!)
}

/** Whether a hello body starts with the magic: the sign that the peer speaks cvg at all (PROTOCOL.md §3). */
export const hasMagic = (body: Uint8Array): boolean =>
  body.length >= MAGIC.length && body[0] === MAGIC[0] && body[1] === MAGIC[1] && body[2] === MAGIC[2]

const decodePolicy = (code: number | undefined): Either.Either<EncryptionPolicy, ProtocolError> => {
  const policy = code === undefined ? undefined : policyCodes[code]
  return policy === undefined ? Either.left(malformed("unknown encryption policy")) : Either.right(policy)
}

export const decodeClientHello = (body: Uint8Array): Either.Either<ClientHello, ProtocolError> =>
  Either.gen(function*() {
    const version = yield* helloVersion(body)
    if (body.length !== CLIENT_HELLO_LENGTH) return yield* Either.left(malformed("client hello length"))
    const policy = yield* decodePolicy(body[4])
    return new ClientHello({
      version,
      policy,
      nonce: body.slice(5, 5 + NONCE_LENGTH),
      publicKey: body.slice(5 + NONCE_LENGTH)
    })
  })

export const decodeServerHello = (body: Uint8Array): Either.Either<ServerHello, ProtocolError> =>
  Either.gen(function*() {
    const version = yield* helloVersion(body)
    if (body.length !== SERVER_HELLO_LENGTH) return yield* Either.left(malformed("server hello length"))
    const policy = yield* decodePolicy(body[4])
    const flag = body[5]
    if (flag !== 0 && flag !== 1) return yield* Either.left(malformed("password flag"))
    return new ServerHello({
      version,
      policy,
      passwordRequired: flag === 1,
      nonce: body.slice(6, 6 + NONCE_LENGTH),
      publicKey: body.slice(6 + NONCE_LENGTH)
    })
  })

/** HELLO_RETRY (PROTOCOL.md §3.6): `difficulty: u8 ‖ challenge[16]`. */
export const CHALLENGE_LENGTH = 16
export const HELLO_RETRY_LENGTH = 1 + CHALLENGE_LENGTH
/** PUZZLE_SOLUTION (PROTOCOL.md §3.6): `solution: u64`. */
export const PUZZLE_SOLUTION_LENGTH = 8

export class HelloRetry extends Schema.Class<HelloRetry>("HelloRetry")({
  difficulty: Schema.Number,
  challenge: Bytes(CHALLENGE_LENGTH)
}) {}

export const encodeHelloRetry = (retry: HelloRetry): Uint8Array => {
  const out = new Uint8Array(HELLO_RETRY_LENGTH)
  out[0] = retry.difficulty
  out.set(retry.challenge, 1)
  return out
}

export const decodeHelloRetry = (body: Uint8Array): Either.Either<HelloRetry, ProtocolError> =>
  body.length === HELLO_RETRY_LENGTH
    ? Either.right(new HelloRetry({ difficulty: body[0]!, challenge: body.slice(1) }))
    : Either.left(malformed("hello retry length"))

/** The solution travels as 8 big-endian bytes; it is only ever hashed, so it stays bytes. */
export const decodePuzzleSolution = (body: Uint8Array): Either.Either<Uint8Array, ProtocolError> =>
  body.length === PUZZLE_SOLUTION_LENGTH ? Either.right(body) : Either.left(malformed("puzzle solution length"))

/** Alert codes (PROTOCOL.md §6): why the sender is about to close. */
export const AlertCode = {
  VERSION: 0x01,
  MALFORMED: 0x02,
  KEY_CONFIRMATION: 0x03,
  MISSING_PASSWORD: 0x04,
  WRONG_PASSWORD: 0x05,
  SERVER_UNPROVEN: 0x06,
  DECRYPT_FAILED: 0x07,
  ENCRYPTION_MISMATCH: 0x08,
  LIMIT_EXCEEDED: 0x09,
  TIMEOUT: 0x0a,
  INTERNAL: 0x0b,
  /** A server refusing an address after failed password attempts, before any handshake work (PROTOCOL.md §10.5). */
  THROTTLED: 0x0c
} as const
export type AlertCode = (typeof AlertCode)[keyof typeof AlertCode]
const alertNames: ReadonlyMap<number, string> = new Map(Object.entries(AlertCode).map(([name, code]) => [code, name]))
/** `WRONG_PASSWORD (0x05)`, for error details and logs. */
export const alertName = (code: number): string =>
  `${alertNames.get(code) ?? "unknown"} (0x${code.toString(16).padStart(2, "0")})`
const alertCodes: ReadonlySet<number> = new Set(Object.values(AlertCode))
const isAlertCode = (code: number | undefined): code is AlertCode => code !== undefined && alertCodes.has(code)

export class Alert extends Schema.Class<Alert>("Alert")({
  code: Schema.Literal(...Object.values(AlertCode))
}) {}

export const encodeAlert = (alert: Alert): Uint8Array => Uint8Array.of(alert.code)

export const decodeAlert = (body: Uint8Array): Either.Either<Alert, ProtocolError> => {
  const code = body[0]
  if (body.length !== 1 || !isAlertCode(code)) return Either.left(malformed("alert"))
  return Either.right(new Alert({ code }))
}

/** A MAC of exactly 32 bytes, optionally followed by a second one (ClientFinished with a password). */
export const decodeMacs = (
  body: Uint8Array,
  count: 0 | 1 | 2
): Either.Either<ReadonlyArray<Uint8Array>, ProtocolError> => {
  if (body.length !== count * MAC_LENGTH) return Either.left(malformed("handshake message length"))
  const macs: Array<Uint8Array> = []
  for (let i = 0; i < count; i++) macs.push(body.subarray(i * MAC_LENGTH, (i + 1) * MAC_LENGTH))
  return Either.right(macs)
}
