/**
 * The secure channel after the handshake (issue 3, "Must show": bad input and faults — a flipped
 * ciphertext bit, a replayed, dropped, reordered or truncated frame, an oversized length — and
 * rekey with a tiny interval), through the public session API on in-memory pairs whose relay
 * rewrites whole frames, and over loopback TCP for rekey. The record layer's key update is also
 * checked frame by frame against the key schedule.
 */
import { describe, expect, it } from "@effect/vitest"
import * as NodeCryptoApi from "node:crypto"
import { Effect, Either, Exit, Fiber } from "effect"
import * as Client from "../src/client/Client.js"
import { NodeCrypto, Packet, PacketType, type Session } from "../src/index.js"
import { makeEncryptedRecordLayer, makeTaggedRecordLayer, MIN_REKEY_INTERVAL } from "../src/channel/RecordLayer.js"
import { nextTrafficKeys, recordNonce, type TrafficKeys, trafficKeys } from "../src/handshake/KeySchedule.js"
import * as MemorySocket from "../src/transport/MemorySocket.js"
import { MessageType } from "../src/wire/Messages.js"
import { memory, noHang, type Options, runPair, succeeded, tagOf, transports, typedError, TYPED_TAGS } from "./support/pair.js"
import { concatBytes, frameRelay, makeRecorder, splitFrames } from "./support/wire.js"
import { tcpRelay } from "./support/raw.js"
import { startServer } from "./support/sessions.js"
import { failOnUnhandledRejections } from "./support/unhandled.js"

failOnUnhandledRejections()

const encoder = new TextEncoder()
const HANG_LIMIT = "5 seconds"

/** Frames each direction carries during the handshake (no password): C->S 2, S->C 3. */
const HANDSHAKE_FRAMES = { toServer: 2, toClient: 3 } as const

const packet = (id: number, text = `packet ${id}`) => new Packet({ id, type: PacketType.COMMAND, payload: encoder.encode(text) })

/** Bytes of the handshake in each direction, measured on a clean run. */
const handshakeBytes = (options: Options) =>
  Effect.gen(function*() {
    const recorder = makeRecorder()
    const result = yield* runPair(
      memory({ clientToServer: { tap: recorder.tap("C->S") }, serverToClient: { tap: recorder.tap("S->C") } }),
      options,
      options
    )
    succeeded(result.client, "client")
    succeeded(result.server, "server")
    return { toServer: recorder.stream("C->S").length, toClient: recorder.stream("S->C").length }
  }).pipe(Effect.scoped)

/**
 * The client sends `count` packets; the server receives until its session fails. Returns what the
 * server received before that, the error its `receive` failed with, and how each session ended.
 */
const sendThroughFault = (faults: MemorySocket.FaultOptions, count: number, options: Options = {}) =>
  Effect.gen(function*() {
    // Writes from client to server, counted as they meet the fault (before it can drop them).
    let writes = 0
    const transform = faults.clientToServer?.transform
    const counted: MemorySocket.FaultOptions = {
      ...faults,
      clientToServer: {
        ...faults.clientToServer,
        transform: (chunk) => {
          writes++
          return transform === undefined ? chunk : transform(chunk)
        }
      }
    }
    const result = yield* runPair(memory(counted), options, options)
    const client = succeeded(result.client, "client")
    const server = succeeded(result.server, "server")
    // The server is already receiving when the packets arrive: what a fault lets through is taken
    // before the session fails (a failed session drops what nobody has taken).
    const receiving = yield* Effect.fork(Effect.gen(function*() {
      const received: Array<number> = []
      while (true) {
        const next = yield* Effect.exit(server.receive())
        if (Exit.isSuccess(next)) received.push(next.value.id)
        else return { received, failure: typedError(next, "server receive") }
      }
    }))
    yield* Effect.yieldNow()
    let clientEnded = false
    yield* Effect.fork(Effect.map(client.closed, () => {
      clientEnded = true
    }))
    // One frame per packet, as the faults below count frames: the next packet is sent only once the
    // writer has put this one on the wire, so that the two are never sealed together as one BATCH
    // (PROTOCOL.md §7.3). A pause alone raced the writer on a loaded machine. A client whose session
    // has ended writes nothing more, so that ends the wait too.
    for (let id = 1; id <= count; id++) {
      const before = writes
      yield* Effect.ignore(client.send(packet(id)))
      yield* Effect.sleep("1 millis").pipe(Effect.repeat({ until: () => writes > before || clientEnded, times: 200 }))
    }
    const { received, failure } = yield* Fiber.join(receiving)
    const serverEnd = yield* server.closed
    const clientEnd = yield* client.closed
    for (const end of [serverEnd, clientEnd]) expect(TYPED_TAGS.has(end._tag), String(end)).toBe(true)
    // Neither side may take a broken connection for an orderly close.
    expect(serverEnd).not.toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
    return { received, failure, serverEnd, clientEnd }
  }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the faulty conversation"))

const DECRYPT_FAILED = { _tag: "ProtocolError", reason: "DecryptFailed" }

/** A relay on the data frames after the handshake (`index` 0 is the first data frame). */
const afterHandshake = (handshakeFrames: number, relay: (frame: Uint8Array, index: number) => ReadonlyArray<Uint8Array>) =>
  frameRelay((frame, index) => (index < handshakeFrames ? [frame] : relay(frame, index - handshakeFrames)))

describe("faults after the handshake (encrypted)", () => {
  it.live("a flipped ciphertext bit, client → server: DecryptFailed, told to the client", () =>
    Effect.gen(function*() {
      const sizes = yield* handshakeBytes({})
      // Inside the first data frame's ciphertext: past its 5-byte header.
      const outcome = yield* sendThroughFault({ clientToServer: { flipByte: sizes.toServer + 5 + 3 } }, 3)
      expect(outcome.received).toEqual([])
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
      expect(outcome.serverEnd).toMatchObject(DECRYPT_FAILED)
      // The server's DECRYPT_FAILED alert reaches the client as the peer's report (or it sees the connection end).
      expect(["PeerAlert", "ConnectionClosed", "SocketError"]).toContain(outcome.clientEnd._tag)
      if (outcome.clientEnd._tag === "PeerAlert") expect(outcome.clientEnd).toMatchObject({ reason: "DecryptFailed", phase: "Session" })
    }))

  for (const [what, offsetInFrame] of [
    ["the authenticated header's type byte", 4],
    ["the last tag byte", -1],
    ["a ciphertext byte of the second data frame", "second"]
  ] as const) {
    it.live(`a flipped bit in ${what}: DecryptFailed`, () =>
      Effect.gen(function*() {
        const sizes = yield* handshakeBytes({})
        // Every data frame carries packet(id): 5 + 1 + (5 + payload) + 16 bytes.
        const frameLength = 5 + 1 + 5 + "packet 1".length + 16
        const offset = offsetInFrame === "second"
          ? sizes.toServer + frameLength + 7
          : offsetInFrame === -1
          ? sizes.toServer + frameLength - 1
          : sizes.toServer + offsetInFrame
        const outcome = yield* sendThroughFault({ clientToServer: { flipByte: { offset, mask: 0x80 } } }, 3)
        expect(outcome.received).toEqual(offsetInFrame === "second" ? [1] : [])
        expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
      }))
  }

  it.live("a flipped ciphertext bit, server → client: the client's request fails with DecryptFailed", () =>
    Effect.gen(function*() {
      const sizes = yield* handshakeBytes({})
      const result = yield* runPair(memory({ serverToClient: { flipByte: sizes.toClient + 9 } }), {}, {})
      const client = succeeded(result.client, "client")
      const server = succeeded(result.server, "server")
      const [reply] = yield* Effect.all([
        Effect.exit(client.request(packet(1))),
        Effect.exit(server.respond({}, (p) => Effect.succeed(new Packet({ id: p.id, type: PacketType.RESPONSE, payload: p.payload }))))
      ], { concurrency: 2 })
      expect(typedError(reply, "client request")).toMatchObject(DECRYPT_FAILED)
      expect(yield* client.closed).toMatchObject(DECRYPT_FAILED)
      expect(TYPED_TAGS.has((yield* server.closed)._tag)).toBe(true)
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the conversation")))

  it.live("a replayed frame: the copy fails to open (DecryptFailed) after the original was delivered", () =>
    Effect.gen(function*() {
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => (index === 0 ? [frame, frame] : [frame]))
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 3)
      expect(outcome.received).toEqual([1])
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
    }))

  it.live("a replayed handshake frame (ClientFinished) after the handshake: DecryptFailed", () =>
    Effect.gen(function*() {
      let finished: Uint8Array | undefined
      const relay = frameRelay((frame, index) => {
        if (index === 1) finished = frame
        return index === 3 && finished !== undefined ? [finished, frame] : [frame]
      })
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 3)
      expect(outcome.received).toEqual([1])
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
    }))

  it.live("a dropped frame: the next one fails to open (DecryptFailed)", () =>
    Effect.gen(function*() {
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => (index === 1 ? [] : [frame]))
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 4)
      expect(outcome.received).toEqual([1])
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
    }))

  it.live("reordered frames: DecryptFailed at the first one out of place", () =>
    Effect.gen(function*() {
      let held: Uint8Array | undefined
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => {
        if (index === 1) {
          held = frame
          return []
        }
        if (index === 2 && held !== undefined) return [frame, held]
        return [frame]
      })
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 4)
      expect(outcome.received).toEqual([1])
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
    }))

  it.live("a frame truncated with a consistent length prefix: DecryptFailed", () =>
    Effect.gen(function*() {
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => {
        if (index !== 0) return [frame]
        const cut = frame.slice(0, frame.length - 4)
        new DataView(cut.buffer).setUint32(0, cut.length - 5)
        return [cut]
      })
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 2)
      expect(outcome.received).toEqual([])
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
    }))

  it.live("a frame truncated by the end of the stream: Malformed (truncated frame), not an orderly close", () =>
    Effect.gen(function*() {
      // The relay passes half of the second data frame and nothing after it (not even CLOSE);
      // then the client closes, so the server meets end of stream inside a frame.
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) =>
        index === 0 ? [frame] : index === 1 ? [frame.slice(0, 12)] : [])
      const result = yield* runPair(memory({ clientToServer: { transform: relay } }), {}, {})
      const client = succeeded(result.client, "client")
      const server = succeeded(result.server, "server")
      yield* client.send(packet(1))
      yield* client.send(packet(2))
      expect((yield* server.receive()).id).toBe(1)
      yield* client.close
      const error = typedError(yield* Effect.exit(server.receive()), "server receive")
      expect(error).toMatchObject({ _tag: "ProtocolError", reason: "Malformed", detail: "truncated frame" })
      expect(yield* server.closed).toMatchObject({ _tag: "ProtocolError", reason: "Malformed" })
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the conversation")))

  it.live("an oversized length prefix: FrameTooLarge before anything is buffered", () =>
    Effect.gen(function*() {
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => {
        if (index !== 1) return [frame]
        const bad = Uint8Array.from(frame)
        new DataView(bad.buffer).setUint32(0, 0xfffffff0)
        return [bad]
      })
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 3, { maxFrameSize: 64 * 1024 })
      expect(outcome.received).toEqual([1])
      expect(outcome.failure).toMatchObject({ _tag: "ProtocolError", reason: "FrameTooLarge" })
    }))

  it.live("a length just above maxFrameSize is refused; a frame at the limit is not", () =>
    Effect.gen(function*() {
      // The smallest limit allowed: the largest hello (PROTOCOL.md §3.1) must fit.
      const limit = 203
      const okPayload = "x".repeat(limit - (1 + 5 + 16))
      const result = yield* runPair(memory(), { maxFrameSize: limit }, { maxFrameSize: limit })
      const client = succeeded(result.client, "client")
      const server = succeeded(result.server, "server")
      yield* client.send(packet(1, okPayload))
      expect((yield* server.receive()).payload.length).toBe(okPayload.length)
      yield* client.send(packet(2, okPayload + "x"))
      expect(typedError(yield* Effect.exit(server.receive()), "server")).toMatchObject({ _tag: "ProtocolError", reason: "FrameTooLarge" })
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the conversation")))
})

describe("faults after the handshake (plaintext): readable, never alterable (PROTOCOL.md §4.4)", () => {
  const plaintext: Options = { encryption: "disabled" }
  /** A plaintext data frame carrying packet(id): header, PACKET body (5 + payload), tag. */
  const FRAME_LENGTH = 5 + 5 + "packet 1".length + 16

  it.live("the payload travels readable, followed by a 16-byte tag", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const result = yield* runPair(memory({ clientToServer: { tap: recorder.tap("C->S") } }), plaintext, plaintext)
      const client = succeeded(result.client, "client")
      const server = succeeded(result.server, "server")
      yield* client.send(packet(1))
      expect((yield* server.receive()).id).toBe(1)
      const frames = recorder.framesOf("C->S")
      const data = frames[HANDSHAKE_FRAMES.toServer]!
      expect(data.type).toBe(MessageType.PACKET)
      expect(data.bytes.length).toBe(FRAME_LENGTH)
      expect(new TextDecoder().decode(data.bytes.subarray(10, 10 + "packet 1".length))).toBe("packet 1")
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the conversation")))

  for (const [what, offsetInFrame] of [
    ["a payload byte", 5 + 5 + 2],
    ["the header's type byte", 4],
    ["the last tag byte", FRAME_LENGTH - 1]
  ] as const) {
    it.live(`a flipped bit in ${what}: DecryptFailed, told to the client`, () =>
      Effect.gen(function*() {
        const sizes = yield* handshakeBytes(plaintext)
        const outcome = yield* sendThroughFault(
          { clientToServer: { flipByte: { offset: sizes.toServer + offsetInFrame, mask: 0x01 } } },
          3,
          plaintext
        )
        expect(outcome.received).toEqual([])
        expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
        expect(outcome.serverEnd).toMatchObject(DECRYPT_FAILED)
        expect(["PeerAlert", "ConnectionClosed", "SocketError"]).toContain(outcome.clientEnd._tag)
        if (outcome.clientEnd._tag === "PeerAlert") expect(outcome.clientEnd).toMatchObject({ reason: "DecryptFailed", phase: "Session" })
      }))
  }

  it.live("a replayed frame: the copy fails its tag (DecryptFailed) after the original was delivered", () =>
    Effect.gen(function*() {
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => (index === 0 ? [frame, frame] : [frame]))
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 3, plaintext)
      expect(outcome.received).toEqual([1])
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
    }))

  it.live("a dropped frame: the next one fails its tag (DecryptFailed)", () =>
    Effect.gen(function*() {
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => (index === 1 ? [] : [frame]))
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 4, plaintext)
      expect(outcome.received).toEqual([1])
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
    }))

  it.live("a frame with its tag stripped and a consistent length prefix: DecryptFailed", () =>
    Effect.gen(function*() {
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => {
        if (index !== 0) return [frame]
        const cut = frame.slice(0, frame.length - 16)
        new DataView(cut.buffer).setUint32(0, cut.length - 5)
        return [cut]
      })
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 2, plaintext)
      expect(outcome.received).toEqual([])
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
    }))

  it.live("a sealed frame (outer type ENCRYPTED) in plaintext mode: DecryptFailed", () =>
    Effect.gen(function*() {
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => {
        if (index !== 0) return [frame]
        const bad = Uint8Array.from(frame)
        bad[4] = MessageType.ENCRYPTED
        return [bad]
      })
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 2, plaintext)
      expect(outcome.failure).toMatchObject(DECRYPT_FAILED)
      // The server's alert (DECRYPT_FAILED) tells the client.
      expect(["PeerAlert", "ConnectionClosed", "SocketError"]).toContain(outcome.clientEnd._tag)
      if (outcome.clientEnd._tag === "PeerAlert") expect(outcome.clientEnd).toMatchObject({ reason: "DecryptFailed", phase: "Session" })
    }))

  it.live("an oversized length prefix in plaintext mode: FrameTooLarge", () =>
    Effect.gen(function*() {
      const relay = afterHandshake(HANDSHAKE_FRAMES.toServer, (frame, index) => {
        if (index !== 0) return [frame]
        const bad = Uint8Array.from(frame)
        new DataView(bad.buffer).setUint32(0, 0x7fffffff)
        return [bad]
      })
      const outcome = yield* sendThroughFault({ clientToServer: { transform: relay } }, 2, plaintext)
      expect(outcome.failure).toMatchObject({ _tag: "ProtocolError", reason: "FrameTooLarge" })
    }))

  it.live("tcp: a relay that flips a payload byte of a plaintext reply: the client's request fails with DecryptFailed", () =>
    Effect.gen(function*() {
      const { port, fiber } = yield* startServer({ ...plaintext, host: "127.0.0.1" }, (session) =>
        session.serve((p) => Effect.succeed(new Packet({ id: p.id, type: PacketType.RESPONSE, payload: p.payload }))))
      // Flip the first byte of the reply's payload: the only frame that carries "altered me".
      const marker = encoder.encode("altered me")
      const relayPort = yield* tcpRelay(port, {
        toClient: (chunk) => {
          for (let i = 0; i + marker.length <= chunk.length; i++) {
            if (marker.every((b, j) => chunk[i + j] === b)) {
              const out = Uint8Array.from(chunk)
              out[i] = out[i]! ^ 0x20
              return out
            }
          }
          return chunk
        }
      })
      const client = yield* Client.connectScoped({ ...plaintext, host: "127.0.0.1", port: relayPort })
      const reply = yield* Effect.exit(client.request(packet(1, "altered me")))
      expect(typedError(reply, "client request")).toMatchObject(DECRYPT_FAILED)
      expect(yield* client.closed).toMatchObject(DECRYPT_FAILED)
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.scoped, Effect.provide(NodeCrypto.layer), noHang(HANG_LIMIT, "the relayed conversation")))

  it.live("memory: 3000 requests and replies with rekeyAfter 3: key updates are tagged records too (§7.2)", () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const options: Options = { ...plaintext, rekeyAfter: 3 }
      const result = yield* runPair(memory({ clientToServer: { tap: recorder.tap("C->S") } }), options, options)
      const client = succeeded(result.client, "client")
      const server = succeeded(result.server, "server")
      yield* echoMany(client, server, 3000)
      yield* client.close
      expect(yield* server.closed).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
      const updates = recorder.framesOf("C->S").filter((f) => f.type === MessageType.KEY_UPDATE)
      expect(updates.length).toBeGreaterThan(50)
      // An empty body and its tag.
      expect(updates.every((f) => f.bytes.length === 5 + 16)).toBe(true)
    }).pipe(Effect.scoped, noHang("20 seconds", "the rekey run")), 30_000)
})

describe("close", () => {
  for (const [transportName, transport] of transports) {
    it.live(`${transportName}: an orderly close is Closed on both sides; a cut is not`, () =>
      Effect.gen(function*() {
        const result = yield* runPair(transport(), {}, {})
        const client = succeeded(result.client, "client")
        const server = succeeded(result.server, "server")
        yield* client.close
        expect(yield* server.closed).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
        expect(yield* client.closed).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
      }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the close")))
  }

  it.live("memory: a cut connection is never reported as Closed", () =>
    Effect.gen(function*() {
      const [clientSocket, serverSocket] = yield* MemorySocket.makePair()
      const result = yield* runPair(Effect.succeed({ client: clientSocket, server: Effect.succeed(serverSocket) }), {}, {})
      const client = succeeded(result.client, "client")
      const server = succeeded(result.server, "server")
      yield* MemorySocket.cut(clientSocket)
      for (const end of [yield* server.closed, yield* client.closed]) {
        expect(TYPED_TAGS.has(end._tag)).toBe(true)
        expect(end).not.toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
      }
    }).pipe(Effect.scoped, noHang(HANG_LIMIT, "the cut")))
})

// ---------------------------------------------------------------------------------------------
// Rekey (PROTOCOL.md §7.2)

/** Key updates a sender with this interval inserts while sealing `messages` records. */
const expectedKeyUpdates = (messages: number, rekeyAfter: number): number => {
  const limit = Math.max(MIN_REKEY_INTERVAL, rekeyAfter)
  let sequence = 0
  let updates = 0
  for (let i = 0; i < messages; i++) {
    if (sequence === limit - 1) {
      updates++
      sequence = 0
    }
    sequence++
  }
  return updates
}

/** `count` requests from the client, each echoed by the server, `concurrency` in flight. */
const echoMany = (client: Session, server: Session, count: number) =>
  Effect.gen(function*() {
    const serving = yield* Effect.fork(server.serve((p) => Effect.succeed(new Packet({ id: p.id, type: PacketType.RESPONSE, payload: p.payload }))))
    const replies = yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i + 1),
      (id) => client.request(packet(id, `rekey ${id}`)),
      { concurrency: 16 }
    )
    replies.forEach((reply, i) => {
      expect(reply.id).toBe(i + 1)
      expect(new TextDecoder().decode(reply.payload)).toBe(`rekey ${i + 1}`)
    })
    return serving
  })

describe("rekey with a tiny interval", () => {
  const COUNT = 3000

  it.live(`memory: ${COUNT} requests and ${COUNT} replies with rekeyAfter 3, key updates counted on the wire`, () =>
    Effect.gen(function*() {
      const recorder = makeRecorder()
      const options: Options = { rekeyAfter: 3 }
      const result = yield* runPair(
        memory({ clientToServer: { tap: recorder.tap("C->S") }, serverToClient: { tap: recorder.tap("S->C") } }),
        options,
        options
      )
      const client = succeeded(result.client, "client")
      const server = succeeded(result.server, "server")
      yield* echoMany(client, server, COUNT)
      yield* client.close
      expect(yield* server.closed).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
      expect(yield* client.closed).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
      // Records under the traffic keys (PROTOCOL.md §4.2): after the hello and the handshake's own
      // sealed messages (CLIENT_FINISHED; SERVER_FINISHED and SERVER_ACCEPT), which have keys of their
      // own and no key update; then the packets and CLOSE.
      const toServer = recorder.framesOf("C->S").slice(1 + 1)
      const toClient = recorder.framesOf("S->C").slice(1 + 2)
      expect(toServer.every((f) => f.type === MessageType.ENCRYPTED)).toBe(true)
      expect(toClient.every((f) => f.type === MessageType.ENCRYPTED)).toBe(true)
      // Messages may share a record (BATCH, PROTOCOL.md §7.3), so the records carrying them are
      // counted back from the wire: n records of messages need exactly expectedKeyUpdates(n, 3)
      // KEY_UPDATEs between them.
      const dataRecords = (frames: number) => {
        for (let n = 1; n <= frames; n++) if (n + expectedKeyUpdates(n, 3) === frames) return n
        return undefined
      }
      const clientRecords = dataRecords(toServer.length)
      expect(clientRecords).toBeDefined()
      expect(clientRecords!).toBeLessThanOrEqual(COUNT + 1) // requests, CLOSE
      // The server's answering CLOSE may miss the wire: the client stops reading once its own CLOSE
      // is out, and does not wait for the answer (PROTOCOL.md §7.1).
      expect(dataRecords(toClient.length)).toBeDefined()
      // Dozens of key updates each way even when 16 requests at a time share records.
      expect(expectedKeyUpdates(clientRecords!, 3)).toBeGreaterThan(50)
    }).pipe(Effect.scoped, noHang("20 seconds", "the rekey run")), 30_000)

  it.live(`tcp: ${COUNT} requests and replies with rekeyAfter 2 (raised to the smallest, 3) on both sides`, () =>
    Effect.gen(function*() {
      const options: Options = { rekeyAfter: 2 }
      const result = yield* runPair(transports[1]![1](), options, options)
      const client = succeeded(result.client, "client")
      const server = succeeded(result.server, "server")
      yield* echoMany(client, server, COUNT)
      yield* client.close
      expect(yield* server.closed).toMatchObject({ _tag: "ConnectionClosed", reason: "Closed" })
    }).pipe(Effect.scoped, noHang("20 seconds", "the rekey run")), 30_000)

  it.live("only one side rekeying often: the other side follows its key updates", () =>
    Effect.gen(function*() {
      const result = yield* runPair(memory(), { rekeyAfter: 5 }, {})
      const client = succeeded(result.client, "client")
      const server = succeeded(result.server, "server")
      yield* echoMany(client, server, 1000)
    }).pipe(Effect.scoped, noHang("10 seconds", "the rekey run")))
})

describe("record layer key update, frame by frame", () => {
  /** Opens a sealed frame with explicit keys and sequence number. */
  const open = (aead: { readonly open: (n: Uint8Array, a: Uint8Array, s: Uint8Array) => Either.Either<Uint8Array, unknown> }, keys: TrafficKeys, sequence: number, frame: Uint8Array) =>
    aead.open(recordNonce(keys.iv, sequence, new Uint8Array(12)), frame.subarray(0, 5), frame.subarray(5))

  for (const rekeyAfter of [1, 2, 3, 5]) {
    it.effect(`rekeyAfter ${rekeyAfter}: KEY_UPDATE takes the last sequence number of each key, then generation n+1 starts at 0`, () =>
      Effect.gen(function*() {
        const crypto = yield* NodeCrypto.make
        const first = trafficKeys(crypto, new Uint8Array(32).fill(7))
        const other = trafficKeys(crypto, new Uint8Array(32).fill(9))
        const sender = Either.getOrThrow(makeEncryptedRecordLayer(crypto, first, other, rekeyAfter))
        const receiver = Either.getOrThrow(makeEncryptedRecordLayer(crypto, other, first, rekeyAfter))
        const parts: Array<Uint8Array> = []
        const MESSAGES = 40
        for (let i = 0; i < MESSAGES; i++) {
          sender.write(MessageType.PACKET, Uint8Array.of(0, 0, 0, i, 0xc0), new Uint8Array(0), (part) => parts.push(part))
        }
        const { frames } = splitFrames(concatBytes(parts))
        // Decrypt independently, walking the key schedule by hand.
        const limit = Math.max(MIN_REKEY_INTERVAL, rekeyAfter)
        let keys = first
        let aead = Either.getOrThrow(crypto.aead(keys.key))
        let sequence = 0
        const inner: Array<number> = []
        for (const frame of frames) {
          const opened = Either.getOrThrow(open(aead, keys, sequence, frame))
          inner.push(opened[0]!)
          if (opened[0] === MessageType.KEY_UPDATE) {
            expect(sequence).toBe(limit - 1)
            expect(opened.length).toBe(1)
            keys = nextTrafficKeys(crypto, keys)
            aead = Either.getOrThrow(crypto.aead(keys.key))
            sequence = 0
          } else {
            sequence++
            expect(sequence).toBeLessThan(limit)
          }
        }
        expect(inner.filter((t) => t === MessageType.PACKET).length).toBe(MESSAGES)
        expect(inner.filter((t) => t === MessageType.KEY_UPDATE).length).toBe(expectedKeyUpdates(MESSAGES, rekeyAfter))
        // The peer's record layer follows and delivers every message in order, without the updates.
        const delivered: Array<number> = []
        for (const frame of frames) {
          const error = receiver.read(frame[4]!, frame.subarray(0, 5), frame.subarray(5), (type, body) => {
            expect(type).toBe(MessageType.PACKET)
            delivered.push(body[3]!)
          })
          expect(error).toBeUndefined()
        }
        expect(delivered).toEqual(Array.from({ length: MESSAGES }, (_, i) => i))
        // A frame from an old generation no longer opens.
        const stale = frames[0]!
        const error = receiver.read(stale[4]!, stale.subarray(0, 5), stale.subarray(5), () => {})
        expect(tagOf(error)).toBe("ProtocolError")
        expect(error).toMatchObject({ reason: "DecryptFailed" })
      }))
  }
})

describe("BATCH (PROTOCOL.md §7.3)", () => {
  for (const [mode, options] of [["encrypted", {}], ["plaintext", { encryption: "disabled" }]] as const) {
    it.live(`${mode}: 256 requests in flight share frames both ways, and every reply reaches its request`, () =>
      Effect.gen(function*() {
        const recorder = makeRecorder()
        const result = yield* runPair(
          memory({ clientToServer: { tap: recorder.tap("C->S") }, serverToClient: { tap: recorder.tap("S->C") } }),
          options,
          options
        )
        const client = succeeded(result.client, "client")
        const server = succeeded(result.server, "server")
        yield* Effect.forkScoped(server.serve((p) => Effect.succeed(p)))
        const replies = yield* Effect.forEach(
          Array.from({ length: 256 }, (_, i) => i + 1),
          (id) => client.request(packet(id, `batch ${id}`)),
          { concurrency: "unbounded" }
        )
        expect(replies.map((r) => new TextDecoder().decode(r.payload))).toEqual(replies.map((_, i) => `batch ${i + 1}`))
        // Far fewer frames than messages in each direction: the 256 went out in a few batches.
        expect(recorder.framesOf("C->S").length).toBeLessThan(64)
        expect(recorder.framesOf("S->C").length).toBeLessThan(64)
        if (mode === "plaintext") expect(recorder.framesOf("C->S").some((f) => f.type === MessageType.BATCH)).toBe(true)
      }).pipe(Effect.scoped, noHang("20 seconds", "the batched requests")))
  }
})

describe("plaintext record layer, frame by frame (PROTOCOL.md §4.4)", () => {
  it.effect("each frame is len ‖ type ‖ body ‖ GMAC, the tag rebuilt with node:crypto alone; key updates included", () =>
    Effect.gen(function*() {
      const crypto = yield* NodeCrypto.make
      const first = trafficKeys(crypto, new Uint8Array(32).fill(7))
      const other = trafficKeys(crypto, new Uint8Array(32).fill(9))
      const sender = Either.getOrThrow(makeTaggedRecordLayer(crypto, first, other, 3))
      const receiver = Either.getOrThrow(makeTaggedRecordLayer(crypto, other, first, 3))
      const parts: Array<Uint8Array> = []
      for (let i = 0; i < 7; i++) {
        sender.write(MessageType.PACKET, Uint8Array.of(0, 0, 0, i, 0xc0), encoder.encode(`body ${i}`), (part) => parts.push(part))
      }
      const { frames } = splitFrames(concatBytes(parts))
      let keys = first
      let sequence = 0
      for (const frame of frames) {
        const body = frame.subarray(5, frame.length - 16)
        const gcm = NodeCryptoApi.createCipheriv("aes-256-gcm", keys.key, recordNonce(keys.iv, sequence, new Uint8Array(12)))
        gcm.setAAD(frame.subarray(0, frame.length - 16))
        gcm.final()
        expect(Buffer.from(frame.subarray(frame.length - 16)).equals(gcm.getAuthTag())).toBe(true)
        expect(new DataView(frame.buffer, frame.byteOffset).getUint32(0)).toBe(frame.length - 5)
        if (frame[4] === MessageType.KEY_UPDATE) {
          expect(body.length).toBe(0)
          keys = nextTrafficKeys(crypto, keys)
          sequence = 0
        } else {
          expect(frame[4]).toBe(MessageType.PACKET)
          sequence++
        }
      }
      expect(frames.filter((f) => f[4] === MessageType.KEY_UPDATE).length).toBe(expectedKeyUpdates(7, 3))
      const delivered: Array<number> = []
      for (const frame of frames) {
        expect(receiver.read(frame[4]!, frame.subarray(0, 5), frame.subarray(5), (_, body) => delivered.push(body[3]!))).toBeUndefined()
      }
      expect(delivered).toEqual([0, 1, 2, 3, 4, 5, 6])
    }))
})
