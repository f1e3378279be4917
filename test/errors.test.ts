/**
 * Every typed error has a test that provokes it through the public API (`src/index.ts`,
 * `src/testing.ts`, and the handshake-level `ClientSession.session` / `ServerSession.session` over
 * `MemorySocket`). This file holds the cases no other test file covers with both the tag and the
 * `reason`; grep test/ for a reason literal to find the others (EncryptionMismatch, AuthFailed
 * with its `source`, HandshakeError Version/Malformed/KeyConfirmation/Timeout: handshake.test.ts and
 * handshake.hostile.test.ts; CapabilityMismatch, ServerKeyMismatch, AuthFailed(ServerKeyRejected),
 * IdentityKeyError from known hosts: identity.test.ts; PeerAlert also in channel.test.ts and budgets.test.ts; ProtocolError
 * FrameTooLarge/DecryptFailed: channel.test.ts; MessageTooLarge/StreamIntegrity, UnexpectedPacket:
 * session.test.ts; ConnectionClosed: channel.test.ts and handshake.test.ts; InvalidArgument, every
 * option and packet field: validation.test.ts). One `describe` per class.
 *
 * Raw bytes are built with the wire codecs (`src/wire/*`): they stand for a misbehaving peer, not
 * for the API under test.
 */
import * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Either, Fiber, Layer, Logger, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import { createServer, type AddressInfo } from "node:net"
import {
  ClientSession,
  connect,
  ConnectFailed,
  connectScoped,
  Crypto,
  CryptoError,
  type CryptoService,
  HandshakeError,
  listen,
  ListenFailed,
  NodeCrypto,
  Packet,
  PacketType,
  PeerAlert,
  ProtocolError,
  serve,
  ServerSession
} from "../src/index.js"
import { MemorySocket } from "../src/testing.js"
import { ChunkFlags, encodeChunkStart, encodeStreamHead } from "../src/wire/Chunks.js"
import { encodeFrame } from "../src/wire/Frame.js"
import { AlertCode, ClientHello, encodeClientHello, MessageType, PROTOCOL_VERSION } from "../src/wire/Messages.js"
import type { Aead } from "../src/crypto/Crypto.js"
import { memory, noHang, runPair, TYPED_TAGS, typedError } from "./support/pair.js"
import { rawClient } from "./support/raw.js"
import { memorySessions, startServer } from "./support/sessions.js"
import { makeTaggingCrypto } from "./support/tagging.js"
import { failOnUnhandledRejections } from "./support/unhandled.js"
import { concatBytes, rawPeer } from "./support/wire.js"

failOnUnhandledRejections()

const HANG_LIMIT = "5 seconds"

const PLAINTEXT = { encryption: "disabled" } as const

/** Bytes of a plaintext ALERT frame with this code. */
const alertFrame = (code: number): Array<number> => [0, 0, 0, 1, MessageType.ALERT, code]

/** `04 ‖ 0^132`: the right length and prefix, but (0, 0) is not on P-521. */
const offCurvePoint = (): Uint8Array => {
  const point = new Uint8Array(133)
  point[0] = 0x04
  return point
}

/** `node:crypto` with some primitives replaced, to make the local side fail. */
const cryptoWith = (override: (node: CryptoService) => Partial<CryptoService>): Layer.Layer<Crypto> =>
  Layer.effect(Crypto, Effect.map(NodeCrypto.make, (node): CryptoService => ({ ...node, ...override(node) })))

const failingKeyGeneration = cryptoWith(() => ({
  generateKeyPair: Effect.fail(new CryptoError({ reason: "Internal", detail: "no entropy (test)" }))
}))

/** A P-521 work queue that is always full (PROTOCOL.md §10.5). */
const busyCrypto = cryptoWith(() => ({
  deriveSharedSecret: () => Effect.fail(new CryptoError({ reason: "Busy", detail: "queue full (test)" }))
}))

const failingAead = cryptoWith(() => ({
  aead: () => Either.left(new CryptoError({ reason: "Internal", detail: "no cipher (test)" }))
}))

/**
 * `node:crypto` whose record sealing (encrypted and tagged alike) fails while `refuse.seal` is set:
 * a local `Crypto` that breaks once the connection is up.
 */
const refusingSeal = () => {
  const refuse = { seal: false }
  const refused = () => Either.left(new CryptoError({ reason: "Internal", detail: "seal refused (test)" }))
  const layer = cryptoWith((node) => ({
    aead: (key) =>
      Either.map(node.aead(key), (inner): Aead => ({
        seal: (nonce, aad, plaintext) => (refuse.seal ? refused() : inner.seal(nonce, aad, plaintext)),
        sealParts: (nonce, aad, parts) => (refuse.seal ? refused() : inner.sealParts(nonce, aad, parts)),
        open: (nonce, aad, sealed) => inner.open(nonce, aad, sealed),
        tagParts: (nonce, parts) => (refuse.seal ? refused() : inner.tagParts(nonce, parts)),
        verifyParts: (nonce, parts, tag) => inner.verifyParts(nonce, parts, tag)
      }))
  }))
  return { refuse, layer }
}

/**
 * A plaintext session pair whose client, once the session has started, writes `frames` of its own:
 * a peer that speaks the protocol until the session starts, then misbehaves. The frames carry valid
 * record tags under the client's keys (PROTOCOL.md §4.4, `support/tagging.ts`), so that they reach
 * the server's session rules; `tagged: false` writes them as given.
 */
const misbehavingClient = (frames: ReadonlyArray<Uint8Array>, tagged = true) =>
  Effect.gen(function*() {
    const tagging = yield* makeTaggingCrypto
    const sessions = yield* memorySessions({ client: PLAINTEXT, server: PLAINTEXT, clientCrypto: tagging.layer })
    const write = yield* sessions.clientSocket.writer
    for (const frame of frames) yield* write(tagged ? tagging.tag(frame) : frame)
    return sessions
  })

/** A server handshake against a raw client that writes `bytes`; returns the server's error and the frames it sent. */
const serverAgainstRaw = (bytes: Uint8Array, expectFrames: number) =>
  Effect.gen(function*() {
    const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
    const raw = yield* rawPeer(clientSocket)
    const server = yield* ServerSession.session().pipe(
      Effect.provideService(Socket.Socket, serverSocket),
      Effect.provide(NodeCrypto.layer),
      Effect.exit,
      Effect.fork
    )
    yield* raw.write(bytes)
    const error = typedError(yield* Fiber.join(server), "server")
    const frames = yield* raw.waitForFrames(expectFrames)
    return { error, frames }
  }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the server handshake"))

/** A client handshake against a raw server that answers the ClientHello with `bytes`. */
const clientAgainstRaw = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
    const raw = yield* rawPeer(serverSocket)
    const client = yield* ClientSession.session().pipe(
      Effect.provideService(Socket.Socket, clientSocket),
      Effect.provide(NodeCrypto.layer),
      Effect.exit,
      Effect.fork
    )
    yield* raw.waitForFrames(1)
    yield* raw.write(bytes)
    return typedError(yield* Fiber.join(client), "client")
  }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the client handshake"))

// ---------------------------------------------------------------------------------------------

describe("HandshakeError", () => {
  it.live("Aborted: a client whose Crypto cannot generate a key pair; the CryptoError is its cause", () =>
    Effect.gen(function*() {
      const result = yield* runPair(memory(), {}, {}, { client: failingKeyGeneration })
      const client = typedError(result.client, "client")
      expect(client).toBeInstanceOf(HandshakeError)
      expect(client).toMatchObject({ _tag: "HandshakeError", reason: "Aborted" })
      // By fields: an error that failed inside a span carries the span (Effect's own annotation), which
      // holds the exit and so the error again; a deep equality would walk that cycle.
      expect(client).toMatchObject({ cause: { _tag: "CryptoError", reason: "Internal", detail: "no entropy (test)" } })
      // The server hears an INTERNAL alert instead of a ClientHello: the failure was the client's.
      expect(typedError(result.server, "server")).toEqual(new PeerAlert({ reason: "Internal", phase: "Handshake" }))
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))

  it.live("Aborted: a server whose Crypto cannot generate a key pair, and the client is told (ALERT INTERNAL)", () =>
    Effect.gen(function*() {
      const result = yield* runPair(memory(), {}, {}, { server: failingKeyGeneration })
      const server = typedError(result.server, "server")
      expect(server).toMatchObject({ _tag: "HandshakeError", reason: "Aborted" })
      expect(server).toHaveProperty("cause._tag", "CryptoError")
      expect(typedError(result.client, "client")).toEqual(new PeerAlert({ reason: "Internal", phase: "Handshake" }))
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))

  for (const side of ["client", "server"] as const) {
    it.live(`Aborted: a ${side} whose Crypto cannot make the traffic cipher, and the peer is told`, () =>
      Effect.gen(function*() {
        const result = yield* runPair(memory(), {}, {}, side === "client" ? { client: failingAead } : { server: failingAead })
        const failed = typedError(side === "client" ? result.client : result.server, side)
        expect(failed).toMatchObject({ _tag: "HandshakeError", reason: "Aborted", detail: "key schedule" })
        expect(failed).toMatchObject({ cause: { _tag: "CryptoError", reason: "Internal", detail: "no cipher (test)" } })
        // Without a cipher its alert goes out in plaintext, and the peer already holds keys: the alert
        // is unauthenticated and reported as such (PROTOCOL.md §6).
        const peer = typedError(side === "client" ? result.server : result.client, side === "client" ? "server" : "client")
        expect(peer).toMatchObject({ _tag: "HandshakeError", reason: "Aborted" })
        expect((peer as HandshakeError).detail).toContain("unauthenticated plaintext alert INTERNAL")
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))
  }

  it.live("InvalidPublicKey: a ClientHello whose key is off the curve; the server alerts MALFORMED after its hello", () =>
    Effect.gen(function*() {
      const hello = encodeClientHello(
        new ClientHello({ version: PROTOCOL_VERSION, policy: "required", nonce: new Uint8Array(32), publicKey: offCurvePoint() })
      )
      const { error, frames } = yield* serverAgainstRaw(encodeFrame(MessageType.CLIENT_HELLO, hello), 2)
      expect(error).toBeInstanceOf(HandshakeError)
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "InvalidPublicKey" })
      // The Crypto service's refusal, which says why, is kept.
      expect(error).toHaveProperty("cause._tag", "CryptoError")
      expect(error).toHaveProperty("cause.reason", "InvalidPublicKey")
      expect(frames.map((f) => f[4])).toEqual([MessageType.SERVER_HELLO, MessageType.ALERT])
      expect(Array.from(frames[1] ?? [])).toEqual(alertFrame(AlertCode.MALFORMED))
    }))
})

/** A loopback TCP server of another protocol: `answer` gets each chunk and returns what to send back. */
const foreignServer = (answer: (chunk: Buffer) => Uint8Array | string) =>
  Effect.acquireRelease(
    Effect.async<Net.Server>((resume) => {
      const server = Net.createServer((socket) => {
        socket.on("data", (chunk: Buffer) => socket.write(answer(chunk)))
        socket.on("error", () => {})
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map((server) => {
    const address = server.address()
    return typeof address === "object" && address !== null ? address.port : 0
  }))

describe("HandshakeError NotCvgPeer (PROTOCOL.md §3): the peer does not speak cvg at all", () => {
  it.scopedLive("connect to an echo server: our own hello comes back", () =>
    Effect.gen(function*() {
      const port = yield* foreignServer((chunk) => chunk)
      const error = yield* Effect.flip(connectScoped({ port, handshakeTimeout: "5 seconds" }))
      expect(error).toBeInstanceOf(HandshakeError)
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer", detail: "not a cvg peer: it echoed our own hello" })
      expect(error.message).toContain("not a cvg peer")
    }).pipe(noHang(HANG_LIMIT, "the handshake")))

  it.scopedLive("connect to an HTTP server: its first bytes are named", () =>
    Effect.gen(function*() {
      const port = yield* foreignServer(() => "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
      const error = yield* Effect.flip(connectScoped({ port, handshakeTimeout: "5 seconds" }))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer", detail: 'not a cvg peer: first bytes "HTTP/1.1"' })
    }).pipe(noHang(HANG_LIMIT, "the handshake")))

  it.scopedLive("serve reached by an HTTP client: the connection fails NotCvgPeer (logged) and the server serves on", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const logger = Logger.make(({ cause, message }) => {
        logs.push([...(Array.isArray(message) ? message : [message]).map(String), Cause.isEmpty(cause) ? "" : Cause.pretty(cause)].join(" "))
      })
      const { port } = yield* startServer({}, (session) => session.serve((p) => Effect.succeed(p))).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      yield* rawClient(port, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), "wait")
      while (!logs.some((line) => line.includes("NotCvgPeer"))) yield* Effect.sleep("10 millis")
      expect(logs.find((line) => line.includes("NotCvgPeer"))).toContain('not a cvg peer: first bytes "GET / HT"')
      const session = yield* connectScoped({ port })
      yield* session.close
    }).pipe(noHang(HANG_LIMIT, "the server")))
})

// ---------------------------------------------------------------------------------------------

describe("PeerAlert (PROTOCOL.md §6): what the peer reported, never mistaken for what this side found", () => {
  const handshakeTable: ReadonlyArray<readonly [name: string, code: number, expected: Record<string, string>]> = [
    ["VERSION", AlertCode.VERSION, { _tag: "PeerAlert", reason: "Version", phase: "Handshake" }],
    ["MALFORMED", AlertCode.MALFORMED, { _tag: "PeerAlert", reason: "Malformed", phase: "Handshake" }],
    ["KEY_CONFIRMATION", AlertCode.KEY_CONFIRMATION, { _tag: "PeerAlert", reason: "KeyConfirmation", phase: "Handshake" }],
    ["MISSING_PASSWORD", AlertCode.MISSING_PASSWORD, { _tag: "AuthFailed", reason: "MissingPassword", source: "Peer" }],
    ["WRONG_PASSWORD", AlertCode.WRONG_PASSWORD, { _tag: "AuthFailed", reason: "WrongPassword", source: "Peer" }],
    ["SERVER_UNPROVEN", AlertCode.SERVER_UNPROVEN, { _tag: "AuthFailed", reason: "ServerUnproven", source: "Peer" }],
    ["DECRYPT_FAILED", AlertCode.DECRYPT_FAILED, { _tag: "PeerAlert", reason: "DecryptFailed", phase: "Handshake" }],
    // Reserved: no version sends it, so it has no meaning to report (the server does not even know
    // both policies before its ServerHello).
    ["ENCRYPTION_MISMATCH", AlertCode.ENCRYPTION_MISMATCH, { _tag: "HandshakeError", reason: "Aborted" }],
    ["LIMIT_EXCEEDED", AlertCode.LIMIT_EXCEEDED, { _tag: "PeerAlert", reason: "LimitExceeded", phase: "Handshake" }],
    ["TIMEOUT", AlertCode.TIMEOUT, { _tag: "PeerAlert", reason: "Timeout", phase: "Handshake" }],
    ["INTERNAL", AlertCode.INTERNAL, { _tag: "PeerAlert", reason: "Internal", phase: "Handshake" }],
    ["SERVER_KEY_REJECTED", AlertCode.SERVER_KEY_REJECTED, { _tag: "AuthFailed", reason: "ServerKeyRejected", source: "Peer" }],
    // Not an alert this side can read: the frame itself is broken, which this side found.
    ["an unknown code (0x7f)", 0x7f, { _tag: "HandshakeError", reason: "Malformed" }]
  ]
  for (const [name, code, expected] of handshakeTable) {
    it.live(`ALERT ${name} instead of a ClientHello: the server fails with ${expected._tag}(${expected.reason})`, () =>
      Effect.gen(function*() {
        const { error } = yield* serverAgainstRaw(Uint8Array.from(alertFrame(code)), 0)
        expect(error).toMatchObject(expected)
      }))
  }

  it.live("ALERT TIMEOUT instead of a ServerHello: the client's PeerAlert says the peer timed out", () =>
    Effect.gen(function*() {
      const error = yield* clientAgainstRaw(Uint8Array.from(alertFrame(AlertCode.TIMEOUT)))
      expect(error).toBeInstanceOf(PeerAlert)
      expect(error).toEqual(new PeerAlert({ reason: "Timeout", phase: "Handshake" }))
      expect(error.message).toBe("the peer ended the handshake with ALERT TIMEOUT: it timed out")
    }))

  const sessionTable = [
    ["DECRYPT_FAILED", AlertCode.DECRYPT_FAILED, "DecryptFailed"],
    ["LIMIT_EXCEEDED", AlertCode.LIMIT_EXCEEDED, "LimitExceeded"],
    ["TIMEOUT", AlertCode.TIMEOUT, "Timeout"],
    ["MALFORMED", AlertCode.MALFORMED, "Malformed"]
  ] as const
  for (const [name, code, reason] of sessionTable) {
    it.scopedLive(`ALERT ${name} after the handshake: PeerAlert(${reason}, Session), and no alert answers it`, () =>
      Effect.gen(function*() {
        const { client, server } = yield* misbehavingClient([Uint8Array.from(alertFrame(code))])
        const error = typedError(yield* Effect.exit(server.receive()), "server receive")
        expect(error).toEqual(new PeerAlert({ reason, phase: "Session" }))
        expect(yield* server.closed).toEqual(new PeerAlert({ reason, phase: "Session" }))
        // The server answers nothing (§6): the client sees its transport end, not an alert.
        expect((yield* client.closed)._tag).not.toBe("PeerAlert")
      }).pipe(noHang(HANG_LIMIT, "the session")))
  }

  it.scopedLive("an ALERT without a record tag after the handshake is not believed: DecryptFailed (PROTOCOL.md §4.4)", () =>
    Effect.gen(function*() {
      const { server } = yield* misbehavingClient([Uint8Array.from(alertFrame(AlertCode.TIMEOUT))], false)
      expect(yield* server.closed).toMatchObject({ _tag: "ProtocolError", reason: "DecryptFailed" })
    }).pipe(noHang(HANG_LIMIT, "the session")))

  it.scopedLive("catchTag tells our own idle timeout (ProtocolError) from the peer's (PeerAlert)", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ server: { idleTimeout: "100 millis" } })
      const who = (session: typeof client) =>
        session.receive().pipe(
          Effect.as("received"),
          Effect.catchTag("ProtocolError", (e) => Effect.succeed(`we found ${e.reason}`)),
          Effect.catchTag("PeerAlert", (e) => Effect.succeed(`the peer reported ${e.reason} during the ${e.phase}`)),
          Effect.orElseSucceed(() => "something else")
        )
      expect(yield* who(server)).toBe("we found Timeout")
      expect(yield* who(client)).toBe("the peer reported Timeout during the Session")
      expect((yield* client.closed).message).toBe("the peer ended the session with ALERT TIMEOUT: it timed out")
    }).pipe(noHang(HANG_LIMIT, "the idle timeout")))
})

// ---------------------------------------------------------------------------------------------

describe("ProtocolError", () => {
  it.scopedLive("Timeout: a session with idleTimeout facing a silent peer ends; the peer hears the alert", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ server: { idleTimeout: "100 millis" } })
      const serverEnd = yield* server.closed
      expect(serverEnd).toBeInstanceOf(ProtocolError)
      expect(serverEnd).toMatchObject({ _tag: "ProtocolError", reason: "Timeout" })
      expect(typedError(yield* Effect.exit(server.receive()), "server receive")).toMatchObject({ _tag: "ProtocolError", reason: "Timeout" })
      // The peer hears ALERT TIMEOUT: the timeout was ours, not its (PROTOCOL.md §6).
      expect(yield* client.closed).toEqual(new PeerAlert({ reason: "Timeout", phase: "Session" }))
    }).pipe(noHang(HANG_LIMIT, "the idle timeout")))

  /** A BATCH body of `length` bytes of well-formed PACKET items. */
  const batchOf = (length: number) => {
    const out = new Uint8Array(length)
    for (let offset = 0; offset < length;) {
      const size = Math.min(1000, length - offset - 3)
      out.set([MessageType.PACKET, size >>> 8, size & 0xff], offset)
      offset += 3 + size
    }
    return out
  }
  it.live("Aborted: a client whose Crypto cannot seal its ClientFinished; the CryptoError is its cause", () =>
    Effect.gen(function*() {
      const { layer, refuse } = refusingSeal()
      // Sealing fails from the first sealed record on: the client's ClientFinished (§3.4).
      refuse.seal = true
      const result = yield* runPair(memory(), {}, {}, { client: layer })
      const client = typedError(result.client, "client")
      expect(client).toMatchObject({ _tag: "HandshakeError", reason: "Aborted", detail: "a handshake message could not be sealed" })
      expect(client).toMatchObject({ cause: { _tag: "CryptoError", reason: "Internal", detail: "seal refused (test)" } })
      // Its alert cannot be sealed either: the server sees the connection end, not a handshake timeout.
      expect(TYPED_TAGS.has(typedError(result.server, "server")._tag)).toBe(true)
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))

  const chunkStart = (flags: number) => encodeChunkStart({ streamId: 1, flags, id: 1, type: 0, total: 0 })
  for (const [what, type, body] of [
    ["a PACKET body under 5 bytes", MessageType.PACKET, Uint8Array.of(0, 0, 1)],
    ["a REQUEST body under 5 bytes", MessageType.REQUEST, Uint8Array.of(0, 0, 1, 2)],
    ["a REPLY_ERROR with reason 0", MessageType.REPLY_ERROR, Uint8Array.of(0, 0, 0, 1, 0)],
    ["a REPLY_ERROR whose detail is over 1024 bytes", MessageType.REPLY_ERROR, new Uint8Array(5 + 1025).fill(1, 4)],
    ["a STREAM_CANCEL of 5 bytes", MessageType.STREAM_CANCEL, Uint8Array.of(0, 0, 0, 1, 0)],
    ["a CHUNK_START flagged both REQUEST and STREAM", MessageType.CHUNK_START, chunkStart(ChunkFlags.REQUEST | ChunkFlags.STREAM)],
    ["a CHUNK_START flagged both REQUEST and REPLY", MessageType.CHUNK_START, chunkStart(ChunkFlags.REQUEST | ChunkFlags.REPLY)],
    ["an empty BATCH", MessageType.BATCH, new Uint8Array(0)],
    ["a BATCH whose item runs past its end", MessageType.BATCH, Uint8Array.of(MessageType.PACKET, 0, 9, 0, 0, 0, 1, 0xc0)],
    ["a BATCH inside a BATCH", MessageType.BATCH, Uint8Array.of(MessageType.BATCH, 0, 0)],
    ["a CLOSE inside a BATCH", MessageType.BATCH, Uint8Array.of(MessageType.CLOSE, 0, 0)],
    ["a BATCH over 16 KiB", MessageType.BATCH, batchOf(16 * 1024 + 1)]
  ] as const) {
    it.scopedLive(`Malformed: ${what} after the handshake`, () =>
      Effect.gen(function*() {
        const { client, server } = yield* misbehavingClient([encodeFrame(type, body)])
        const error = typedError(yield* Effect.exit(server.receive()), "server receive")
        expect(error).toBeInstanceOf(ProtocolError)
        expect(error).toMatchObject({ _tag: "ProtocolError", reason: "Malformed" })
        expect(yield* server.closed).toMatchObject({ _tag: "ProtocolError", reason: "Malformed" })
        // The peer hears ALERT MALFORMED.
        expect(yield* client.closed).toMatchObject({ _tag: "PeerAlert", reason: "Malformed", phase: "Session" })
      }).pipe(noHang(HANG_LIMIT, "the session")))
  }

  for (const mode of ["encrypted", "plaintext"] as const) {
    it.scopedLive(`Internal: a record our own Crypto cannot seal ends the session, not the message alone (${mode})`, () =>
      Effect.gen(function*() {
        const { layer, refuse } = refusingSeal()
        const options = mode === "plaintext" ? PLAINTEXT : {}
        const { client, server } = yield* memorySessions({ client: options, server: options, clientCrypto: layer })
        yield* client.send(new Packet({ id: 1, type: PacketType.COMMAND, payload: new Uint8Array([1]) }))
        expect((yield* server.receive()).id).toBe(1)
        refuse.seal = true
        // Accepted, then sealed when the writer takes it: the session ends instead of dropping it.
        yield* Effect.ignore(client.send(new Packet({ id: 2, type: PacketType.COMMAND, payload: new Uint8Array([2]) })))
        const ended = yield* client.closed
        expect(ended).toMatchObject({ _tag: "ProtocolError", reason: "Internal", detail: "a record could not be sealed" })
        expect(ended).toMatchObject({ cause: { _tag: "CryptoError", reason: "Internal", detail: "seal refused (test)" } })
        // No alert after the handshake means "our own failure" (§6): the server sees the connection end.
        expect(yield* server.closed).toMatchObject({ _tag: "ConnectionClosed" })
        expect(typedError(yield* Effect.exit(server.receive()), "server receive")._tag).toBe("ConnectionClosed")
      }).pipe(noHang(HANG_LIMIT, "the session")))
  }

  it.scopedLive("UnexpectedMessage: a message type that does not exist (0x99) after the handshake", () =>
    Effect.gen(function*() {
      const { client, server } = yield* misbehavingClient([encodeFrame(0x99, new Uint8Array(0))])
      const error = typedError(yield* Effect.exit(server.receive()), "server receive")
      expect(error).toMatchObject({ _tag: "ProtocolError", reason: "UnexpectedMessage" })
      // We alert MALFORMED: the peer sent something that is not a message of this protocol.
      expect(yield* client.closed).toMatchObject({ _tag: "PeerAlert", reason: "Malformed", phase: "Session" })
    }).pipe(noHang(HANG_LIMIT, "the session")))

  it.scopedLive("UnexpectedMessage: a handshake-only alert (INTERNAL) after the handshake", () =>
    Effect.gen(function*() {
      const { server } = yield* misbehavingClient([Uint8Array.from(alertFrame(AlertCode.INTERNAL))])
      const error = typedError(yield* Effect.exit(server.receive()), "server receive")
      expect(error).toMatchObject({ _tag: "ProtocolError", reason: "UnexpectedMessage", detail: "alert INTERNAL (0x0b) after the handshake" })
    }).pipe(noHang(HANG_LIMIT, "the session")))

  it.scopedLive("LimitExceeded: more packets queued than maxQueuedPackets; the peer hears LIMIT_EXCEEDED", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ server: { maxQueuedPackets: 2 } })
      // Nobody receives on the server: the third packet overflows its queue.
      for (let id = 1; id <= 3; id++) {
        yield* Effect.ignore(client.send(new Packet({ id, type: PacketType.COMMAND, payload: new Uint8Array(1) })))
      }
      const serverEnd = yield* server.closed
      expect(serverEnd).toBeInstanceOf(ProtocolError)
      expect(serverEnd).toMatchObject({ _tag: "ProtocolError", reason: "LimitExceeded", detail: "too many queued packets" })
      expect(yield* client.closed).toMatchObject({ _tag: "PeerAlert", reason: "LimitExceeded", phase: "Session" })
    }).pipe(noHang(HANG_LIMIT, "the session")))

  it.live("LimitExceeded: a server with a full P-521 queue refuses; its cause is the CryptoError, the client hears the alert", () =>
    Effect.gen(function*() {
      const result = yield* runPair(memory(), {}, {}, { server: busyCrypto })
      const server = typedError(result.server, "server")
      expect(server).toMatchObject({ _tag: "ProtocolError", reason: "LimitExceeded", detail: "busy: queue full (test)" })
      expect(server).toMatchObject({ cause: { _tag: "CryptoError", reason: "Busy", detail: "queue full (test)" } })
      expect(typedError(result.client, "client")).toEqual(new PeerAlert({ reason: "LimitExceeded", phase: "Handshake" }))
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))

  it.scopedLive("LimitExceeded: more open incoming streams than maxIncomingStreams", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({ server: { maxIncomingStreams: 1 } })
      // Two streams that never end: the second one's CHUNK_START is over the limit.
      yield* Effect.forkScoped(client.sendStream({ id: 1, type: PacketType.STREAM_DATA }, Stream.never))
      yield* Effect.forkScoped(client.sendStream({ id: 2, type: PacketType.STREAM_DATA }, Stream.never))
      expect(yield* server.closed).toMatchObject({ _tag: "ProtocolError", reason: "LimitExceeded", detail: "too many open streams" })
      expect(yield* client.closed).toMatchObject({ _tag: "PeerAlert", reason: "LimitExceeded", phase: "Session" })
    }).pipe(noHang(HANG_LIMIT, "the session")))

  it.scopedLive("LimitExceeded: a stream sender that ignores the credit window", () =>
    Effect.gen(function*() {
      // 1 MiB of credit, 1 MiB + 1 byte sent in one CHUNK_DATA (within the default frame size).
      const start = encodeChunkStart({ streamId: 1, flags: ChunkFlags.STREAM, id: 1, type: PacketType.STREAM_DATA, total: 0 })
      const data = concatBytes([encodeStreamHead(1), new Uint8Array(1024 * 1024 + 1)])
      const { server } = yield* misbehavingClient([
        encodeFrame(MessageType.CHUNK_START, start),
        encodeFrame(MessageType.CHUNK_DATA, data)
      ])
      expect(yield* server.closed).toMatchObject({ _tag: "ProtocolError", reason: "LimitExceeded", detail: "stream credit exceeded" })
    }).pipe(noHang(HANG_LIMIT, "the session")))
})

// ---------------------------------------------------------------------------------------------

describe("CryptoError (the public Crypto service)", () => {
  it.effect("InvalidPublicKey: importPublicKey of a point off the curve, and of a wrong length", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto
      for (const raw of [offCurvePoint(), new Uint8Array(65).fill(4)]) {
        const error = yield* Effect.flip(crypto.importPublicKey(raw))
        expect(error).toBeInstanceOf(CryptoError)
        expect(error).toMatchObject({ _tag: "CryptoError", reason: "InvalidPublicKey" })
      }
    }).pipe(Effect.provide(NodeCrypto.layer)))

  it.effect("InvalidLength: an AES-256-GCM key of 16 bytes, a nonce of 8 bytes, an HKDF output too long", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto
      const shortKey = crypto.aead(new Uint8Array(16))
      expect(Either.isLeft(shortKey) ? shortKey.left : undefined).toMatchObject({ _tag: "CryptoError", reason: "InvalidLength" })
      const aead = crypto.aead(new Uint8Array(32))
      if (Either.isLeft(aead)) return yield* Effect.dieMessage(`aead refused a 32-byte key: ${aead.left.reason}`)
      const sealed = aead.right.seal(new Uint8Array(8), new Uint8Array(0), new Uint8Array(1))
      expect(Either.isLeft(sealed) ? sealed.left : undefined).toMatchObject({ _tag: "CryptoError", reason: "InvalidLength" })
      const empty = new Uint8Array(0)
      const error = yield* Effect.flip(crypto.hkdf(empty, empty, empty, 255 * 32 + 1))
      expect(error).toMatchObject({ _tag: "CryptoError", reason: "InvalidLength" })
    }).pipe(Effect.provide(NodeCrypto.layer)))

  it.effect("DecryptFailed: opening a tampered record, without any detail", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto
      const aead = crypto.aead(new Uint8Array(32).fill(7))
      if (Either.isLeft(aead)) return yield* Effect.dieMessage(`aead refused a 32-byte key: ${aead.left.reason}`)
      const nonce = new Uint8Array(12)
      const aad = Uint8Array.of(1, 2, 3)
      const sealed = aead.right.seal(nonce, aad, Uint8Array.of(42))
      if (Either.isLeft(sealed)) return yield* Effect.dieMessage(`seal failed: ${sealed.left.reason}`)
      const tampered = Uint8Array.from(sealed.right)
      tampered[0] = tampered[0]! ^ 0x01
      const opened = aead.right.open(nonce, aad, tampered)
      const error = Either.isLeft(opened) ? opened.left : undefined
      expect(error).toBeInstanceOf(CryptoError)
      expect(error).toMatchObject({ _tag: "CryptoError", reason: "DecryptFailed" })
      expect(error?.detail).toBeUndefined()
    }).pipe(Effect.provide(NodeCrypto.layer)))

  it.effect("Internal: deriveSharedSecret with a key pair this Crypto did not make", () =>
    Effect.gen(function*() {
      const crypto = yield* Crypto
      const own = yield* crypto.generateKeyPair
      const peer = yield* crypto.importPublicKey(own.publicKey)
      const error = yield* Effect.flip(crypto.deriveSharedSecret({ publicKey: own.publicKey, privateKey: "foreign" }, peer))
      expect(error).toBeInstanceOf(CryptoError)
      expect(error).toMatchObject({ _tag: "CryptoError", reason: "Internal" })
    }).pipe(Effect.provide(NodeCrypto.layer)))
})

// ---------------------------------------------------------------------------------------------

/** A loopback port that was free a moment ago: bound by the OS, then released. */
const releasedPort = Effect.async<number>((resume) => {
  const server = createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

describe("ConnectFailed", () => {
  it.live("ECONNREFUSED: connect to a port with nothing listening names host, port and code in the message", () =>
    Effect.gen(function*() {
      const port = yield* releasedPort
      const error = typedError(yield* Effect.exit(connect({ port, password: "pw" })), "connect")
      expect(error).toBeInstanceOf(ConnectFailed)
      expect(error).toMatchObject({ _tag: "ConnectFailed", host: "127.0.0.1", port, code: "ECONNREFUSED" })
      expect(error.message).toBe(`cannot connect to 127.0.0.1:${port}: ECONNREFUSED (nothing is listening there)`)
      // The platform's error is kept for whoever wants the details.
      expect(error).toHaveProperty("cause.code", "ECONNREFUSED")
    }).pipe(noHang(HANG_LIMIT, "the connect")))
})

/**
 * A listener whose accept queue is full: with a backlog of 0 and nothing accepting, the kernel takes
 * one connection and drops the SYNs of the next, which then never open. Node accepts on its own, so
 * the listener is a small Python process (python3 is on every machine of this project's kind).
 */
const fullListener = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly child: ChildProcess.ChildProcess; readonly filler: Net.Socket }>((resume) => {
    const child = ChildProcess.spawn("python3", [
      "-c",
      "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(0); print(s.getsockname()[1], flush=True); time.sleep(60)"
    ])
    child.stdout.once("data", (data) => {
      const port = Number(String(data).trim())
      const filler = Net.createConnection({ host: "127.0.0.1", port }).on("error", () => {})
      filler.once("connect", () => resume(Effect.succeed({ port, child, filler })))
    })
  }),
  ({ child, filler }) => Effect.sync(() => {
    filler.destroy()
    child.kill()
  })
)

describe("ConnectFailed: the connect timeout", () => {
  it.scopedLive("a connection that does not open within connectTimeout is ConnectFailed ETIMEDOUT", () =>
    Effect.gen(function*() {
      const { port } = yield* fullListener
      const error = typedError(yield* Effect.exit(connect({ port, connectTimeout: "300 millis" })), "connect")
      expect(error).toBeInstanceOf(ConnectFailed)
      expect(error).toMatchObject({ _tag: "ConnectFailed", host: "127.0.0.1", port, code: "ETIMEDOUT" })
    }).pipe(noHang(HANG_LIMIT, "the connect timeout")))
})

describe("ListenFailed", () => {
  it.scopedLive("EADDRINUSE: serve on a port another server holds says so, with host and port", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer({}, () => Effect.void)
      const error = typedError(yield* Effect.exit(serve({ port }, () => Effect.void)), "serve")
      expect(error).toBeInstanceOf(ListenFailed)
      expect(error).toMatchObject({ _tag: "ListenFailed", host: "127.0.0.1", port, code: "EADDRINUSE" })
      expect(error.message).toBe(`cannot listen on 127.0.0.1:${port}: EADDRINUSE (the port is already in use)`)
    }).pipe(noHang(HANG_LIMIT, "the second serve")))

  it.live("EADDRNOTAVAIL: listen on an address that is not this machine's (TEST-NET-1, RFC 5737)", () =>
    Effect.gen(function*() {
      const error = typedError(yield* Effect.exit(Effect.scoped(listen({ host: "192.0.2.1", port: 0 }))), "listen")
      expect(error).toMatchObject({ _tag: "ListenFailed", host: "192.0.2.1", port: 0, code: "EADDRNOTAVAIL" })
      expect(error.message).toContain("192.0.2.1:0")
    }).pipe(noHang(HANG_LIMIT, "the listen")))
})

describe("ConnectionClosed", () => {
  it.live("Cut: a connection cut during the handshake keeps the socket's error as its cause", () =>
    Effect.gen(function*() {
      const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
      const raw = yield* rawPeer(serverSocket)
      const client = yield* ClientSession.session().pipe(
        Effect.provideService(Socket.Socket, clientSocket),
        Effect.provide(NodeCrypto.layer),
        Effect.exit,
        Effect.fork
      )
      yield* raw.waitForFrames(1)
      yield* MemorySocket.cut(serverSocket)
      const error = typedError(yield* Fiber.join(client), "client")
      expect(error).toMatchObject({ _tag: "ConnectionClosed", reason: "Cut" })
      expect(error).toHaveProperty("cause._tag", "SocketError")
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the client handshake")))
})

// AuthFailed, EncryptionMismatch, UnexpectedPacket and ConnectionClosed: every reason is already
// provoked, with tag and reason, in test/handshake.test.ts, test/session.test.ts and
// test/channel.test.ts (see the header).
