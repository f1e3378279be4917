/**
 * Validation at the API edge: each option object and packet a caller hands the public API is checked
 * once, where it enters, before any socket, key or sequence number is touched; a bad one fails with
 * `InvalidArgument` naming the field.
 *
 * Options are checked with `Schema`, once per call. Packets are checked by hand with a few comparisons,
 * because every send pays for it and a Schema decode costs microseconds (docs/performance.md).
 */
import { Duration, Effect, Either, Exit, Option, ParseResult, Predicate, Redacted, Schema, SchemaAST } from "effect"
import { createPublicKey, KeyObject } from "node:crypto"
import { MAX_RECORDS_PER_KEY } from "../channel/RecordLayer.js"
import type { ConnectOptions } from "../client/Client.js"
import { EncryptionPolicy, InvalidArgument } from "../errors.js"
import type { HandshakeOptions } from "../handshake/Handshake.js"
import { fingerprintOf, IDENTITY_PUBLIC_KEY_LENGTH, type IdentityKey } from "../identity/IdentityKey.js"
import { MAX_PUZZLE_DIFFICULTY } from "../handshake/Puzzle.js"
import type { ServeAndAnnounceOptions } from "../server/Server.js"
import type { PacketFilter, RequestOptions, Session, SessionOptions } from "../session/Session.js"
import { MAX_FRAME_LENGTH } from "../wire/Frame.js"
import { CLIENT_HELLO_LENGTH, SERVER_HELLO_LENGTH } from "../wire/Messages.js"
import type { Packet } from "../wire/Packet.js"
import { isPacketType } from "../wire/PacketType.js"

// --- what an option's value may be ------------------------------------------------------------

/** Marks a field whose value must not appear in an error message, only its kind. */
const SecretId = Symbol.for("cvg-core/validate/Secret")

const intBetween = (min: number, max: number) =>
  Schema.Int.pipe(Schema.between(min, max)).annotations({ description: `an integer from ${min} to ${max}` })

const PositiveInt = Schema.Int.pipe(Schema.positive()).annotations({ description: "a positive integer" })

const NonEmptyString = Schema.String.pipe(Schema.minLength(1)).annotations({ description: "a non-empty string" })

const Encryption = EncryptionPolicy.annotations({ description: `"required", "preferred" or "disabled"` })

const PasswordBytes = Schema.Union(Schema.String, Schema.Uint8ArrayFromSelf)
const Password = Schema.Union(PasswordBytes, Schema.RedactedFromSelf(PasswordBytes)).annotations({
  description: "a string, a Uint8Array, or a Redacted of either",
  [SecretId]: true
})

/** A fingerprint as `fingerprintOf` writes it (PROTOCOL.md §3.7); upper-case hex is accepted too. */
const Fingerprint = Schema.String.pipe(Schema.pattern(/^sha256:[0-9a-fA-F]{64}$/)).annotations({
  description: `"sha256:" followed by 64 hex digits (the server's fingerprint)`
})

/**
 * An `IdentityKey` whose parts belong together: a private Ed25519 `KeyObject` and the raw public key
 * and fingerprint it gives. A key pasted together from two keys would make every handshake fail at
 * the client, far from the mistake.
 */
const Identity = Schema.declare(
  (input: unknown): input is IdentityKey => {
    if (typeof input !== "object" || input === null) return false
    const { privateKey, publicKey, fingerprint } = input as Partial<IdentityKey>
    if (!(privateKey instanceof KeyObject) || privateKey.type !== "private" || privateKey.asymmetricKeyType !== "ed25519") return false
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== IDENTITY_PUBLIC_KEY_LENGTH) return false
    const derived = createPublicKey(privateKey).export({ format: "der", type: "spki" }).subarray(-IDENTITY_PUBLIC_KEY_LENGTH)
    return derived.equals(publicKey) && fingerprint === fingerprintOf(publicKey)
  },
  { description: "an IdentityKey (generateIdentityKey, identityKeyFromPrivate) holding a private Ed25519 key", [SecretId]: true }
)

const DURATION_FORMS = `a number of milliseconds, a Duration, or a string like "10 seconds"`

/**
 * A `Duration.DurationInput` that `Duration.decode` accepts and that is above zero. `decode` itself
 * throws on "banana" and quietly turns a negative or NaN input into zero, which would make a timeout
 * fire at once; hence the check on what it returns. `infinite` says whether "never" is allowed.
 */
const positiveDuration = (infinite: boolean) =>
  Schema.declare(
    (input: unknown): input is Duration.DurationInput =>
      Option.exists(Duration.decodeUnknown(input), (d) => !Duration.isZero(d) && (infinite || Duration.isFinite(d))),
    { description: `a positive${infinite ? "" : " finite"} duration (${DURATION_FORMS}${infinite ? ", or Duration.infinity" : ""})` }
  )

const Timeout = positiveDuration(false)

/**
 * The largest frame body of a handshake (PROTOCOL.md §3): a smaller `maxFrameSize` makes every
 * handshake fail with FrameTooLarge, which hides the real cause.
 */
const MIN_FRAME_SIZE = Math.max(CLIENT_HELLO_LENGTH, SERVER_HELLO_LENGTH)

/**
 * A chunk and its headers must fit the peer's frame, whose default is 1 MiB + 64 (PROTOCOL.md §10);
 * 0 would make `send` loop forever on empty chunks.
 */
const MAX_CHUNK_SIZE = 1024 * 1024

// --- the options, one line each -----------------------------------------------------------------

/**
 * Every key of `Options` with the Schema its value must satisfy when it is present (`undefined` means
 * the default). `satisfies` makes an option added to an interface and missing here a type error.
 */
type Fields<Options> = { readonly [K in keyof Required<Options>]: Schema.Schema.AnyNoContext }

const handshakeFields = {
  encryption: Encryption,
  password: Password,
  identity: Identity,
  serverKey: Fingerprint,
  knownHosts: NonEmptyString.annotations({ description: "the path of a known-hosts file" }),
  handshakeTimeout: Timeout,
  helloTimeout: Timeout,
  // Infinity never asks; 0 asks every client (PROTOCOL.md §3.6).
  puzzleThreshold: Schema.NonNegative.annotations({ description: "a non-negative number" }),
  // Clients refuse more than MAX_PUZZLE_DIFFICULTY bits (PROTOCOL.md §3.6).
  puzzleDifficulty: intBetween(0, MAX_PUZZLE_DIFFICULTY),
  maxFrameSize: intBetween(MIN_FRAME_SIZE, MAX_FRAME_LENGTH),
  // 1 cannot work: KEY_UPDATE itself takes the last sequence number of a key (PROTOCOL.md §7.2).
  rekeyAfter: intBetween(2, MAX_RECORDS_PER_KEY),
  highWaterMark: PositiveInt
} satisfies Fields<HandshakeOptions>

const sessionFields = {
  chunkSize: intBetween(1, MAX_CHUNK_SIZE),
  maxMessageSize: PositiveInt,
  maxInFlight: PositiveInt,
  maxQueuedPackets: PositiveInt,
  maxIncomingStreams: PositiveInt,
  maxBufferedBytes: PositiveInt,
  maxConcurrentHandlers: PositiveInt,
  // Infinity is how a caller says "never" to a budget that has a default.
  idleTimeout: positiveDuration(true),
  stallTimeout: positiveDuration(true),
  // Off by default; Infinity says "off" explicitly, like the budgets above.
  keepAlive: positiveDuration(true),
  exposeErrors: Schema.Boolean.annotations({ description: "a boolean" })
} satisfies Fields<SessionOptions>

const sessionConstructorFields = {
  ...handshakeFields,
  ...sessionFields,
  peer: Schema.String.annotations({ description: "a string" })
} satisfies Fields<HandshakeOptions & SessionOptions & { readonly peer?: string | undefined }>

const connectFields = {
  ...handshakeFields,
  ...sessionFields,
  host: NonEmptyString,
  port: intBetween(1, 65535),
  connectTimeout: Timeout
} satisfies Fields<ConnectOptions>

const serveFields = {
  ...handshakeFields,
  ...sessionFields,
  host: NonEmptyString,
  // 0 asks the system for a free port.
  port: intBetween(0, 65535),
  maxConnections: PositiveInt,
  maxHandshakes: PositiveInt,
  memoryBudget: PositiveInt,
  // PROTOCOL.md §10.5: the throttle of failed password attempts.
  maxPasswordFailures: PositiveInt,
  passwordBackoff: Timeout,
  maxPasswordBackoff: Timeout,
  throttledAddresses: PositiveInt,
  onListen: Schema.declare(Predicate.isFunction, { description: "a function" })
} satisfies Fields<ServeAndAnnounceOptions>

// --- decoding an options object -----------------------------------------------------------------

const kindOf = (value: unknown): string => {
  if (value === null) return "null"
  if (value instanceof Uint8Array) return `a Uint8Array of ${value.length} bytes`
  if (Redacted.isRedacted(value)) return "a Redacted value"
  if (Array.isArray(value)) return "an array"
  const type = typeof value
  return type === "undefined" ? "undefined" : type === "object" ? "an object" : `a ${type}`
}

const MAX_SHOWN_STRING = 40

/** The value as the message shows it: primitives as written in code, anything else by its kind. */
const show = (value: unknown, secret: boolean): string => {
  if (secret) return kindOf(value)
  switch (typeof value) {
    case "number":
    case "boolean":
      return String(value)
    case "bigint":
      return `${value}n`
    case "string":
      return JSON.stringify(value.length > MAX_SHOWN_STRING ? `${value.slice(0, MAX_SHOWN_STRING)}…` : value)
    default:
      return Duration.isDuration(value) ? Duration.format(value) : kindOf(value)
  }
}

const optionError = (field: string, expected: string, value: unknown, secret: boolean) =>
  new InvalidArgument({ reason: "Option", field, detail: `expected ${expected}, got ${show(value, secret)}` })

/** The first key a struct decode failed on and the value found there; none when the input was no object. */
const firstField = (issue: ParseResult.ParseIssue): { readonly name: string; readonly value: unknown } | undefined => {
  if (issue._tag !== "Composite") return undefined
  const first = "_tag" in issue.issues ? issue.issues : issue.issues[0]
  return first._tag === "Pointer" && typeof first.path === "string" ? { name: first.path, value: first.issue.actual } : undefined
}

/**
 * A checker for one entry point's options. Unknown extra keys are allowed and ignored, so that an
 * object built for one entry point (or carrying the caller's own keys) can be passed to another.
 * The options object is returned as it was given, not the decoded copy, so that nothing is dropped.
 */
const optionsChecker = (fields: Readonly<Record<string, Schema.Schema.AnyNoContext>>, required: ReadonlyArray<string>) => {
  const schema = Schema.Struct(
    Object.fromEntries(Object.entries(fields).map(([name, field]) => [name, required.includes(name) ? field : Schema.optional(field)]))
  )
  const decode = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })
  return <Options>(options: Options): Effect.Effect<Options, InvalidArgument> =>
    Effect.suspend(() => {
      const decoded = decode(options)
      if (Either.isRight(decoded)) return Effect.succeed(options)
      const failed = firstField(decoded.left.issue)
      const field = failed === undefined ? undefined : fields[failed.name]
      if (failed === undefined || field === undefined) return Effect.fail(optionError("options", "an object", options, false))
      const expected = Option.getOrElse(SchemaAST.getDescriptionAnnotation(field.ast), () => String(field))
      const secret = Option.isSome(SchemaAST.getAnnotation<boolean>(field.ast, SecretId))
      return Effect.fail(optionError(failed.name, expected, failed.value, secret))
    })
}

/** `ClientSession.session` and `ServerSession.session`. */
export const checkSessionOptions = optionsChecker(sessionConstructorFields, [])
/** `connect`, `connectScoped`, `ClientSession.layer`. */
export const checkConnectOptions = optionsChecker(connectFields, ["port"])
/** `listen`, `serve`, `ServerSession.layer`. */
export const checkServeOptions = optionsChecker(serveFields, ["port"])

// --- packets (hot path: comparisons only) -------------------------------------------------------

const packetError = (field: string, expected: string, value: unknown, secret = false) =>
  new InvalidArgument({ reason: "Packet", field, detail: `expected ${expected}, got ${show(value, secret)}` })

const ID_RANGE = "an integer from 0 to 4294967295"
const TYPE_RANGE = "a packet type: an integer from 0 to 255"

const isId = (id: unknown): boolean => typeof id === "number" && Number.isInteger(id) && id >= 0 && id <= 0xffffffff
const isType = isPacketType

/** What is wrong with a packet's id and type, if anything: an id that is not a u32, or a type that is not a byte. */
const headerProblem = (
  header: { readonly id: number; readonly type: number },
  name: string,
  expected = "an object with id and type"
): InvalidArgument | undefined => {
  if (typeof header !== "object" || header === null) return packetError(name, expected, header)
  if (!isId(header.id)) return packetError(`${name}.id`, ID_RANGE, header.id)
  if (!isType(header.type)) return packetError(`${name}.type`, TYPE_RANGE, header.type)
  return undefined
}

/**
 * What is wrong with a packet, if anything: its header, or a payload that is not bytes. Checked before
 * the packet is encoded, so a bad one never takes a sequence number.
 */
export const packetProblem = (packet: Packet, name: string): InvalidArgument | undefined =>
  headerProblem(packet, name, "a Packet") ??
    // The payload may be anything the caller holds; only its kind is shown.
    (packet.payload instanceof Uint8Array ? undefined : packetError(`${name}.payload`, "a Uint8Array", packet.payload, true))

/** A filter whose id or type can never match would make `receive` fail on the next packet, or wait forever. */
const filterProblem = (filter: PacketFilter | undefined, name: string): InvalidArgument | undefined => {
  if (filter === undefined) return undefined
  if (typeof filter !== "object" || filter === null) return packetError(name, "an object with optional id and type", filter)
  if (filter.id !== undefined && !isId(filter.id)) return packetError(`${name}.id`, ID_RANGE, filter.id)
  if (filter.type !== undefined && !isType(filter.type)) return packetError(`${name}.type`, TYPE_RANGE, filter.type)
  return undefined
}

const isTimeout = Schema.is(positiveDuration(true))

/** A request's options: `expect` a packet type, `timeout` a positive duration. */
const requestOptionsProblem = (options: RequestOptions | undefined): InvalidArgument | undefined => {
  if (options === undefined) return undefined
  if (typeof options !== "object" || options === null) return packetError("options", "an object", options)
  if (options.expect !== undefined && !isType(options.expect)) return packetError("options.expect", TYPE_RANGE, options.expect)
  if (options.timeout !== undefined && !isTimeout(options.timeout)) {
    return packetError("options.timeout", `a positive duration (${DURATION_FORMS})`, options.timeout)
  }
  return undefined
}

const orFail = <A, E, R>(problem: InvalidArgument | undefined, run: () => Effect.Effect<A, E, R>): Effect.Effect<A, E | InvalidArgument, R> =>
  problem === undefined ? run() : Effect.fail(problem)

/** `Effect.succeed(x)` and `Effect.fail(e)` are `Exit`s: their outcome is known without running them. */
export const isExit = <A, E, R>(effect: Effect.Effect<A, E, R>): effect is Exit.Exit<A, E> & Effect.Effect<A, E, R> => Exit.isExit(effect)

const checkedResponse = (response: Packet | undefined): Exit.Exit<Packet | undefined, InvalidArgument> => {
  const problem = response === undefined ? undefined : packetProblem(response, "response")
  return problem === undefined ? Exit.succeed(response) : Exit.fail(problem)
}

/**
 * A handler's reply is checked before it is sent: a bad one fails the handler, not the channel. A
 * handler that answered at once (an `Exit`) is checked at once and stays an `Exit`, which `serve`
 * answers without a fiber (docs/performance.md).
 */
const checkedHandler = <E, R>(handler: (packet: Packet) => Effect.Effect<Packet | undefined, E, R>) =>
(packet: Packet): Effect.Effect<Packet | undefined, E | InvalidArgument, R> => {
  const run = handler(packet)
  if (isExit(run) && Exit.isSuccess(run)) return checkedResponse(run.value)
  return Effect.flatMap(run, checkedResponse)
}

/**
 * The session as the API hands it out: every method that takes a packet, header or filter checks it
 * first and fails with `InvalidArgument` before anything is queued or sealed.
 */
export const checkedSession = (session: Session): Session => ({
  ...session,
  send: (packet) => orFail(packetProblem(packet, "packet"), () => session.send(packet)),
  receive: (filter) => orFail(filterProblem(filter, "filter"), () => session.receive(filter)),
  request: (packet, options) =>
    orFail(packetProblem(packet, "packet") ?? requestOptionsProblem(options), () => session.request(packet, options)),
  receiveAndSend: (response, filter) =>
    orFail(packetProblem(response, "response") ?? filterProblem(filter, "filter"), () => session.receiveAndSend(response, filter)),
  respond: (filter, handler) => orFail(filterProblem(filter, "filter"), () => session.respond(filter, checkedHandler(handler))),
  serve: (handler) => session.serve(checkedHandler(handler)),
  requestStream: (packet, options) =>
    orFail(packetProblem(packet, "packet") ?? requestOptionsProblem(options), () => session.requestStream(packet, options)),
  reply: (request, response) =>
    orFail(packetProblem(request, "request") ?? packetProblem(response, "response"), () => session.reply(request, response)),
  replyStream: (request, type, data) =>
    orFail(packetProblem(request, "request") ?? (isType(type) ? undefined : packetError("type", TYPE_RANGE, type)), () =>
      session.replyStream(request, type, data)),
  replyError: (request, error) => orFail(packetProblem(request, "request"), () => session.replyError(request, error)),
  sendStream: (header, data) => orFail(headerProblem(header, "header"), () => session.sendStream(header, data)),
  receiveStream: (filter) => orFail(filterProblem(filter, "filter"), () => session.receiveStream(filter))
})
