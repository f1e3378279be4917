/**
 * The handshake through the public API (`ClientSession.session` / `ServerSession.session`,
 * `serve` / `connectScoped`), on in-memory pairs and over loopback TCP. Issue 3, "Must show":
 * the negotiation matrix, passwords, man in the middle, handshake-time bad input and faults
 * (garbage before the hello, oversized length, a silent peer, the connection cut at every
 * handshake step) and version mismatch. Faults after the handshake and rekey: test/channel.test.ts.
 */
import * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Deferred, Effect, Exit, Fiber, Logger, Option, Redacted, TestClock } from "effect"
import {
  AuthFailed,
  ClientSession,
  connectScoped,
  Crypto,
  type CryptoService,
  EncryptionMismatch,
  type EncryptionPolicy,
  HandshakeError,
  NodeCrypto,
  PeerAlert,
  serve,
  ServerSession
} from "../src/index.js"
import * as MemorySocket from "../src/transport/MemorySocket.js"
import { encodeFrame } from "../src/wire/Frame.js"
import { ClientHello, encodeClientHello, encodeServerHello, MessageType, PROTOCOL_VERSION, ServerHello } from "../src/wire/Messages.js"
import {
  memory,
  noHang,
  type Options,
  roundTrip,
  runPair,
  succeeded,
  tagOf,
  tcp,
  transports,
  typedError,
  TYPED_TAGS
} from "./support/pair.js"
import { makeReusingCrypto, reusingCryptoLayer } from "./support/fastCrypto.js"
import { concatBytes, containsBytes, frameRelay, makeRecorder, rawPeer, rewriteByteAt, splitFrames } from "./support/wire.js"
import { failOnUnhandledRejections } from "./support/unhandled.js"

failOnUnhandledRejections()

const encoder = new TextEncoder()

/** Offsets inside a hello frame (PROTOCOL.md §3): header[5], magic[3], version, policy, ... */
const HELLO_VERSION = 5 + 3
const HELLO_POLICY = 5 + 4
const CLIENT_HELLO_NONCE = 5 + 5
const CLIENT_HELLO_KEY = 5 + 5 + 32
const SERVER_HELLO_FLAG = 5 + 5
const SERVER_HELLO_NONCE = 5 + 6
const SERVER_HELLO_KEY = 5 + 6 + 32
const POLICY_CODE: Record<EncryptionPolicy, number> = { required: 0, preferred: 1, disabled: 2 }

const HANG_LIMIT = "5 seconds"

// ---------------------------------------------------------------------------------------------
// 1. The negotiation matrix (PROTOCOL.md §4.1)

const policies: ReadonlyArray<EncryptionPolicy> = ["required", "preferred", "disabled"]
const table: Record<EncryptionPolicy, Record<EncryptionPolicy, "encrypted" | "plaintext" | "mismatch">> = {
  required: { required: "encrypted", preferred: "encrypted", disabled: "mismatch" },
  preferred: { required: "encrypted", preferred: "encrypted", disabled: "plaintext" },
  disabled: { required: "encrypted", preferred: "plaintext", disabled: "plaintext" }
}

describe("negotiation matrix", () => {
  for (const [transportName, transport] of transports) {
    for (const client of policies) {
      for (const server of policies) {
        const outcome = table[client][server]
        it.live(`${transportName}: client ${client} × server ${server} → ${outcome} on both sides`, () =>
          Effect.gen(function*() {
            const result = yield* runPair(transport(), { encryption: client }, { encryption: server })
            if (outcome === "mismatch") {
              const expected = new EncryptionMismatch({ client, server })
              expect(typedError(result.client, "client")).toEqual(expected)
              expect(typedError(result.server, "server")).toEqual(expected)
              return
            }
            const c = succeeded(result.client, "client")
            const s = succeeded(result.server, "server")
            expect(c.info.encrypted).toBe(outcome === "encrypted")
            expect(s.info.encrypted).toBe(outcome === "encrypted")
            expect([c.info.localPolicy, c.info.peerPolicy]).toEqual([client, server])
            expect([s.info.localPolicy, s.info.peerPolicy]).toEqual([server, client])
            expect(c.info.suite).toBe(s.info.suite)
            expect(c.info.suite.endsWith(outcome === "encrypted" ? "AES-256-GCM" : "AES-256-GMAC")).toBe(true)
            expect(yield* roundTrip(c, s, 7, `${client}/${server}`)).toEqual({
              type: 0xc1,
              id: 7,
              text: `reply:${client}/${server}`
            })
            // An orderly close is seen as such on the other side.
            yield* c.close
            expect(yield* s.closed).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
          }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))
      }
    }
  }

  it.live("the default policy is required on both sides", () =>
    Effect.gen(function*() {
      const result = yield* runPair(memory(), {}, {})
      const c = succeeded(result.client, "client")
      expect(c.info.encrypted).toBe(true)
      expect([c.info.localPolicy, c.info.peerPolicy]).toEqual(["required", "required"])
      const rejected = yield* runPair(memory(), {}, { encryption: "disabled" })
      expect(typedError(rejected.client, "client")).toEqual(new EncryptionMismatch({ client: "required", server: "disabled" }))
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))
})

// ---------------------------------------------------------------------------------------------
// 2. Passwords (PROTOCOL.md §5)

const PASSWORD = "correct horse battery staple"

describe("password", () => {
  for (const [transportName, transport] of transports) {
    it.live(`${transportName}: the right password authenticates both sides`, () =>
      Effect.gen(function*() {
        const result = yield* runPair(transport(), { password: PASSWORD }, { password: PASSWORD })
        const c = succeeded(result.client, "client")
        const s = succeeded(result.server, "server")
        expect(c.info.authenticated).toBe(true)
        expect(s.info.authenticated).toBe(true)
        expect((yield* roundTrip(c, s, 1, "in")).text).toBe("reply:in")
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))

    it.live(`${transportName}: a wrong password is AuthFailed(WrongPassword) on both sides`, () =>
      Effect.gen(function*() {
        const result = yield* runPair(transport(), { password: "wrong" }, { password: PASSWORD })
        // The server finds the proof wrong; the client learns it from the server's alert.
        expect(typedError(result.client, "client")).toEqual(new AuthFailed({ reason: "WrongPassword", source: "Peer" }))
        expect(typedError(result.server, "server")).toEqual(new AuthFailed({ reason: "WrongPassword", source: "Local" }))
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))

    it.live(`${transportName}: a missing password is AuthFailed(MissingPassword) on both sides`, () =>
      Effect.gen(function*() {
        const result = yield* runPair(transport(), {}, { password: PASSWORD })
        expect(typedError(result.client, "client")).toEqual(new AuthFailed({ reason: "MissingPassword", source: "Local" }))
        expect(typedError(result.server, "server")).toEqual(new AuthFailed({ reason: "MissingPassword", source: "Peer" }))
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))

    it.live(`${transportName}: a server without the password is AuthFailed(ServerUnproven) on the client`, () =>
      Effect.gen(function*() {
        const result = yield* runPair(transport(), { password: PASSWORD }, {})
        expect(typedError(result.client, "client")).toEqual(new AuthFailed({ reason: "ServerUnproven", source: "Local" }))
        expect(typedError(result.server, "server")).toEqual(new AuthFailed({ reason: "ServerUnproven", source: "Peer" }))
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))
  }

  it.live("passwords given as bytes or Redacted are the same password", () =>
    Effect.gen(function*() {
      const asBytes = yield* runPair(memory(), { password: encoder.encode(PASSWORD) }, { password: Redacted.make(PASSWORD) })
      expect(succeeded(asBytes.client, "client").info.authenticated).toBe(true)
      const redactedBytes = yield* runPair(memory(), { password: Redacted.make(encoder.encode(PASSWORD)) }, { password: PASSWORD })
      expect(succeeded(redactedBytes.server, "server").info.authenticated).toBe(true)
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))

  for (const [mode, policy] of [["encrypted", "required"], ["plaintext", "disabled"]] as const) {
    it.live(`${mode} mode: captured traffic never contains the password`, () =>
      Effect.gen(function*() {
        const password = encoder.encode(PASSWORD)
        // A successful conversation, then a failed attempt with a wrong password.
        const good = makeRecorder()
        const ok = yield* runPair(
          memory({ clientToServer: { tap: good.tap("C->S") }, serverToClient: { tap: good.tap("S->C") } }),
          { encryption: policy, password: PASSWORD },
          { encryption: policy, password: PASSWORD }
        )
        const c = succeeded(ok.client, "client")
        const s = succeeded(ok.server, "server")
        expect(c.info.encrypted).toBe(mode === "encrypted")
        yield* roundTrip(c, s, 3, "payload that is not the password")
        yield* c.close
        yield* s.closed
        const bad = makeRecorder()
        const failed = yield* runPair(
          memory({ clientToServer: { tap: bad.tap("C->S") }, serverToClient: { tap: bad.tap("S->C") } }),
          { encryption: policy, password: "not the password" },
          { encryption: policy, password: PASSWORD }
        )
        typedError(failed.client, "client")
        for (const recorder of [good, bad]) {
          for (const direction of ["C->S", "S->C"] as const) {
            const stream = recorder.stream(direction)
            expect(stream.length).toBeGreaterThan(150)
            expect(containsBytes(stream, password), `${direction} carries the password`).toBe(false)
          }
        }
        // The search does find what is there: the canary shows the check can fail.
        expect(containsBytes(good.stream("C->S"), encoder.encode("payload that is not"))).toBe(mode === "plaintext")
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the conversation")))
  }
})

describe("password failures through serve are logged", () => {
  const serveAndConnect = (clientPassword: string | undefined) =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const logger = Logger.make(({ cause, message }) => {
        const parts = Array.isArray(message) ? message : [message]
        logs.push([...parts.map(String), Cause.isEmpty(cause) ? "" : Cause.pretty(cause)].join(" "))
      })
      const port = yield* Deferred.make<number>()
      yield* serve(
        { port: 0, password: PASSWORD, onListen: (address) => Deferred.succeed(port, address.port) },
        () => Effect.never
      ).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Effect.forkScoped)
      const error = yield* connectScoped({
        port: yield* Deferred.await(port),
        ...(clientPassword === undefined ? {} : { password: clientPassword })
      }).pipe(Effect.flip)
      // The server logs once its side of the handshake has failed.
      const logged = yield* Effect.gen(function*() {
        while (!logs.some((line) => line.includes("AuthFailed"))) yield* Effect.sleep("10 millis")
        return logs
      }).pipe(noHang("5 seconds", "the server's log"))
      return { error, logs: logged }
    }).pipe(Effect.scoped)

  it.live("wrong password: AuthFailed on the client, a logged AuthFailed on the server", () =>
    Effect.gen(function*() {
      const { error, logs } = yield* serveAndConnect("wrong password")
      expect(error).toEqual(new AuthFailed({ reason: "WrongPassword", source: "Peer" }))
      expect(error.message).toBe("authentication failed: WrongPassword (reported by the peer)")
      const line = logs.find((l) => l.includes("AuthFailed"))
      expect(line).toContain("WrongPassword")
      // Neither password shows up in the logs.
      expect(logs.join("\n")).not.toContain(PASSWORD)
      expect(logs.join("\n")).not.toContain("wrong password")
    }))

  it.live("missing password: AuthFailed on the client, a logged AuthFailed on the server", () =>
    Effect.gen(function*() {
      const { error, logs } = yield* serveAndConnect(undefined)
      expect(error).toEqual(new AuthFailed({ reason: "MissingPassword", source: "Local" }))
      expect(logs.find((l) => l.includes("AuthFailed"))).toContain("MissingPassword (reported by the peer)")
      expect(logs.join("\n")).not.toContain(PASSWORD)
    }))
})

// ---------------------------------------------------------------------------------------------
// 3. Man in the middle (PROTOCOL.md §3.3–3.4, §4.1)

/** Replaces the 133 bytes of the public key at `offset` of the first frame with another valid key. */
const substituteKey = (offset: number, key: Uint8Array) =>
  frameRelay((frame, index) => {
    if (index !== 0) return [frame]
    const out = Uint8Array.from(frame)
    out.set(key, offset)
    return [out]
  })

const tagAndReason = (error: unknown) =>
  [tagOf(error), typeof error === "object" && error !== null && "reason" in error ? error.reason : undefined]

const expectBothFailTyped = (
  result: { readonly client: Exit.Exit<unknown, unknown>; readonly server: Exit.Exit<unknown, unknown> }
) => {
  const client = typedError(result.client, "client")
  const server = typedError(result.server, "server")
  expect(TYPED_TAGS.has(tagOf(client)), `client: ${String(client)}`).toBe(true)
  expect(TYPED_TAGS.has(tagOf(server)), `server: ${String(server)}`).toBe(true)
  return { client, server }
}

describe("man in the middle", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly client: Options
    readonly server: Options
    readonly toServer?: (chunk: Uint8Array) => Uint8Array
    readonly toClient?: (chunk: Uint8Array) => Uint8Array
    readonly clientTag?: string
    readonly serverTag?: string
  }> = [
    {
      name: "ClientHello policy byte (required → preferred), encrypted",
      client: { encryption: "required" },
      server: { encryption: "required" },
      toServer: rewriteByteAt(HELLO_POLICY, () => POLICY_CODE.preferred)
    },
    {
      name: "ClientHello policy byte (preferred → disabled), plaintext: key confirmation",
      client: { encryption: "preferred" },
      server: { encryption: "disabled" },
      toServer: rewriteByteAt(HELLO_POLICY, () => POLICY_CODE.disabled),
      // The client finds ServerFinished's tag wrong; its KEY_CONFIRMATION alert is tagged under its
      // keys, so the server cannot verify it either and finds the same failure (§3.3, §4.4).
      clientTag: "HandshakeError",
      serverTag: "HandshakeError"
    },
    {
      name: "ServerHello policy byte: downgrade preferred → disabled",
      client: { encryption: "preferred" },
      server: { encryption: "preferred" },
      toClient: rewriteByteAt(HELLO_POLICY, () => POLICY_CODE.disabled)
    },
    {
      name: "ServerHello policy byte: disabled → preferred (upgrade attempt)",
      client: { encryption: "preferred" },
      server: { encryption: "disabled" },
      toClient: rewriteByteAt(HELLO_POLICY, () => POLICY_CODE.preferred)
    },
    {
      name: "ClientHello nonce byte, encrypted",
      client: {},
      server: {},
      toServer: rewriteByteAt(CLIENT_HELLO_NONCE + 7, (b) => b ^ 0x80)
    },
    {
      name: "ClientHello nonce byte, plaintext",
      client: { encryption: "disabled" },
      server: { encryption: "disabled" },
      toServer: rewriteByteAt(CLIENT_HELLO_NONCE, (b) => b ^ 0x01),
      clientTag: "HandshakeError",
      serverTag: "HandshakeError"
    },
    {
      name: "ServerHello nonce byte, encrypted with password",
      client: { password: PASSWORD },
      server: { password: PASSWORD },
      toClient: rewriteByteAt(SERVER_HELLO_NONCE + 31, (b) => b ^ 0x10)
    },
    {
      name: "ServerHello password flag cleared",
      client: { password: PASSWORD },
      server: { password: PASSWORD },
      toClient: rewriteByteAt(SERVER_HELLO_FLAG, () => 0)
    },
    {
      name: "ServerHello password flag cleared, plaintext, client without password",
      client: { encryption: "disabled" },
      server: { encryption: "disabled", password: PASSWORD },
      toClient: rewriteByteAt(SERVER_HELLO_FLAG, () => 0)
    },
    {
      name: "ServerHello version byte",
      client: {},
      server: {},
      toClient: rewriteByteAt(HELLO_VERSION, () => 7),
      clientTag: "HandshakeError"
    },
    {
      name: "a byte of the ClientHello's public key (invalid point)",
      client: {},
      server: {},
      toServer: rewriteByteAt(CLIENT_HELLO_KEY + 40, (b) => b ^ 0x01),
      serverTag: "HandshakeError"
    }
  ]

  for (const c of cases) {
    it.live(`rewriting the ${c.name} fails both sides with a typed error`, () =>
      Effect.gen(function*() {
        const result = yield* runPair(
          memory({
            clientToServer: c.toServer === undefined ? undefined : { transform: c.toServer },
            serverToClient: c.toClient === undefined ? undefined : { transform: c.toClient }
          }),
          c.client,
          c.server
        )
        const { client, server } = expectBothFailTyped(result)
        if (c.clientTag !== undefined) expect(tagOf(client)).toBe(c.clientTag)
        if (c.serverTag !== undefined) expect(tagOf(server)).toBe(c.serverTag)
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))
  }

  for (const [mode, policy] of [["encrypted", "required"], ["plaintext", "disabled"]] as const) {
    for (const target of ["ClientHello", "ServerHello"] as const) {
      it.live(`${mode}: substituting the ${target}'s public key with another valid P-521 key fails both sides`, () =>
        Effect.gen(function*() {
          const crypto = yield* Crypto
          const attacker = yield* crypto.generateKeyPair
          const relay = substituteKey(target === "ClientHello" ? CLIENT_HELLO_KEY : SERVER_HELLO_KEY, attacker.publicKey)
          const result = yield* runPair(
            memory(target === "ClientHello" ? { clientToServer: { transform: relay } } : { serverToClient: { transform: relay } }),
            { encryption: policy, password: PASSWORD },
            { encryption: policy, password: PASSWORD }
          )
          const { client, server } = expectBothFailTyped(result)
          // Neither side may think the password was proven to an attacker.
          expect(tagOf(client)).not.toBe("AuthFailed")
          if (mode === "plaintext") {
            // Different keys: the client cannot verify ServerFinished's tag, and its alert, tagged under
            // its own keys, does not verify at the server either, which finds the same failure (§3.3).
            // Compared by fields: the error's cause holds its span, which deep equality would walk forever.
            expect(tagAndReason(client)).toEqual(["HandshakeError", "KeyConfirmation"])
            expect(tagAndReason(server)).toEqual(["HandshakeError", "KeyConfirmation"])
          }
        }).pipe(Effect.scoped, Effect.provide(NodeCrypto.layer), noHang(HANG_LIMIT, "the handshake")))
    }
  }
})

// ---------------------------------------------------------------------------------------------
// 4. Version mismatch (PROTOCOL.md §3.1)

const helloKey = Effect.flatMap(Crypto, (crypto) => crypto.generateKeyPair)

describe("version mismatch", () => {
  it.live("a ClientHello of the next version: the server fails HandshakeError(Version) and alerts VERSION", () =>
    Effect.gen(function*() {
      const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
      const client = yield* rawPeer(clientSocket)
      const key = yield* helloKey
      const hello = encodeClientHello(
        new ClientHello({ version: PROTOCOL_VERSION + 1, policy: "required", nonce: new Uint8Array(32), publicKey: key.publicKey })
      )
      const server = yield* ServerSession.session().pipe(
        Effect.provideService(Socket.Socket, serverSocket),
        Effect.exit,
        Effect.fork
      )
      yield* client.write(encodeFrame(MessageType.CLIENT_HELLO, hello))
      expect(typedError(yield* Fiber.join(server), "server")).toMatchObject({ _tag: "HandshakeError", reason: "Version" })
      const [alert] = yield* client.waitForFrames(1)
      expect(Array.from(alert ?? [])).toEqual([0, 0, 0, 1, MessageType.ALERT, 0x01])
      yield* client.ended
    }).pipe(Effect.scoped, Effect.provide(NodeCrypto.layer), noHang(HANG_LIMIT, "the handshake")))

  it.live("a ServerHello of the next version: the client fails HandshakeError(Version) and alerts VERSION", () =>
    Effect.gen(function*() {
      const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
      const fakeServer = yield* rawPeer(serverSocket)
      const client = yield* ClientSession.session().pipe(
        Effect.provideService(Socket.Socket, clientSocket),
        Effect.exit,
        Effect.fork
      )
      const [clientHello] = yield* fakeServer.waitForFrames(1)
      expect(clientHello?.[4]).toBe(MessageType.CLIENT_HELLO)
      expect(clientHello?.[HELLO_VERSION]).toBe(PROTOCOL_VERSION)
      const key = yield* helloKey
      const hello = encodeServerHello(
        new ServerHello({ version: PROTOCOL_VERSION + 1, policy: "required", passwordRequired: false, nonce: new Uint8Array(32), publicKey: key.publicKey })
      )
      yield* fakeServer.write(encodeFrame(MessageType.SERVER_HELLO, hello))
      expect(typedError(yield* Fiber.join(client), "client")).toMatchObject({ _tag: "HandshakeError", reason: "Version" })
      const frames = yield* fakeServer.waitForFrames(2)
      expect(Array.from(frames[1] ?? [])).toEqual([0, 0, 0, 1, MessageType.ALERT, 0x01])
    }).pipe(Effect.scoped, Effect.provide(NodeCrypto.layer), noHang(HANG_LIMIT, "the handshake")))

  it.live("a next-version ServerHello with a different layout is still Version, not Malformed", () =>
    Effect.gen(function*() {
      const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
      const fakeServer = yield* rawPeer(serverSocket)
      const client = yield* ClientSession.session().pipe(Effect.provideService(Socket.Socket, clientSocket), Effect.exit, Effect.fork)
      yield* fakeServer.waitForFrames(1)
      yield* fakeServer.write(encodeFrame(MessageType.SERVER_HELLO, Uint8Array.of(0x43, 0x56, 0x47, PROTOCOL_VERSION + 1, 9, 9, 9)))
      expect(typedError(yield* Fiber.join(client), "client")).toMatchObject({ _tag: "HandshakeError", reason: "Version" })
    }).pipe(Effect.scoped, Effect.provide(NodeCrypto.layer), noHang(HANG_LIMIT, "the handshake")))
})

// ---------------------------------------------------------------------------------------------
// 5. Bad input during the handshake

/** A server handshake against a raw client that writes `bytes`; returns the server's error and what it sent back. */
const serverAgainstRaw = (bytes: Uint8Array, endAfter = false) =>
  Effect.gen(function*() {
    const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
    const raw = yield* rawPeer(clientSocket)
    const server = yield* ServerSession.session().pipe(Effect.provideService(Socket.Socket, serverSocket), Effect.exit, Effect.fork)
    yield* raw.write(bytes)
    if (endAfter) yield* raw.endWrite
    const error = typedError(yield* Fiber.join(server), "server")
    yield* raw.ended
    return { error, reply: splitFrames(raw.received()).frames }
  }).pipe(Effect.scoped, Effect.provide(NodeCrypto.layer), noHang(HANG_LIMIT, "the server handshake"))

/** A client handshake against a raw server that answers the ClientHello with `bytes`. */
const clientAgainstRaw = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
    const raw = yield* rawPeer(serverSocket)
    const client = yield* ClientSession.session().pipe(Effect.provideService(Socket.Socket, clientSocket), Effect.exit, Effect.fork)
    yield* raw.waitForFrames(1)
    yield* raw.write(bytes)
    const error = typedError(yield* Fiber.join(client), "client")
    return { error, reply: splitFrames(raw.received()).frames.slice(1) }
  }).pipe(Effect.scoped, Effect.provide(NodeCrypto.layer), noHang(HANG_LIMIT, "the client handshake"))

const MALFORMED_ALERT = [0, 0, 0, 1, MessageType.ALERT, 0x02]

describe("bad input before and during the hello", () => {
  it.live("an HTTP request to a server: NotCvgPeer, naming the first bytes", () =>
    Effect.gen(function*() {
      const { error, reply } = yield* serverAgainstRaw(encoder.encode("GET / HTTP/1.1\r\nHost: example\r\n\r\n"))
      expect(error).toBeInstanceOf(HandshakeError)
      expect(error).toMatchObject({ reason: "NotCvgPeer", detail: 'not a cvg peer: first bytes "GET / HT"' })
      expect(error.message).toContain("not a cvg peer")
      // The framing layer stops reading at once; an alert is best effort and may not get out.
      expect(reply.every((f) => f[4] === MessageType.ALERT)).toBe(true)
    }))

  it.live("an oversized length prefix to a server: refused before buffering, NotCvgPeer (in hex)", () =>
    Effect.gen(function*() {
      const { error } = yield* serverAgainstRaw(Uint8Array.of(0xff, 0xff, 0xff, 0xff, MessageType.CLIENT_HELLO))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer", detail: "not a cvg peer: first bytes 0xffffffff01" })
    }))

  it.live("a ClientHello, then a second frame over the handshake limit (1 KiB): Malformed (FrameTooLarge)", () =>
    Effect.gen(function*() {
      const hello = encodeClientHello(new ClientHello({ version: PROTOCOL_VERSION, policy: "required", nonce: new Uint8Array(32), publicKey: (yield* helloKey).publicKey }))
      const { error } = yield* serverAgainstRaw(concatBytes([encodeFrame(MessageType.CLIENT_HELLO, hello), Uint8Array.of(0, 0, 4, 1, MessageType.ENCRYPTED)]))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "Malformed" })
      expect((error as HandshakeError).detail).toContain("FrameTooLarge")
    }).pipe(Effect.provide(NodeCrypto.layer)))

  it.live("a small frame of the hello's type without the magic: NotCvgPeer", () =>
    Effect.gen(function*() {
      const { error, reply } = yield* serverAgainstRaw(encodeFrame(MessageType.CLIENT_HELLO, Uint8Array.of(0xde, 0xad, 0xbe, 0xef)))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer" })
      expect(reply.map((f) => Array.from(f))).toEqual([MALFORMED_ALERT])
    }))

  it.live("a frame of another type before the hello: NotCvgPeer", () =>
    Effect.gen(function*() {
      const { error } = yield* serverAgainstRaw(encodeFrame(MessageType.PACKET, Uint8Array.of(0, 0, 0, 1, 0xc0)))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer" })
    }))

  it.live("a ClientHello of the wrong length: Malformed", () =>
    Effect.gen(function*() {
      const { error } = yield* serverAgainstRaw(encodeFrame(MessageType.CLIENT_HELLO, Uint8Array.of(0x43, 0x56, 0x47, PROTOCOL_VERSION, 0)))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "Malformed" })
    }))

  it.live("a truncated hello, then end of stream: Malformed (truncated frame)", () =>
    Effect.gen(function*() {
      const { error } = yield* serverAgainstRaw(Uint8Array.of(0, 0, 0, 171, MessageType.CLIENT_HELLO, 0x43, 0x56), true)
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "Malformed" })
      expect((error as HandshakeError).detail).toContain("truncated")
    }))

  it.live("end of stream before any byte: ConnectionClosed(Cut)", () =>
    Effect.gen(function*() {
      const { error } = yield* serverAgainstRaw(new Uint8Array(0), true)
      expect(error).toMatchObject({ _tag: "ConnectionClosed", reason: "Cut" })
    }))

  it.live("a server writing another protocol's banner to a client (SSH): NotCvgPeer", () =>
    Effect.gen(function*() {
      const { error, reply } = yield* clientAgainstRaw(encoder.encode("SSH-2.0-OpenSSH_9.6\r\n"))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer", detail: 'not a cvg peer: first bytes "SSH-2.0-"' })
      expect(reply.every((f) => f[4] === MessageType.ALERT)).toBe(true)
    }))

  it.live("a server answering with a ClientHello: NotCvgPeer", () =>
    Effect.gen(function*() {
      const { error } = yield* clientAgainstRaw(encodeFrame(MessageType.CLIENT_HELLO, new Uint8Array(171)))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer" })
    }))

  it.live("a server whose first frame is over the handshake limit (a valid length, 2 KiB): NotCvgPeer", () =>
    Effect.gen(function*() {
      const { error } = yield* clientAgainstRaw(encodeFrame(MessageType.SERVER_HELLO, new Uint8Array(2048)))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer" })
    }))

  it.live("a server answering with an invalid public key: HandshakeError", () =>
    Effect.gen(function*() {
      const hello = encodeServerHello(
        new ServerHello({ version: PROTOCOL_VERSION, policy: "required", passwordRequired: false, nonce: new Uint8Array(32), publicKey: new Uint8Array(133).fill(4, 0, 1) })
      )
      const { error, reply } = yield* clientAgainstRaw(encodeFrame(MessageType.SERVER_HELLO, hello))
      expect(error).toMatchObject({ _tag: "HandshakeError", reason: "InvalidPublicKey" })
      expect(reply.map((f) => Array.from(f))).toEqual([MALFORMED_ALERT])
    }))

  for (const direction of ["client → server", "server → client"] as const) {
    it.live(`garbage injected before a real hello (${direction}) fails both real sides with a typed error`, () =>
      Effect.gen(function*() {
        let first = true
        const inject = (chunk: Uint8Array) => {
          if (!first) return chunk
          first = false
          return concatBytes([Uint8Array.of(0, 0, 0, 3, 0x99, 1, 2, 3), chunk])
        }
        const result = yield* runPair(
          memory(direction === "client → server" ? { clientToServer: { transform: inject } } : { serverToClient: { transform: inject } }),
          {},
          {}
        )
        const { client, server } = expectBothFailTyped(result)
        // The side that reads the garbage first sees another protocol; its MALFORMED alert reaches the
        // other side in plaintext: before that side has keys it is the peer's Malformed, after,
        // unauthenticated (§6).
        if (direction === "client → server") {
          expect(server).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer" })
          expect(client).toMatchObject({ _tag: "PeerAlert", reason: "Malformed", phase: "Handshake" })
        } else {
          expect(client).toMatchObject({ _tag: "HandshakeError", reason: "NotCvgPeer" })
          expect(server).toMatchObject({ _tag: "HandshakeError", reason: "Aborted" })
          expect((server as HandshakeError).detail).toContain("unauthenticated plaintext alert MALFORMED")
        }
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))
  }
})

// ---------------------------------------------------------------------------------------------
// 6. A silent peer: the handshake timeout, under TestClock

/** Waits (without advancing time) until the fiber under test has registered a sleep with TestClock. */
const awaitSleeper = Effect.gen(function*() {
  for (let i = 0; i < 10_000; i++) {
    if (Chunk.isNonEmpty(yield* TestClock.sleeps())) return
    yield* Effect.yieldNow()
  }
  return yield* Effect.dieMessage("nothing is waiting on the clock")
})

describe("silent peer (TestClock)", () => {
  it.scoped("a client facing a silent server times out at the configured handshake timeout", () =>
    Effect.gen(function*() {
      const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
      const silent = yield* rawPeer(serverSocket)
      const client = yield* ClientSession.session({ handshakeTimeout: "3 seconds" }).pipe(
        Effect.provideService(Socket.Socket, clientSocket),
        Effect.provide(NodeCrypto.layer),
        Effect.exit,
        Effect.fork
      )
      // The ClientHello went out: the client is now waiting for an answer that never comes.
      yield* silent.waitForFrames(1)
      yield* awaitSleeper
      yield* TestClock.adjust("2999 millis")
      expect(Option.isNone(yield* Fiber.poll(client))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(typedError(yield* Fiber.join(client), "client")).toEqual(new HandshakeError({ reason: "Timeout" }))
    }))

  for (const [what, options, limit] of [
    ["the default hello timeout, 3 seconds", {}, 3000],
    ["the whole handshake timeout (10 seconds) with a longer hello timeout", { helloTimeout: "1 minute" }, 10_000]
  ] as const) {
    it.scoped(`a server facing a silent client times out after ${what}`, () =>
      Effect.gen(function*() {
        const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
        yield* rawPeer(clientSocket)
        const server = yield* ServerSession.session(options).pipe(
          Effect.provideService(Socket.Socket, serverSocket),
          Effect.provide(NodeCrypto.layer),
          Effect.exit,
          Effect.fork
        )
        yield* awaitSleeper
        yield* TestClock.adjust(limit - 1)
        expect(Option.isNone(yield* Fiber.poll(server))).toBe(true)
        yield* TestClock.adjust("1 millis")
        expect(typedError(yield* Fiber.join(server), "server")).toEqual(new HandshakeError({ reason: "Timeout" }))
      }))
  }

  it.scoped("a server that stalls after its hello: the client times out and tells the server with a sealed ALERT TIMEOUT", () =>
    Effect.gen(function*() {
      // A relay that lets the ServerHello through and swallows everything after it; ServerFinished
      // going into it means the server is waiting for ClientFinished.
      const serverWaiting = yield* Deferred.make<void>()
      const [clientSocket, serverSocket] = yield* MemorySocket.makePair({
        serverToClient: {
          transform: frameRelay((frame, index) => {
            if (index === 1) Deferred.unsafeDone(serverWaiting, Exit.void)
            return index === 0 ? [frame] : []
          })
        }
      })
      // The client's ECDH runs in real time: once it is done, the client installs its keys and
      // waits for ServerFinished without another pause, so its alert will be sealed.
      const clientKeys = yield* Deferred.make<void>()
      const node = yield* NodeCrypto.make
      const clientCrypto: CryptoService = {
        ...node,
        deriveSharedSecret: (own, peer) => Effect.zipLeft(node.deriveSharedSecret(own, peer), Deferred.succeed(clientKeys, undefined))
      }
      const client = yield* ClientSession.session({ handshakeTimeout: "1 second" }).pipe(
        Effect.provideService(Socket.Socket, clientSocket),
        Effect.provideService(Crypto, clientCrypto),
        Effect.exit,
        Effect.fork
      )
      const server = yield* ServerSession.session({ handshakeTimeout: "2 seconds" }).pipe(
        Effect.provideService(Socket.Socket, serverSocket),
        Effect.provideService(Crypto, node),
        Effect.exit,
        Effect.fork
      )
      yield* Deferred.await(serverWaiting)
      yield* Deferred.await(clientKeys)
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      // The client's deadline comes first: its own timeout, which the server hears from it.
      yield* TestClock.adjust("1 second")
      expect(typedError(yield* Fiber.join(client), "client")).toEqual(new HandshakeError({ reason: "Timeout" }))
      expect(typedError(yield* Fiber.join(server), "server")).toEqual(new PeerAlert({ reason: "Timeout", phase: "Handshake" }))
    }))
})

// ---------------------------------------------------------------------------------------------
// 7. The connection cut at every handshake step

/** The bytes each direction carries during a complete handshake with these options. */
const handshakeSizes = (client: Options, server: Options) =>
  Effect.gen(function*() {
    const recorder = makeRecorder()
    const result = yield* runPair(
      memory({ clientToServer: { tap: recorder.tap("C->S") }, serverToClient: { tap: recorder.tap("S->C") } }),
      client,
      server
    )
    succeeded(result.client, "client")
    succeeded(result.server, "server")
    return {
      toServer: recorder.framesOf("C->S").map((f) => f.bytes.length),
      toClient: recorder.framesOf("S->C").map((f) => f.bytes.length)
    }
  }).pipe(Effect.scoped)

/**
 * After a cut, each side either fails its handshake with a typed error or (when the cut only hit
 * the last message the other side needed) completes and then sees its session end with a cut,
 * never an orderly close. Nothing may hang or die.
 */
const checkCut = (
  faults: MemorySocket.FaultOptions,
  client: Options,
  server: Options,
  label: string,
  crypto: { readonly client: CryptoService; readonly server: CryptoService }
) =>
  Effect.gen(function*() {
    const result = yield* runPair(memory(faults), client, server, {
      client: reusingCryptoLayer(crypto.client),
      server: reusingCryptoLayer(crypto.server)
    })
    const outcomes: Array<string> = []
    for (const [side, exit] of [["client", result.client], ["server", result.server]] as const) {
      if (Exit.isSuccess(exit)) {
        const end = yield* exit.value.closed
        expect(end._tag === "ConnectionClosed" && end.reason === "Closed", `${label}: ${side} saw an orderly close`).toBe(false)
        expect(TYPED_TAGS.has(end._tag)).toBe(true)
        outcomes.push(`${side} completed, then ${end._tag}`)
      } else {
        const error = typedError(exit, `${label}: ${side}`)
        expect(TYPED_TAGS.has(tagOf(error)), `${label}: ${side} failed with ${String(error)}`).toBe(true)
        outcomes.push(`${side} ${tagOf(error)}`)
      }
    }
    // At least one side must have failed its handshake: a cut inside it cannot go unnoticed by both.
    expect(outcomes.some((o) => !o.includes("completed")), `${label}: ${outcomes.join(", ")}`).toBe(true)
    return outcomes
  }).pipe(Effect.scoped, noHang(HANG_LIMIT, label))

describe("the connection cut at every handshake step", () => {
  for (const [mode, options] of [
    ["encrypted with password", { encryption: "required", password: PASSWORD }],
    ["plaintext with password", { encryption: "disabled", password: PASSWORD }]
  ] as const) {
    it.live(`${mode}: a cut after every byte of the handshake, both directions`, () =>
      Effect.gen(function*() {
        const sizes = yield* handshakeSizes(options, options)
        const total = (frames: ReadonlyArray<number>) => frames.reduce((a, b) => a + b, 0)
        // ClientHello + ClientFinished one way; ServerHello + ServerFinished + ServerAccept the other.
        expect(sizes.toServer.length).toBe(2)
        expect(sizes.toClient.length).toBe(3)
        const cases: Array<readonly [string, MemorySocket.FaultOptions]> = []
        for (let n = 0; n < total(sizes.toServer); n++) cases.push([`C->S cut after ${n}`, { clientToServer: { cutAfter: n } }])
        for (let n = 0; n < total(sizes.toClient); n++) cases.push([`S->C cut after ${n}`, { serverToClient: { cutAfter: n } }])
        const crypto = { client: yield* makeReusingCrypto, server: yield* makeReusingCrypto }
        // One whole handshake first fills both sides' caches: otherwise the first cases that reach
        // the key agreement all pay for P-521 at once, which on a loaded machine outlasts HANG_LIMIT.
        yield* Effect.scoped(Effect.gen(function*() {
          const warmUp = yield* runPair(memory(), options, options, {
            client: reusingCryptoLayer(crypto.client),
            server: reusingCryptoLayer(crypto.server)
          })
          succeeded(warmUp.client, "warm-up client")
          succeeded(warmUp.server, "warm-up server")
        }))
        const outcomes = yield* Effect.forEach(cases, ([label, faults]) => checkCut(faults, options, options, label, crypto), {
          concurrency: 4
        })
        expect(outcomes.length).toBe(total(sizes.toServer) + total(sizes.toClient))
      }), 30_000)
  }

  for (const [transportName] of transports.filter(([name]) => name === "tcp")) {
    it.live(`${transportName}: the server's socket closed after the ClientHello fails the client with a typed error`, () =>
      Effect.gen(function*() {
        const sockets = yield* tcp
        const client = yield* ClientSession.session().pipe(
          Effect.provideService(Socket.Socket, sockets.client),
          Effect.provide(NodeCrypto.layer),
          Effect.exit,
          Effect.fork
        )
        const serverSocket = yield* sockets.server
        yield* Effect.scoped(Effect.gen(function*() {
          const raw = yield* rawPeer(serverSocket)
          yield* raw.waitForFrames(1)
        }))
        const error = typedError(yield* Fiber.join(client), "client")
        expect(TYPED_TAGS.has(tagOf(error)), String(error)).toBe(true)
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the handshake")))
  }
})
