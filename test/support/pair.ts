/**
 * Runs a client and a server session against each other through the public API
 * (`ClientSession.session` / `ServerSession.session`), over an in-memory pair (optionally with
 * faults) or over real loopback TCP, and classifies how each side ended.
 */
import * as Socket from "@effect/platform/Socket"
import { Cause, Duration, Effect, Exit, Layer, Option } from "effect"
import type { Scope } from "effect"
import {
  ClientSession,
  Crypto,
  NodeCrypto,
  Packet,
  PacketType,
  ServerSession,
  type ConnectError,
  type HandshakeOptions,
  type Session,
  type SessionOptions
} from "../../src/index.js"
import * as MemorySocket from "../../src/transport/MemorySocket.js"
import { netTcpPair, tcpPair } from "./tcp.js"

export type Options = HandshakeOptions & SessionOptions & { readonly peer?: string | undefined }

/** Two connected sockets; the server's may only exist once the client has started connecting. */
export interface Sockets {
  readonly client: Socket.Socket
  readonly server: Effect.Effect<Socket.Socket>
}

export type Transport = Effect.Effect<Sockets, unknown, Scope.Scope>

export const memory = (faults?: MemorySocket.FaultOptions): Transport =>
  Effect.map(MemorySocket.makePair(faults), ([client, server]) => ({ client, server: Effect.succeed(server) }))

export const tcp: Transport = Effect.map(tcpPair, (pair) => ({ client: pair.client, server: pair.server }))

/** TCP as `connect` and `serve` drive it: the raw `net.Socket` transport (src/transport/Transport.ts). */
export const netTcp: Transport = Effect.map(netTcpPair, (pair) => ({ client: pair.client, server: pair.server }))

export const transports: ReadonlyArray<readonly [string, () => Transport]> = [
  ["memory", () => memory()],
  ["tcp", () => tcp]
]

export interface PairOutcome {
  readonly client: Exit.Exit<Session, ConnectError>
  readonly server: Exit.Exit<Session, ConnectError>
}

/** Fails the test (as a defect with a clear message) when `effect` takes longer than `limit`. */
export const noHang = (limit: Duration.DurationInput, what: string) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.timeoutFail(effect, {
    duration: limit,
    onTimeout: () => new Error(`hang: ${what} did not finish within ${Duration.format(Duration.decode(limit))}`)
  }).pipe(Effect.catchIf((e): e is Error => e instanceof Error && e.message.startsWith("hang:"), (e) => Effect.die(e)))

/**
 * Handshakes both sides concurrently. The sessions live in the surrounding scope. Each side gets its
 * own `Crypto` layer (default `node:crypto`).
 */
export const runPair = (
  transport: Transport,
  clientOptions: Options,
  serverOptions: Options,
  layers: { readonly client?: Layer.Layer<Crypto>; readonly server?: Layer.Layer<Crypto> } = {}
): Effect.Effect<PairOutcome, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const sockets = yield* transport
    const client = ClientSession.session(clientOptions).pipe(
      Effect.provideService(Socket.Socket, sockets.client),
      Effect.provide(layers.client ?? NodeCrypto.layer),
      Effect.exit
    )
    const server = Effect.flatMap(sockets.server, (socket) =>
      ServerSession.session(serverOptions).pipe(
        Effect.provideService(Socket.Socket, socket),
        Effect.provide(layers.server ?? NodeCrypto.layer)
      )).pipe(Effect.exit)
    const [c, s] = yield* Effect.all([client, server], { concurrency: 2 })
    return { client: c, server: s }
  })

/**
 * The typed error a side failed with. Fails the test if the side succeeded, died, or was
 * interrupted: a defect is never an acceptable way for the protocol to fail.
 */
export const typedError = <A, E>(exit: Exit.Exit<A, E>, side: string): E => {
  if (Exit.isSuccess(exit)) throw new Error(`${side}: expected a typed failure, but it succeeded`)
  const defects = Cause.defects(exit.cause)
  if (defects.length > 0 || Cause.isInterruptedOnly(exit.cause)) {
    throw new Error(`${side}: expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`${side}: no failure in ${Cause.pretty(exit.cause)}`)
  return failure.value
}

export const succeeded = <A, E>(exit: Exit.Exit<A, E>, side: string): A => {
  if (Exit.isFailure(exit)) throw new Error(`${side}: expected success, got ${Cause.pretty(exit.cause)}`)
  return exit.value
}

/** The tags a failed connection may legitimately end with. */
export const TYPED_TAGS: ReadonlySet<string> = new Set([
  "ConnectionClosed",
  "HandshakeError",
  "ProtocolError",
  "PeerAlert",
  "AuthFailed",
  "EncryptionMismatch",
  "CapabilityMismatch",
  "ServerKeyMismatch",
  "SocketError"
])

export const tagOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : String(error)

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** One request from the client answered by the server (RESPONSE with `reply:` + payload). */
export const roundTrip = (client: Session, server: Session, id: number, text: string) =>
  Effect.gen(function*() {
    const [reply] = yield* Effect.all([
      client.request(new Packet({ id, type: PacketType.COMMAND, payload: encoder.encode(text) })),
      server.respond({}, (request) =>
        Effect.succeed(
          new Packet({ id: request.id, type: PacketType.RESPONSE, payload: encoder.encode(`reply:${decoder.decode(request.payload)}`) })
        ))
    ], { concurrency: 2 })
    return { type: reply.type, id: reply.id, text: decoder.decode(reply.payload) }
  })
