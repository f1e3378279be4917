/**
 * Golden transcripts (PROTOCOL.md §11): a complete conversation between a client on
 * `DeterministicCrypto.layer("cvg-golden-client")` and a server on
 * `DeterministicCrypto.layer("cvg-golden-server")`, over an in-memory pair whose taps record every
 * byte in both directions:
 *
 *   handshake → client sends REQUEST (id 1, COMMAND, "hello") → server answers (`respond`) with a
 *   REPLY (RESPONSE, "world") → client sends two PACKETs ("one", "two") back to back, which travel
 *   as one BATCH → client closes → server answers CLOSE.
 *
 * The derived secrets are recomputed independently of the handshake code's internals: the
 * deterministic streams are replayed (the private scalar is rebuilt from the stream as
 * DeterministicCrypto documents it and checked against the public key on the wire), then the
 * key schedule of PROTOCOL.md §4.2–4.3 is applied to the hello frames captured on the wire.
 */
import * as Socket from "@effect/platform/Socket"
import { Effect, Fiber } from "effect"
import {
  ClientSession,
  type CryptoService,
  DeterministicCrypto,
  type EncryptionPolicy,
  Packet,
  PacketType,
  ServerSession
} from "../../src/index.js"
import * as NodeCrypto_ from "node:crypto"
import * as NodeCrypto from "../../src/crypto/NodeCrypto.js"
import type { InvalidArgument } from "../../src/errors.js"
import { type IdentityKey, identityKeyFromPrivate } from "../../src/identity/IdentityKey.js"
import { calculateGeneratorEncoding, lvCat, scalarMultVfy, transcriptIr } from "../../src/crypto/CPace.js"
import { deriveHandshakeSecrets, deriveSessionSecrets } from "../../src/handshake/KeySchedule.js"
import { CPACE_CI } from "../../src/handshake/Pake.js"
import * as MemorySocket from "../../src/transport/MemorySocket.js"
import { concatBytes, makeRecorder, toHex, type WireFrame } from "./wire.js"

export const GOLDEN_CLIENT_SEED = "cvg-golden-client"
export const GOLDEN_SERVER_SEED = "cvg-golden-server"
export const GOLDEN_PASSWORD = "golden-password"
/**
 * The server's Ed25519 identity key in scenario A: its 32-byte private seed (RFC 8032 §5.1.5) is
 * SHA-256 of this string, so that anyone can rebuild it.
 */
export const GOLDEN_IDENTITY_SEED = "cvg-golden-identity"
/** The DER of a PKCS #8 Ed25519 private key before its 32-byte seed (RFC 8410 §7). */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")

export const goldenIdentitySeed = (): Uint8Array =>
  new Uint8Array(NodeCrypto_.createHash("sha256").update(GOLDEN_IDENTITY_SEED).digest())

export const goldenIdentity: Effect.Effect<IdentityKey, InvalidArgument> = Effect.suspend(() =>
  identityKeyFromPrivate(
    NodeCrypto_.createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, goldenIdentitySeed()]), format: "der", type: "pkcs8" })
  )
)

export interface GoldenScenario {
  /** The fenced block's info string is `golden-<name>`. */
  readonly name: string
  readonly title: string
  readonly policy: EncryptionPolicy
  readonly password: string
  /** The server proves the golden identity key and the client pins its fingerprint (PROTOCOL.md §3.7). */
  readonly identity: boolean
}

export const GOLDEN_SCENARIOS: ReadonlyArray<GoldenScenario> = [
  {
    name: "A",
    title: "encrypted (both `required`), password `golden-password`, a server identity key the client pins",
    policy: "required",
    password: GOLDEN_PASSWORD,
    identity: true
  },
  {
    name: "B",
    title: "plaintext (both `disabled`), password `golden-password`, no server identity key",
    policy: "disabled",
    password: GOLDEN_PASSWORD,
    identity: false
  }
]

export interface GoldenTranscript {
  readonly scenario: GoldenScenario
  readonly frames: ReadonlyArray<WireFrame>
  readonly keys: ReadonlyArray<readonly [name: string, value: Uint8Array]>
}

const encoder = new TextEncoder()

/** The DeterministicCrypto stream, rebuilt from its documentation (src/crypto/DeterministicCrypto.ts). */
const deterministicStream = (crypto: CryptoService, seed: string) => {
  const prefix = concatBytes([encoder.encode("cvg-core/DeterministicCrypto/v1\u0000"), encoder.encode(seed)])
  let counter = 0n
  let pending: Uint8Array = new Uint8Array(0)
  return (length: number): Uint8Array => {
    const out = new Uint8Array(length)
    let filled = 0
    while (filled < length) {
      if (pending.length === 0) {
        const index = new Uint8Array(8)
        new DataView(index.buffer).setBigUint64(0, counter)
        counter += 1n
        pending = crypto.sha256(concatBytes([prefix, index]))
      }
      const take = Math.min(pending.length, length - filled)
      out.set(pending.subarray(0, take), filled)
      pending = pending.subarray(take)
      filled += take
    }
    return out
  }
}

/** `d = (c mod (n - 1)) + 1` over 82 bytes of the stream, as 66 big-endian bytes. */
const scalarFrom = (drawn: Uint8Array): Uint8Array => {
  const c = BigInt(`0x${toHex(drawn)}`)
  const d = (c % (NodeCrypto.P521_ORDER - 1n)) + 1n
  return new Uint8Array(Buffer.from(d.toString(16).padStart(132, "0"), "hex"))
}

/** CPace's sample_scalar for ristretto255 (draft-irtf-cfrg-cpace): the top four bits cleared, little-endian. */
const scalarOf = (drawn: Uint8Array): bigint => {
  const bytes = Uint8Array.from(drawn)
  bytes[31] = bytes[31]! & 0x0f
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!)
  return n
}

const bytesEqual = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0

/** Runs one scenario and returns its frames in wire order. */
const runConversation = (scenario: GoldenScenario) =>
  Effect.scoped(
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const [clientSocket, serverSocket] = yield* MemorySocket.makePair({
        clientToServer: { tap: recorder.tap("C->S") },
        serverToClient: { tap: recorder.tap("S->C") }
      })
      const options = { encryption: scenario.policy, password: scenario.password }
      const identity = scenario.identity ? yield* goldenIdentity : undefined
      const server = yield* Effect.gen(function*() {
        const session = yield* ServerSession.session({ ...options, identity })
        yield* session.respond({}, () =>
          Effect.succeed(new Packet({ id: 0, type: PacketType.RESPONSE, payload: encoder.encode("world") })))
        yield* session.receive()
        yield* session.receive()
        return yield* session.closed
      }).pipe(
        Effect.provideService(Socket.Socket, serverSocket),
        Effect.provide(DeterministicCrypto.layer(GOLDEN_SERVER_SEED)),
        Effect.scoped,
        Effect.fork
      )
      const client = yield* ClientSession.session({ ...options, serverKey: identity?.fingerprint }).pipe(
        Effect.provideService(Socket.Socket, clientSocket),
        Effect.provide(DeterministicCrypto.layer(GOLDEN_CLIENT_SEED))
      )
      const reply = yield* client.request(new Packet({ id: 1, type: PacketType.COMMAND, payload: encoder.encode("hello") }))
      if (reply.type !== PacketType.RESPONSE || new TextDecoder().decode(reply.payload) !== "world") {
        return yield* Effect.dieMessage(`golden: unexpected reply ${reply.toString()}`)
      }
      // Two one-way packets written back to back travel as one BATCH (PROTOCOL.md §7.3).
      yield* client.send(new Packet({ id: 2, type: PacketType.COMMAND, payload: encoder.encode("one") }))
      yield* client.send(new Packet({ id: 3, type: PacketType.COMMAND, payload: encoder.encode("two") }))
      yield* client.close
      const serverEnd = yield* Fiber.join(server)
      if (serverEnd._tag !== "ConnectionClosed" || serverEnd.reason !== "Closed") {
        return yield* Effect.dieMessage(`golden: the server ended with ${serverEnd._tag}`)
      }
      // The client reads the server's CLOSE before its session ends.
      yield* client.closed
      return recorder.frames()
    })
  )

/** Recomputes the secrets of PROTOCOL.md §4.2–4.3 and §5 from the deterministic streams and the hellos. */
const deriveKeys = (scenario: GoldenScenario, frames: ReadonlyArray<WireFrame>) =>
  Effect.gen(function*() {
    const crypto = yield* NodeCrypto.make
    const clientHello = frames.find((f) => f.direction === "C->S")
    const serverHello = frames.find((f) => f.direction === "S->C")
    if (clientHello === undefined || serverHello === undefined) return yield* Effect.dieMessage("golden: no hellos")
    // Both hello bodies: magic[3] version policy capabilities nonce[32] key[133] cpace_share[32].
    const helloKey = (frame: WireFrame) => frame.bytes.subarray(5 + 6 + 32, 5 + 6 + 32 + 133)
    const clientPublic = helloKey(clientHello)
    const serverPublic = helloKey(serverHello)

    // The deterministic streams, in the order each side draws: key pair (82 bytes), nonce (32),
    // CPace scalar (32).
    const clientStream = deterministicStream(crypto, GOLDEN_CLIENT_SEED)
    const serverStream = deterministicStream(crypto, GOLDEN_SERVER_SEED)
    const clientPrivate = scalarFrom(clientStream(82))
    const serverPrivate = scalarFrom(serverStream(82))
    const clientNonce = clientStream(32)
    serverStream(32)
    const clientScalar = clientStream(32)
    const serverScalar = serverStream(32)

    const clientPair = yield* NodeCrypto.keyPairFromPrivateScalar(clientPrivate)
    const serverPair = yield* NodeCrypto.keyPairFromPrivateScalar(serverPrivate)
    if (!bytesEqual(clientPair.publicKey, clientPublic) || !bytesEqual(serverPair.publicKey, serverPublic)) {
      return yield* Effect.dieMessage("golden: the replayed deterministic key pairs do not match the hellos")
    }
    const shared = yield* crypto.deriveSharedSecret(clientPair, yield* crypto.importPublicKey(serverPublic))
    const sharedCheck = yield* crypto.deriveSharedSecret(serverPair, yield* crypto.importPublicKey(clientPublic))
    if (!bytesEqual(shared, sharedCheck)) return yield* Effect.dieMessage("golden: ECDH disagrees")

    const h1 = crypto.sha256(concatBytes([clientHello.bytes, serverHello.bytes]))
    const secrets = deriveHandshakeSecrets(crypto, shared, h1)
    const keys: Array<readonly [string, Uint8Array]> = [
      ["client_private", clientPrivate],
      ["server_private", serverPrivate],
      ["shared_secret", shared],
      ["transcript_hash_h1", h1],
      ["prk", secrets.prk],
      ["c2s_handshake_secret", secrets.clientHandshake.secret],
      ["c2s_handshake_key", secrets.clientHandshake.key],
      ["c2s_handshake_iv", secrets.clientHandshake.iv],
      ["s2c_handshake_secret", secrets.serverHandshake.secret],
      ["s2c_handshake_key", secrets.serverHandshake.key],
      ["s2c_handshake_iv", secrets.serverHandshake.iv],
      ["derived", secrets.derived]
    ]

    // §5 CPace, recomputed from the drawn scalars (ya, yb: the 32 drawn bytes with the top four bits
    // cleared, little-endian) and the password; the shares must be the ones in the hellos.
    const password = encoder.encode(scenario.password)
    const clientBody = clientHello.bytes.subarray(5)
    const serverBody = serverHello.bytes.subarray(5)
    const ya = scalarOf(clientScalar)
    const yb = scalarOf(serverScalar)
    const generator = calculateGeneratorEncoding(password, CPACE_CI, clientNonce)
    const shareA = scalarMultVfy(ya, generator)
    const shareB = scalarMultVfy(yb, generator)
    if (!bytesEqual(shareA, clientBody.subarray(171)) || !bytesEqual(shareB, serverBody.subarray(171))) {
      return yield* Effect.dieMessage("golden: the replayed CPace shares do not match the hellos")
    }
    const k = scalarMultVfy(ya, shareB)
    const ada = clientBody.subarray(0, 171)
    const adb = serverBody.subarray(0, 171)
    const isk = new Uint8Array(
      NodeCrypto_.createHash("sha512").update(
        concatBytes([lvCat(encoder.encode("CPaceRistretto255_ISK"), clientNonce, k), transcriptIr(shareA, ada, shareB, adb)])
      ).digest()
    )
    keys.push(
      ["cpace_sid", clientNonce],
      ["cpace_ya_random", clientScalar],
      ["cpace_yb_random", serverScalar],
      ["cpace_generator", generator],
      ["cpace_ya", shareA],
      ["cpace_yb", shareB],
      ["cpace_k", k],
      ["cpace_isk", isk]
    )
    const session = deriveSessionSecrets(crypto, secrets, isk)
    keys.push(
      ["master", session.master],
      ["server_finished_key", session.serverFinishedKey],
      ["client_finished_key", session.clientFinishedKey],
      ["c2s_secret_0", session.clientTraffic.secret],
      ["c2s_key_0", session.clientTraffic.key],
      ["c2s_iv_0", session.clientTraffic.iv],
      ["s2c_secret_0", session.serverTraffic.secret],
      ["s2c_key_0", session.serverTraffic.key],
      ["s2c_iv_0", session.serverTraffic.iv]
    )

    const plainFrame = (type: number, body: Uint8Array) => {
      const out = new Uint8Array(5 + body.length)
      new DataView(out.buffer).setUint32(0, body.length)
      out[4] = type
      out.set(body, 5)
      return out
    }
    // §3.7: the identity's signature over the context string and H1, in SERVER_IDENTITY.
    const identityFrames: Array<Uint8Array> = []
    if (scenario.identity) {
      const identity = yield* goldenIdentity
      const signature = crypto.signEd25519(identity.privateKey, concatBytes([encoder.encode("cvg-core v4 server identity\u0000"), h1]))
      if (signature._tag === "Left") return yield* Effect.dieMessage("golden: signing failed")
      identityFrames.push(plainFrame(0x08, concatBytes([identity.publicKey, signature.right])))
      keys.push(
        ["identity_private", goldenIdentitySeed()],
        ["identity_public", identity.publicKey],
        ["identity_signature", signature.right]
      )
    }
    // §3.3, §3.4: the finished MACs over the transcript in its plaintext form.
    const hi = crypto.sha256(concatBytes([clientHello.bytes, serverHello.bytes, ...identityFrames]))
    const serverFinished = crypto.hmacSha256(session.serverFinishedKey, hi)
    const h2 = crypto.sha256(concatBytes([clientHello.bytes, serverHello.bytes, ...identityFrames, plainFrame(0x03, serverFinished)]))
    const clientFinished = crypto.hmacSha256(session.clientFinishedKey, h2)
    keys.push(
      ["transcript_hash_hi", hi],
      ["server_finished_mac", serverFinished],
      ["transcript_hash_h2", h2],
      ["client_finished_mac", clientFinished]
    )
    return keys
  })

export const goldenTranscript = (scenario: GoldenScenario): Effect.Effect<GoldenTranscript, unknown> =>
  Effect.gen(function*() {
    const frames = yield* runConversation(scenario)
    const keys = yield* deriveKeys(scenario, frames)
    return { scenario, frames, keys }
  })

/** One fenced block: a line per frame in wire order, then the derived values. */
export const renderBlock = (transcript: GoldenTranscript): string =>
  [
    "```golden-" + transcript.scenario.name,
    ...transcript.frames.map((f) => `${f.direction} ${toHex(f.bytes)}`),
    ...transcript.keys.map(([name, value]) => `key ${name} ${toHex(value)}`),
    "```"
  ].join("\n")

/** The markdown that goes into PROTOCOL.md §11 in place of `<!-- golden vectors -->`. */
export const goldenMarkdown: Effect.Effect<string, unknown> = Effect.gen(function*() {
  const sections: Array<string> = []
  for (const scenario of GOLDEN_SCENARIOS) {
    const transcript = yield* goldenTranscript(scenario)
    sections.push(`Scenario ${scenario.name}: ${scenario.title}.\n\n${renderBlock(transcript)}`)
  }
  return sections.join("\n\n")
})

/** Extracts the body of the fenced block with info string `info` from a markdown text. */
export const fencedBlock = (markdown: string, info: string): string | undefined => {
  const lines = markdown.split("\n")
  const start = lines.findIndex((line) => line.trim() === "```" + info)
  if (start < 0) return undefined
  const end = lines.findIndex((line, i) => i > start && line.trim() === "```")
  if (end < 0) return undefined
  return lines.slice(start + 1, end).join("\n")
}
