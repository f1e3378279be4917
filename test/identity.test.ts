/**
 * Server identity keys through the public API (PROTOCOL.md §3.7, §4.1): pinning, a relay over real
 * TCP that terminates both handshakes with a key of its own, the capability table, and a relay that
 * strips capability bits.
 */
import { NodeSocketServer } from "@effect/platform-node"
import * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option } from "effect"
import { generateKeyPairSync, sign } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  connectScoped,
  generateIdentityKey,
  type IdentityKey,
  NodeCrypto,
  Packet,
  PacketType,
  serve,
  ServerSession,
  type Session
} from "../src/index.js"
import { memory, noHang, runPair, succeeded, typedError } from "./support/pair.js"
import { startServer } from "./support/sessions.js"
import { failOnUnhandledRejections } from "./support/unhandled.js"
import { ClientSession, type HandshakeOptions } from "../src/index.js"
import { MemorySocket } from "../src/testing.js"
import { AlertCode, MessageType } from "../src/wire/Messages.js"
import { fakeServer } from "./support/fakeServer.js"
import { concatBytes, rewriteByteAt } from "./support/wire.js"

/** A client handshake over a given socket, its exit kept for the test to inspect. */
const connectOver = (socket: Socket.Socket, options: HandshakeOptions) =>
  ClientSession.session(options).pipe(Effect.provideService(Socket.Socket, socket), Effect.exit)

failOnUnhandledRejections()

const HANG_LIMIT = "10 seconds"
const PASSWORD = "correct horse battery staple"
/** The capability byte of a hello frame: header[5], magic[3], version, policy, capabilities (PROTOCOL.md §3.1, §3.2). */
const HELLO_CAPABILITIES = 5 + 5

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A real server on loopback that answers every request with `real:` and the request's text. */
const realServer = (options: { readonly identity?: IdentityKey; readonly password?: string }) =>
  startServer({ host: "127.0.0.1", ...options }, (session) =>
    session.serve((request) =>
      Effect.succeed(
        new Packet({ id: request.id, type: PacketType.RESPONSE, payload: encoder.encode(`real:${decoder.decode(request.payload)}`) })
      )
    ))

/**
 * A man in the middle over TCP that terminates both handshakes: toward the client it is a cvg server
 * with its own identity key (and a password it guessed, if any), toward the real server a cvg client,
 * and it relays requests between the two sessions, reading them on the way. `downstream` is how its
 * handshake with the client ended.
 */
const terminatingRelay = (options: { readonly identity: IdentityKey; readonly targetPort: number; readonly password?: string }) =>
  Effect.gen(function*() {
    const listener = yield* NodeSocketServer.make({ port: 0, host: "127.0.0.1" })
    const downstream = yield* Deferred.make<Exit.Exit<Session, unknown>>()
    const relayOne = (socket: Socket.Socket) =>
      Effect.gen(function*() {
        const toClient = yield* ServerSession.session({ identity: options.identity, password: options.password }).pipe(
          Effect.provideService(Socket.Socket, socket),
          Effect.provide(NodeCrypto.layer),
          Effect.exit
        )
        yield* Deferred.succeed(downstream, toClient)
        if (Exit.isFailure(toClient)) return
        const toServer = yield* connectScoped({ host: "127.0.0.1", port: options.targetPort, password: options.password })
        yield* toClient.value.serve((request) => toServer.request(request))
      }).pipe(Effect.scoped, Effect.ignore)
    yield* listener.run(relayOne).pipe(Effect.forkScoped)
    const port = listener.address._tag === "TcpAddress" ? listener.address.port : 0
    return { port, downstream: Effect.flatten(Deferred.await(downstream)).pipe(Effect.exit) }
  })

const ask = (session: Session, text: string) =>
  Effect.map(session.request(new Packet({ id: 1, type: PacketType.COMMAND, payload: encoder.encode(text) })), (reply) =>
    decoder.decode(reply.payload))

describe("pinning a server key (PROTOCOL.md §3.7)", () => {
  it.scopedLive("over TCP, the pinned key succeeds, and info says which key was proven and why it is trusted", () =>
    Effect.gen(function*() {
      const identity = yield* generateIdentityKey
      const { port } = yield* realServer({ identity, password: PASSWORD })
      const client = yield* connectScoped({ host: "127.0.0.1", port, password: PASSWORD, serverKey: identity.fingerprint })
      expect(yield* ask(client, "hello")).toBe("real:hello")
      expect(client.info).toMatchObject({
        encrypted: true,
        passwordAuthenticated: true,
        serverKey: Option.some({ fingerprint: identity.fingerprint, trust: "Pinned" })
      })
      // Upper-case hex names the same key.
      const upper = yield* connectScoped({ host: "127.0.0.1", port, password: PASSWORD, serverKey: identity.fingerprint.toUpperCase().replace("SHA256", "sha256") })
      expect(upper.info.serverKey).toEqual(Option.some({ fingerprint: identity.fingerprint, trust: "Pinned" }))
    }).pipe(noHang(HANG_LIMIT, "the sessions")))

  it.scopedLive("a client that pins nothing still learns the server's fingerprint, marked Unverified; the server sees its own", () =>
    Effect.gen(function*() {
      const identity = yield* generateIdentityKey
      const { client, server } = yield* runPair(memory(), {}, { identity })
      expect(succeeded(client, "client").info.serverKey).toEqual(Option.some({ fingerprint: identity.fingerprint, trust: "Unverified" }))
      expect(succeeded(server, "server").info.serverKey).toEqual(Option.some({ fingerprint: identity.fingerprint, trust: "Own" }))
      expect(succeeded(client, "client").info.passwordAuthenticated).toBe(false)
    }).pipe(noHang(HANG_LIMIT, "the handshake")))

  it.scopedLive("in plaintext mode too: SERVER_IDENTITY travels tagged, and info says the records are readable", () =>
    Effect.gen(function*() {
      const identity = yield* generateIdentityKey
      const options = { encryption: "disabled", password: PASSWORD } as const
      const { client, server } = yield* runPair(memory(), { ...options, serverKey: identity.fingerprint }, { ...options, identity })
      expect(succeeded(client, "client").info).toMatchObject({
        encrypted: false,
        passwordAuthenticated: true,
        serverKey: Option.some({ fingerprint: identity.fingerprint, trust: "Pinned" })
      })
      expect(succeeded(server, "server").info.passwordAuthenticated).toBe(true)
    }).pipe(noHang(HANG_LIMIT, "the handshake")))

  for (const password of [undefined, PASSWORD]) {
    const withPassword = password === undefined ? "without a password" : "with a password"
    it.scopedLive(`over TCP, ${withPassword}: a relay that terminates both handshakes with its own key fails a pinning client with ServerKeyMismatch`, () =>
      Effect.gen(function*() {
        const real = yield* generateIdentityKey
        const impostor = yield* generateIdentityKey
        const { port } = yield* realServer({ identity: real, ...(password === undefined ? {} : { password }) })
        // The relay does not know the password; it guesses one.
        const relay = yield* terminatingRelay({
          identity: impostor,
          targetPort: port,
          ...(password === undefined ? {} : { password: "a guess" })
        })
        const pinned = yield* Effect.exit(
          connectScoped({ host: "127.0.0.1", port: relay.port, serverKey: real.fingerprint, ...(password === undefined ? {} : { password }) })
        )
        expect(typedError(pinned, "client")).toMatchObject({
          _tag: "ServerKeyMismatch",
          reason: "Pinned",
          expected: real.fingerprint,
          actual: impostor.fingerprint
        })
        // The relay hears why (ALERT SERVER_KEY_REJECTED, §6), and never got as far as any password proof.
        expect(typedError(yield* relay.downstream, "relay")).toMatchObject({ _tag: "AuthFailed", reason: "ServerKeyRejected", source: "Peer" })
      }).pipe(noHang(HANG_LIMIT, "the relay")))
  }

  it.scopedLive("over TCP, the same relay reads everything of a client that pins nothing: what pinning prevents", () =>
    Effect.gen(function*() {
      const real = yield* generateIdentityKey
      const impostor = yield* generateIdentityKey
      const { port } = yield* realServer({ identity: real })
      const relay = yield* terminatingRelay({ identity: impostor, targetPort: port })
      const client = yield* connectScoped({ host: "127.0.0.1", port: relay.port })
      expect(yield* ask(client, "secret")).toBe("real:secret")
      expect(client.info.serverKey).toEqual(Option.some({ fingerprint: impostor.fingerprint, trust: "Unverified" }))
    }).pipe(noHang(HANG_LIMIT, "the relay")))
})

describe("trust on first use with a known-hosts file (PROTOCOL.md §3.7)", () => {
  const tempFile = Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), "cvg-known-hosts-"))
      return { dir, path: join(dir, "known_hosts") }
    }),
    ({ dir }) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

  it.scopedLive("over TCP: the first connection learns the key, the next one knows it, a changed key is refused", () =>
    Effect.gen(function*() {
      const { path } = yield* tempFile
      const first = yield* generateIdentityKey
      const { port } = yield* realServer({ identity: first })
      const learn = yield* connectScoped({ host: "127.0.0.1", port, knownHosts: path })
      expect(learn.info.serverKey).toEqual(Option.some({ fingerprint: first.fingerprint, trust: "FirstUse" }))
      expect(readFileSync(path, "utf8")).toBe(`127.0.0.1:${port} ${first.fingerprint}\n`)
      const again = yield* connectScoped({ host: "127.0.0.1", port, knownHosts: path })
      expect(again.info.serverKey).toEqual(Option.some({ fingerprint: first.fingerprint, trust: "KnownHost" }))

      // The same address now answers with another key: a relay, or a server that lost its key.
      const impostor = yield* generateIdentityKey
      const relay = yield* terminatingRelay({ identity: impostor, targetPort: port })
      writeFileSync(path, `127.0.0.1:${relay.port} ${first.fingerprint}\n`, { flag: "a" })
      const refused = yield* Effect.exit(connectScoped({ host: "127.0.0.1", port: relay.port, knownHosts: path }))
      expect(typedError(refused, "client")).toMatchObject({
        _tag: "ServerKeyMismatch",
        reason: "KnownHost",
        expected: first.fingerprint,
        actual: impostor.fingerprint
      })
      expect(typedError(yield* relay.downstream, "relay")).toMatchObject({ _tag: "AuthFailed", reason: "ServerKeyRejected", source: "Peer" })
      // Nothing was learned from the refused connection.
      expect(readFileSync(path, "utf8").split("\n").filter((line) => line !== "")).toHaveLength(2)
    }).pipe(noHang(HANG_LIMIT, "the sessions")))

  it.scopedLive("a client keeping known hosts requires a server key: an anonymous server is a CapabilityMismatch, not a first use", () =>
    Effect.gen(function*() {
      const { path } = yield* tempFile
      const { client, server } = yield* runPair(memory(), { knownHosts: path, peer: "example.org:4000" }, {})
      expect(typedError(client, "client")).toMatchObject({ _tag: "CapabilityMismatch", client: ["RequiresServerKey"], server: [] })
      expect(typedError(server, "server")).toMatchObject({ _tag: "CapabilityMismatch" })
    }).pipe(noHang(HANG_LIMIT, "the handshake")))

  it.scopedLive("an unreadable known-hosts file fails the client with IdentityKeyError before it sends anything", () =>
    Effect.gen(function*() {
      const { path } = yield* tempFile
      writeFileSync(path, "this is not a known-hosts line\n", { mode: 0o600 })
      const { client } = yield* runPair(memory(), { knownHosts: path, peer: "example.org:4000" }, {})
      expect(typedError(client, "client")).toMatchObject({ _tag: "IdentityKeyError", reason: "Format", path })
    }).pipe(noHang(HANG_LIMIT, "the handshake")))

  it.scopedLive("knownHosts without a peer address is InvalidArgument", () =>
    Effect.gen(function*() {
      const { client } = yield* runPair(memory(), { knownHosts: "/nonexistent/known_hosts" }, {})
      expect(typedError(client, "client")).toMatchObject({ _tag: "InvalidArgument", reason: "Option", field: "knownHosts" })
    }).pipe(noHang(HANG_LIMIT, "the handshake")))
})

describe("capabilities (PROTOCOL.md §4.1)", () => {
  it.scopedLive("a client requiring a server key against a server without one: CapabilityMismatch on both sides, naming both", () =>
    Effect.gen(function*() {
      const identity = yield* generateIdentityKey
      const { client, server } = yield* runPair(memory(), { serverKey: identity.fingerprint, password: PASSWORD }, { password: PASSWORD })
      const expected = { _tag: "CapabilityMismatch", client: ["Password", "RequiresServerKey"], server: ["RequiresPassword"] }
      expect(typedError(client, "client")).toMatchObject(expected)
      expect(typedError(server, "server")).toMatchObject(expected)
      expect(typedError(client, "client").message).toBe(
        "capabilities do not agree: client Password, RequiresServerKey; server RequiresPassword"
      )
    }).pipe(noHang(HANG_LIMIT, "the handshake")))

  it.scopedLive("a relay that clears the server's ServerKey bit cannot talk a pinning client down to an anonymous server", () =>
    Effect.gen(function*() {
      const identity = yield* generateIdentityKey
      const strip = rewriteByteAt(HELLO_CAPABILITIES, (b) => b & ~0x02)
      const { client, server } = yield* runPair(
        memory({ serverToClient: { transform: strip } }),
        { serverKey: identity.fingerprint },
        { identity }
      )
      expect(typedError(client, "client")).toMatchObject({ _tag: "CapabilityMismatch", client: ["RequiresServerKey"], server: [] })
      // The server saw an honest client hello and went on; the client's close ends it.
      expect(Exit.isFailure(server)).toBe(true)
    }).pipe(noHang(HANG_LIMIT, "the handshake")))

  it.scopedLive("a relay that clears the client's RequiresServerKey bit is caught by key confirmation: the transcript covers the hellos", () =>
    Effect.gen(function*() {
      const identity = yield* generateIdentityKey
      const strip = rewriteByteAt(HELLO_CAPABILITIES, (b) => b & ~0x02)
      const { client, server } = yield* runPair(
        memory({ clientToServer: { transform: strip } }),
        { serverKey: identity.fingerprint },
        { identity }
      )
      // Each side's keys come from the hellos it saw, so neither can read the other's first sealed frame.
      expect(typedError(client, "client")).toMatchObject({ _tag: "HandshakeError", reason: "KeyConfirmation" })
      expect(typedError(server, "server")).toMatchObject({ _tag: "HandshakeError", reason: "KeyConfirmation" })
    }).pipe(noHang(HANG_LIMIT, "the handshake")))

  it.scopedLive("a reserved capability bit is Malformed", () =>
    Effect.gen(function*() {
      const { server } = yield* runPair(memory({ clientToServer: { transform: rewriteByteAt(HELLO_CAPABILITIES, (b) => b | 0x80) } }), {}, {})
      expect(typedError(server, "server")).toMatchObject({ _tag: "HandshakeError", reason: "Malformed" })
    }).pipe(noHang(HANG_LIMIT, "the handshake")))
})

describe("identity proof (PROTOCOL.md §3.7)", () => {
  it.scopedLive("a SERVER_IDENTITY whose signature does not verify: AuthFailed(ServerKeyRejected), told to the server", () =>
    Effect.gen(function*() {
      // A man in the middle that terminates the client's ECDH (so its records open) and shows the real
      // server's key, which it cannot sign with: the signature is one the real key made over other hellos.
      const real = yield* generateIdentityKey
      const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
      const client = yield* connectOver(clientSocket, { serverKey: real.fingerprint }).pipe(Effect.fork)
      const fake = yield* fakeServer(serverSocket, { serverKey: true })
      const otherHellos = new Uint8Array(sign(null, Buffer.from("cvg-core v4 server identity\u0000other hellos"), real.privateKey))
      yield* fake.sendSealed(MessageType.SERVER_IDENTITY, concatBytes([real.publicKey, otherHellos]))
      expect(typedError(yield* Fiber.join(client), "client")).toMatchObject({ _tag: "AuthFailed", reason: "ServerKeyRejected", source: "Local" })
      // The client's alert is sealed under its handshake keys: ALERT SERVER_KEY_REJECTED (§6).
      const [, alert] = yield* fake.raw.waitForFrames(2)
      const opened: Array<readonly [number, Uint8Array]> = []
      fake.records.read(alert![4]!, alert!.subarray(0, 5), alert!.subarray(5), (type, body) => opened.push([type, body]))
      expect(opened.map(([type, body]) => [type, Array.from(body)])).toEqual([[MessageType.ALERT, [AlertCode.SERVER_KEY_REJECTED]]])
    }).pipe(Effect.provide(NodeCrypto.layer), noHang(HANG_LIMIT, "the handshake")))
})

describe("identity options", () => {
  it.effect("serverKey must be sha256: and 64 hex digits", () =>
    Effect.gen(function*() {
      for (const bad of ["", "sha256:abc", "md5:" + "0".repeat(64), "sha256:" + "g".repeat(64), "0".repeat(64)]) {
        const error = yield* Effect.flip(connectScoped({ port: 1, serverKey: bad }).pipe(Effect.scoped))
        expect(error).toMatchObject({ _tag: "InvalidArgument", reason: "Option", field: "serverKey" })
      }
    }))

  it.effect("identity must be an IdentityKey of an Ed25519 private key whose parts belong together", () =>
    Effect.gen(function*() {
      const a = yield* generateIdentityKey
      const b = yield* generateIdentityKey
      const { privateKey: p521 } = generateKeyPairSync("ec", { namedCurve: "P-521" })
      const bads: ReadonlyArray<unknown> = [
        a.privateKey,
        { ...a, privateKey: p521 },
        { ...a, publicKey: b.publicKey },
        { ...a, fingerprint: b.fingerprint },
        "key"
      ]
      for (const bad of bads) {
        // The wrong type is the point of the test; the options object is checked at run time.
        const error = yield* Effect.flip(serve({ port: 0, identity: bad as IdentityKey }, () => Effect.void))
        expect(error).toMatchObject({ _tag: "InvalidArgument", reason: "Option", field: "identity" })
        // The key itself is never shown.
        expect(error.message).not.toContain("BEGIN")
      }
    }))
})
