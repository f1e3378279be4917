/**
 * What a relay gets from a captured CPace handshake (PROTOCOL.md §5, issue 12): nothing to test
 * password guesses against offline.
 *
 * The attacker here is stronger than a relay: it captures a whole handshake over TCP in plaintext
 * mode (every byte readable), and it also knows the P-521 shared secret (the server's `Crypto` hands
 * it over), so it holds every key of the handshake that does not involve the password. What it lacks
 * are the password and the two CPace scalars. In version 3 that was enough: the client's proof was
 * `HMAC(HMAC(auth_key, password), label ‖ H2)`, every input known but the password, and the issue
 * cracked "pw" in 0.78 s.
 *
 * Two bounded checks:
 * 1. 100 000 dictionary words, the right one among them: every value the attacker can compute from
 *    a word and what it knows (hashes of the word, MACs of it under each known key, CPace's generator
 *    string hash) is looked up among every 16-byte window of the capture: no hit. The same lookup
 *    finds the public values that are there, so the search itself works.
 * 2. A control first: given the server's secret scalar (which the attacker never has), the same
 *    computation reproduces the captured finished MACs, so the searches are not vacuous.
 * 3. The only password-bound values on the wire are the shares Ya = ya·g(pw), Yb = yb·g(pw) and what
 *    is keyed from ISK. Without ya or yb, the attacker's best test of a word is to run CPace itself
 *    against the captured shares with a scalar of its own: for 200 words, the right one included, the
 *    SERVER_FINISHED MAC that gives never matches the captured one, so the right word looks like any
 *    other. (Each run costs a hash-to-group and two scalar multiplications, hence the bound.)
 */
import { NodeSocketServer } from "@effect/platform-node"
import * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Layer } from "effect"
import { createHash, createHmac } from "node:crypto"
import { connectScoped, Crypto, NodeCrypto, Packet, PacketType, ServerSession } from "../src/index.js"
import { cpaceFinish, cpaceStart, generatorString, lvCat, scalarMultVfy, transcriptIr } from "../src/crypto/CPace.js"
import { CPACE_CI } from "../src/handshake/Pake.js"
import { decodeClientHello, decodeServerHello, helloAssociatedData, MessageType } from "../src/wire/Messages.js"
import { noHang } from "./support/pair.js"
import { tcpRelay } from "./support/raw.js"
import { failOnUnhandledRejections } from "./support/unhandled.js"
import { concatBytes, splitFrames } from "./support/wire.js"

failOnUnhandledRejections()

const WORDS = 100_000
const GROUP_TESTS = 200
/** The attack found "pw" after 73 124 guesses; the password sits at that index here. */
const PASSWORD_INDEX = 73_124
const word = (i: number) => `word-${i.toString().padStart(6, "0")}`
const PASSWORD = word(PASSWORD_INDEX)

const encoder = new TextEncoder()
const sha256 = (data: Uint8Array) => new Uint8Array(createHash("sha256").update(data).digest())
const sha512 = (data: Uint8Array) => new Uint8Array(createHash("sha512").update(data).digest())
const hmac = (key: Uint8Array, data: Uint8Array) => new Uint8Array(createHmac("sha256", key).update(data).digest())
const expand = (prk: Uint8Array, label: string) => hmac(prk, Buffer.concat([Buffer.from(`cvg1 ${label}`), Buffer.of(1)]))
const hex = (data: Uint8Array) => Buffer.from(data).toString("hex")

/**
 * A `Crypto` that tells the test every P-521 shared secret it derives (the attacker's extra
 * knowledge) and every random draw (for the control only: the CPace scalar is one of them).
 */
const leakingCrypto = (leak: (secret: Uint8Array) => void, draws: (bytes: Uint8Array) => void): Layer.Layer<Crypto> =>
  Layer.effect(
    Crypto,
    Effect.map(NodeCrypto.make, (node) => ({
      ...node,
      deriveSharedSecret: (own, peer) => Effect.tap(node.deriveSharedSecret(own, peer), (secret) => Effect.sync(() => leak(secret))),
      randomBytes: (length) => Effect.tap(node.randomBytes(length), (bytes) => Effect.sync(() => draws(bytes)))
    }))
  )

/** A tagged plaintext frame's body (PROTOCOL.md §4.4): between the 5-byte header and the 16-byte tag. */
const taggedBody = (frame: Uint8Array) => frame.subarray(5, frame.length - 16)

/** The frame as the transcript holds it (§4.2): `length ‖ type ‖ body`, without the tag. */
const plainForm = (frame: Uint8Array) => {
  const body = taggedBody(frame)
  const out = new Uint8Array(5 + body.length)
  new DataView(out.buffer).setUint32(0, body.length)
  out[4] = frame[4]!
  out.set(body, 5)
  return out
}

/** One plaintext CPace handshake and a request over TCP through a recording relay. */
const capture = Effect.gen(function*() {
  const secrets: Array<Uint8Array> = []
  const serverDraws: Array<Uint8Array> = []
  const listener = yield* NodeSocketServer.make({ port: 0, host: "127.0.0.1" })
  const served = yield* Deferred.make<void>()
  yield* listener.run((socket) =>
    Effect.gen(function*() {
      const session = yield* ServerSession.session({ encryption: "disabled", password: PASSWORD }).pipe(
        Effect.provideService(Socket.Socket, socket),
        Effect.provide(leakingCrypto((secret) => secrets.push(secret), (bytes) => serverDraws.push(Uint8Array.from(bytes))))
      )
      yield* session.respond({}, (request) => Effect.succeed(new Packet({ id: request.id, type: PacketType.RESPONSE, payload: request.payload })))
      yield* Deferred.succeed(served, undefined)
      yield* Effect.never
    }).pipe(Effect.scoped, Effect.ignore)
  ).pipe(Effect.forkScoped)
  const port = listener.address._tag === "TcpAddress" ? listener.address.port : 0
  const toServer: Array<Uint8Array> = []
  const toClient: Array<Uint8Array> = []
  const relay = yield* tcpRelay(port, {
    toServer: (chunk) => (toServer.push(Uint8Array.from(chunk)), chunk),
    toClient: (chunk) => (toClient.push(Uint8Array.from(chunk)), chunk)
  })
  const client = yield* connectScoped({ host: "127.0.0.1", port: relay, encryption: "disabled", password: PASSWORD })
  yield* client.request(new Packet({ id: 1, type: PacketType.COMMAND, payload: encoder.encode("hello") }))
  yield* Deferred.await(served)
  expect(client.info.passwordAuthenticated).toBe(true)
  return {
    c2s: splitFrames(concatBytes(toServer)).frames,
    s2c: splitFrames(concatBytes(toClient)).frames,
    shared: secrets[0]!,
    serverDraws
  }
})

describe("a captured CPace handshake gives nothing to test guesses against (PROTOCOL.md §5)", () => {
  it.scopedLive(`${WORDS} dictionary words, the right one included: no captured value is a function of a word and public data`, () =>
    Effect.gen(function*() {
      const { c2s, s2c, shared, serverDraws } = yield* capture
      const [clientHelloFrame, clientFinishedFrame] = c2s
      const [serverHelloFrame, serverFinishedFrame] = s2c
      expect(clientHelloFrame![4]).toBe(MessageType.CLIENT_HELLO)
      expect(serverFinishedFrame![4]).toBe(MessageType.SERVER_FINISHED)
      expect(clientFinishedFrame![4]).toBe(MessageType.CLIENT_FINISHED)
      const clientBody = clientHelloFrame!.subarray(5)
      const serverBody = serverHelloFrame!.subarray(5)
      const clientHello = Either.getOrThrow(decodeClientHello(clientBody))
      const serverHello = Either.getOrThrow(decodeServerHello(serverBody, true))
      const ya = clientHello.cpaceShare!
      const yb = serverHello.cpaceShare!
      const sid = clientHello.nonce

      // Every key the attacker has without the password (PROTOCOL.md §4.2, first stage).
      const h1 = sha256(concatBytes([clientHelloFrame!, serverHelloFrame!]))
      const prk = hmac(h1, shared)
      const derived = expand(prk, "derived")
      const knownKeys = [h1, prk, derived, expand(prk, "c2s handshake"), expand(prk, "s2c handshake"), shared]

      // Every 16-byte window of everything captured, both ways.
      const windows = new Set<string>()
      for (const frame of [...c2s, ...s2c]) {
        for (let at = 0; at + 16 <= frame.length; at++) windows.add(hex(frame.subarray(at, at + 16)))
      }
      const found = (value: Uint8Array) => windows.has(hex(value.subarray(0, 16)))
      // The lookup works: public values are found where they are.
      expect(found(sid)).toBe(true)
      expect(found(ya)).toBe(true)
      expect(found(taggedBody(serverFinishedFrame!))).toBe(true)

      const v3ProofLabel = concatBytes([encoder.encode("cvg1 client proof"), h1])
      const hits: Array<string> = []
      for (let i = 0; i < WORDS; i++) {
        const w = encoder.encode(word(i))
        const candidates = [
          sha256(w),
          sha512(w),
          sha512(generatorString(w, CPACE_CI, sid)),
          ...knownKeys.map((key) => hmac(key, w)),
          // Version 3's proof, as an attacker would still try it with the first-stage key it has.
          hmac(hmac(prk, w), v3ProofLabel)
        ]
        for (const value of candidates) if (found(value)) hits.push(word(i))
      }
      expect(hits).toEqual([])

      // The attacker's best test of a word: CPace with a scalar of its own against the captured
      // shares, then the key schedule's second stage and SERVER_FINISHED's MAC (§4.2, §3.3). It
      // recovers no word, not even the right one: K needs ya or yb, which never leave the peers.
      const adA = helloAssociatedData(clientBody)
      const adB = helloAssociatedData(serverBody)
      const capturedMac = hex(taggedBody(serverFinishedFrame!))
      const capturedClientMac = hex(taggedBody(clientFinishedFrame!))
      const h2 = sha256(concatBytes([clientHelloFrame!, serverHelloFrame!, plainForm(serverFinishedFrame!)]))
      const finishedMacs = (isk: Uint8Array) => {
        const master = hmac(derived, isk)
        return [hex(hmac(expand(master, "s finished"), h1)), hex(hmac(expand(master, "c finished"), h2))] as const
      }

      // Control: with the server's secret scalar yb (one of its random draws, which only this control
      // may see), the same computation does give the captured MACs, so the search below is sound.
      const controlHits = serverDraws.filter((drawn) => {
        if (drawn.length !== 32) return false
        const bytes = Uint8Array.from(drawn)
        bytes[31] = bytes[31]! & 0x0f
        let scalar = 0n
        for (let i = 31; i >= 0; i--) scalar = (scalar << 8n) | BigInt(bytes[i]!)
        if (scalar === 0n) return false
        const k = scalarMultVfy(scalar, ya)
        const isk = sha512(concatBytes([lvCat(encoder.encode("CPaceRistretto255_ISK"), sid, k), transcriptIr(ya, adA, yb, adB)]))
        const [serverMac, clientMac] = finishedMacs(isk)
        return serverMac === capturedMac && clientMac === capturedClientMac
      })
      expect(controlHits).toHaveLength(1)

      const recognised: Array<string> = []
      const start = PASSWORD_INDEX - Math.floor(GROUP_TESTS / 2)
      for (let i = start; i < start + GROUP_TESTS; i++) {
        const w = encoder.encode(word(i))
        // As the responder, against the client's share; then as the initiator, against the server's.
        const asServer = cpaceStart({ prs: w, ci: CPACE_CI, sid, ad: adB }, "responder")
        const asClient = cpaceStart({ prs: w, ci: CPACE_CI, sid, ad: adA }, "initiator")
        for (const isk of [cpaceFinish(asServer, ya, adA), cpaceFinish(asClient, yb, adB)]) {
          const [serverMac, clientMac] = finishedMacs(Either.getOrThrow(isk))
          if (serverMac === capturedMac || clientMac === capturedClientMac) recognised.push(word(i))
        }
      }
      expect(recognised).toEqual([])
    }).pipe(noHang("120 seconds", "the dictionary")), 180_000)

  it.scopedLive("the same password twice gives shares that have nothing in common: each is masked by a fresh scalar", () =>
    Effect.gen(function*() {
      const first = yield* capture
      const second = yield* capture
      const share = (frame: Uint8Array) => Either.getOrThrow(decodeClientHello(frame.subarray(5))).cpaceShare!
      expect(hex(share(first.c2s[0]!))).not.toBe(hex(share(second.c2s[0]!)))
    }).pipe(noHang("30 seconds", "the captures")))
})
