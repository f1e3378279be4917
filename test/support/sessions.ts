/**
 * Helpers for session and server tests: connected session pairs over the in-memory socket pair and
 * over real loopback TCP, payload builders, and a few assertions that keep megabytes out of diffs.
 */
import * as Socket from "@effect/platform/Socket"
import { expect } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer } from "effect"
import type { Scope } from "effect"
import { createHash, randomFillSync } from "node:crypto"
import * as Client from "../../src/client/Client.js"
import type { Crypto } from "../../src/crypto/Crypto.js"
import * as NodeCrypto from "../../src/crypto/NodeCrypto.js"
import type { HandshakeOptions } from "../../src/handshake/Handshake.js"
import * as Server from "../../src/server/Server.js"
import type { Session, SessionOptions } from "../../src/session/Session.js"
import * as MemorySocket from "../../src/transport/MemorySocket.js"
import { Packet } from "../../src/wire/Packet.js"
import type { PacketType } from "../../src/wire/PacketType.js"

export type SideOptions = HandshakeOptions & SessionOptions & { readonly peer?: string | undefined }

export interface MemorySessions {
  readonly client: Session
  readonly server: Session
  readonly clientSocket: Socket.Socket
  readonly serverSocket: Socket.Socket
}

/** Handshakes both sides of an in-memory pair concurrently; everything lives as long as the scope. */
export const memorySessions = (options: {
  readonly client?: SideOptions | undefined
  readonly server?: SideOptions | undefined
  readonly faults?: MemorySocket.FaultOptions | undefined
  /** The client's own `Crypto` (e.g. `support/tagging.ts`, to inject tagged plaintext frames). */
  readonly clientCrypto?: Layer.Layer<Crypto> | undefined
} = {}): Effect.Effect<MemorySessions, Client.ConnectError, Scope.Scope> =>
  Effect.gen(function*() {
    const [clientSocket, serverSocket] = yield* MemorySocket.makePair(options.faults)
    const [client, server] = yield* Effect.all([
      Client.session(options.client ?? {}).pipe(
        Effect.provideService(Socket.Socket, clientSocket),
        Effect.provide(options.clientCrypto ?? NodeCrypto.layer)
      ),
      Server.session(options.server ?? {}).pipe(Effect.provideService(Socket.Socket, serverSocket), Effect.provide(NodeCrypto.layer))
    ], { concurrency: 2 })
    return { client, server, clientSocket, serverSocket }
  })

/** Both sides agree on encryption (with a password) or on plaintext. */
export const modes = {
  encrypted: { encryption: "required", password: "pw" },
  plaintext: { encryption: "disabled" }
} as const satisfies Record<string, SideOptions>

export type Mode = keyof typeof modes

/** Serves on an ephemeral loopback port in the background of the scope; returns the port. */
export const startServer = <E, R>(
  options: Omit<Server.ServeOptions, "port"> & { readonly port?: number | undefined },
  handler: (session: Session) => Effect.Effect<unknown, E, R>
): Effect.Effect<
  { readonly port: number; readonly fiber: Fiber.RuntimeFiber<never, Server.ServeError> },
  Server.ServeError,
  Scope.Scope | Exclude<R, Scope.Scope>
> =>
  Effect.gen(function*() {
    const listening = yield* Deferred.make<number>()
    const fiber = yield* Server.serve(
      { ...options, port: options.port ?? 0, onListen: (address) => Deferred.succeed(listening, address.port) },
      handler
    ).pipe(Effect.forkScoped)
    // A server that fails to bind fails here rather than leaving the test waiting.
    const port = yield* Effect.raceFirst(Deferred.await(listening), Fiber.join(fiber))
    return { port, fiber }
  })

const encoder = new TextEncoder()
const decoder = new TextDecoder()
export const text = (value: string): Uint8Array => encoder.encode(value)
export const str = (bytes: Uint8Array): string => decoder.decode(bytes)

export const packet = (id: number, type: PacketType, payload: Uint8Array | string = new Uint8Array(0)) =>
  new Packet({ id, type, payload: typeof payload === "string" ? text(payload) : payload })

export const randomPayload = (length: number): Uint8Array => {
  const out = new Uint8Array(length)
  // randomFillSync takes at most 2^31-1 bytes at once, far above anything used here.
  if (length > 0) randomFillSync(out)
  return out
}

export const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/** Byte-for-byte comparison without handing vitest megabytes to diff. */
export const expectSameBytes = (actual: Uint8Array, expected: Uint8Array): void => {
  expect(actual.length).toBe(expected.length)
  expect(Buffer.compare(actual, expected)).toBe(0)
}

/** Fails the test with `what` when `effect` does not finish in time (instead of hanging). */
export const bounded = (what: string, duration: Duration.DurationInput = "20 seconds") =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Error, R> =>
  Effect.timeoutFail(effect, {
    duration,
    onTimeout: () => new Error(`timed out: ${what}`)
  })
