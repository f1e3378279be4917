/**
 * A scripted server for handshake tests: it answers a real client's ClientHello with a genuine
 * ServerHello (so that the client derives real keys, PROTOCOL.md §4.2), then hands the test its
 * record layer and raw socket to misbehave with: forged alerts, a KEY_UPDATE inside the handshake,
 * frames sealed under other keys. Works over any `Socket` (in memory or loopback TCP).
 */
import type * as Socket from "@effect/platform/Socket"
import { Effect, Either } from "effect"
import type { Scope } from "effect"
import { makeEncryptedRecordLayer, MAX_RECORDS_PER_KEY, type RecordLayer } from "../../src/channel/RecordLayer.js"
import { Crypto } from "../../src/crypto/Crypto.js"
import { deriveHandshakeSecrets } from "../../src/handshake/KeySchedule.js"
import { encodeFrame } from "../../src/wire/Frame.js"
import { decodeClientHello, encodeServerHello, MessageType, PROTOCOL_VERSION, ServerHello } from "../../src/wire/Messages.js"
import { concatBytes, rawPeer, type RawPeer } from "./wire.js"

export interface FakeServer {
  readonly raw: RawPeer
  /** Seals with the server's handshake keys (PROTOCOL.md §4.2), as the real server would. */
  readonly records: RecordLayer
  /** Seals one message with the server's keys and writes it. */
  readonly sendSealed: (type: number, body: Uint8Array) => Effect.Effect<void, Socket.SocketError>
}

export const fakeServer = (
  socket: Socket.Socket,
  options: { readonly passwordRequired?: boolean; readonly serverKey?: boolean } = {}
): Effect.Effect<FakeServer, unknown, Crypto | Scope.Scope> =>
  Effect.gen(function*() {
    const crypto = yield* Crypto
    const raw = yield* rawPeer(socket)
    const [clientHelloFrame] = yield* raw.waitForFrames(1)
    if (clientHelloFrame === undefined) return yield* Effect.dieMessage("no ClientHello")
    const clientHello = Either.getOrThrow(decodeClientHello(clientHelloFrame.subarray(5)))
    const keyPair = yield* crypto.generateKeyPair
    const serverHelloFrame = encodeFrame(
      MessageType.SERVER_HELLO,
      encodeServerHello(
        new ServerHello({
          version: PROTOCOL_VERSION,
          policy: "required",
          passwordRequired: options.passwordRequired ?? false,
          serverKey: options.serverKey ?? false,
          nonce: new Uint8Array(32),
          publicKey: keyPair.publicKey
        })
      )
    )
    const peer = yield* crypto.importPublicKey(clientHello.publicKey)
    const shared = yield* crypto.deriveSharedSecret(keyPair, peer)
    const secrets = deriveHandshakeSecrets(crypto, shared, crypto.sha256(concatBytes([clientHelloFrame, serverHelloFrame])))
    const records = Either.getOrThrow(
      makeEncryptedRecordLayer(crypto, secrets.serverHandshake, secrets.clientHandshake, MAX_RECORDS_PER_KEY)
    )
    yield* raw.write(serverHelloFrame)
    const sendSealed = (type: number, body: Uint8Array) =>
      Effect.suspend(() => {
        const parts: Array<Uint8Array> = []
        records.write(type, body, new Uint8Array(0), (part) => parts.push(part))
        return raw.write(concatBytes(parts))
      })
    return { raw, records, sendSealed }
  })
