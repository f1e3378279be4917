/**
 * The record layer (PROTOCOL.md §4.4, §7.2): turns messages into frames and back, synchronously.
 *
 * In encrypted mode every frame is `len ‖ 0x17 ‖ AES-256-GCM(type ‖ body)` under the direction's key,
 * with the 5-byte frame header as associated data and `iv xor sequence` as nonce. Sequence numbers
 * are implicit, so a replayed, reordered, dropped or truncated frame fails to open. A sender rekeys
 * in-band before its counter reaches the limit; a receiver refuses a peer that does not.
 *
 * In plaintext mode frames are `len ‖ type ‖ body ‖ tag`, the tag an AES-GMAC of the header and body
 * under the same keys, nonces, sequence numbers and key updates (PROTOCOL.md §4.4): readable, never
 * alterable. A frame that does not verify is `DecryptFailed`, like one that does not open.
 */
import { Either } from "effect"
import type { Aead, CryptoError, CryptoService } from "../crypto/Crypto.js"
import { AEAD_TAG_LENGTH } from "../crypto/Crypto.js"
import { ProtocolError } from "../errors.js"
import { nextTrafficKeys, recordNonce, type TrafficKeys } from "../handshake/KeySchedule.js"
import { frameHeader } from "../wire/Frame.js"
import { MessageType } from "../wire/Messages.js"
import { count, recordsSealed, rekeys } from "../Observability.js"

/** Hard cap on records under one key (PROTOCOL.md §7.2), as TLS 1.3 recommends for AES-GCM. */
export const MAX_RECORDS_PER_KEY = 2 ** 24
/**
 * The smallest rekey interval (PROTOCOL.md §7.2): a side seals at most two handshake messages
 * (sequences 0 and 1), so the first KEY_UPDATE, at `limit − 1`, always falls after the handshake.
 */
export const MIN_REKEY_INTERVAL = 3

export type Deliver = (type: number, body: Uint8Array) => void

export interface RecordLayer {
  /** Bodies are sealed (encrypted mode); otherwise they travel readable, with a tag (plaintext mode). */
  readonly encrypted: boolean
  /**
   * Frames one message whose body is `head ‖ data` (and a KEY_UPDATE before it when the key is due),
   * passing the frame to `emit` in pieces: the body is never concatenated, only the writer's batch is.
   * Returns why when the local `Crypto` could not seal it: the record was not emitted (a KEY_UPDATE
   * before it may have been), and the caller must end the connection, since the peer will never see
   * the message.
   */
  readonly write: (type: number, head: Uint8Array, data: Uint8Array, emit: (part: Uint8Array) => void) => CryptoError | undefined
  /** Opens one received frame and delivers the message inside; key updates are consumed here. */
  readonly read: (outerType: number, header: Uint8Array, body: Uint8Array, deliver: Deliver) => ProtocolError | undefined
}

const EMPTY = new Uint8Array(0)
const decryptFailed = new ProtocolError({ reason: "DecryptFailed" })

/**
 * One direction's state. The key bytes are not kept once the cipher has them: the next generation
 * comes from `secret` (PROTOCOL.md §7.2), the nonces from `iv`.
 */
interface Direction {
  secret: Uint8Array
  iv: Uint8Array
  aead: Aead
  sequence: number
}

/** A cipher the local `Crypto` cannot make is this side's failure, not the peer's: it stays a `CryptoError`. */
const direction = (crypto: CryptoService, keys: TrafficKeys): Either.Either<Direction, CryptoError> =>
  Either.map(crypto.aead(keys.key), (aead) => ({ secret: keys.secret, iv: keys.iv, aead, sequence: 0 }))

/**
 * Both modes share the keys, the nonce sequence and the key updates (PROTOCOL.md §4.3, §4.4, §7.2);
 * only what a record looks like differs.
 */
const makeKeyedRecordLayer = (
  crypto: CryptoService,
  sendKeys: TrafficKeys,
  receiveKeys: TrafficKeys,
  rekeyAfter: number,
  encrypted: boolean
): Either.Either<RecordLayer, CryptoError> =>
  Either.gen(function*() {
    const limit = Math.max(MIN_REKEY_INTERVAL, Math.min(rekeyAfter, MAX_RECORDS_PER_KEY))
    const send = yield* direction(crypto, sendKeys)
    const receive = yield* direction(crypto, receiveKeys)
    return new KeyedRecordLayer(crypto, send, receive, limit, encrypted)
  })

/**
 * A class, so that a session's record layer is one object with its two directions rather than a
 * closure per step (docs/resources.md, "Memory of an idle session").
 */
class KeyedRecordLayer implements RecordLayer {
  constructor(
    private readonly crypto: CryptoService,
    private readonly send: Direction,
    private readonly receive: Direction,
    private readonly limit: number,
    readonly encrypted: boolean
  ) {}

  /**
   * Where this session's record nonces are built, one buffer for both directions: each nonce is used
   * up synchronously by the cipher before the next is built. It is not shared between sessions, so
   * nothing one session does can touch another's nonces.
   */
  private readonly nonce = new Uint8Array(12)

  private seal(type: number, head: Uint8Array, data: Uint8Array, emit: (part: Uint8Array) => void): CryptoError | undefined {
    const send = this.send
    // The inner type byte travels with the head, so the bulk `data` is encrypted straight from the caller's bytes.
    const prefix = new Uint8Array(1 + head.length)
    prefix[0] = type
    prefix.set(head, 1)
    const header = frameHeader(MessageType.ENCRYPTED, prefix.length + data.length + AEAD_TAG_LENGTH)
    const nonce = recordNonce(send.iv, send.sequence, this.nonce)
    const sealed = send.aead.sealParts(nonce, header, data.length > 0 ? [prefix, data] : [prefix])
    // The sequence number is taken only by a record that is emitted: a gap would make every later
    // record fail to open at the peer (DecryptFailed, PROTOCOL.md §4.4). The next record may reuse this
    // nonce safely because nothing sealed under it left this function. Node's cipher fails only on
    // wrong lengths or non-bytes, which the API edge refuses; a `Crypto` of the user's may fail anyway.
    if (Either.isLeft(sealed)) return sealed.left
    send.sequence++
    count(recordsSealed, 1)
    emit(header)
    for (const part of sealed.right) emit(part)
    return undefined
  }

  // Plaintext mode (§4.4): the frame keeps the message's own type and bytes; the tag authenticates
  // header and body, so neither the type, the length nor any byte can change unnoticed. The same
  // nonce rule holds as for sealing: a record that is not emitted does not take its number.
  private tag(type: number, head: Uint8Array, data: Uint8Array, emit: (part: Uint8Array) => void): CryptoError | undefined {
    const send = this.send
    const header = frameHeader(type, head.length + data.length + AEAD_TAG_LENGTH)
    const nonce = recordNonce(send.iv, send.sequence, this.nonce)
    const mac = send.aead.tagParts(nonce, [header, head, data])
    if (Either.isLeft(mac)) return mac.left
    send.sequence++
    count(recordsSealed, 1)
    emit(header)
    if (head.length > 0) emit(head)
    if (data.length > 0) emit(data)
    emit(mac.right)
    return undefined
  }

  private frame(type: number, head: Uint8Array, data: Uint8Array, emit: (part: Uint8Array) => void): CryptoError | undefined {
    return this.encrypted ? this.seal(type, head, data, emit) : this.tag(type, head, data, emit)
  }

  private installNext(dir: Direction): CryptoError | undefined {
    const next = direction(this.crypto, nextTrafficKeys(this.crypto, dir))
    if (Either.isLeft(next)) return next.left
    dir.secret = next.right.secret
    dir.iv = next.right.iv
    dir.aead = next.right.aead
    dir.sequence = 0
    return undefined
  }

  /** A received KEY_UPDATE: empty, then the next generation (§7.2). */
  private keyUpdate(body: Uint8Array): ProtocolError | undefined {
    if (body.length !== 0) return new ProtocolError({ reason: "Malformed", detail: "key update" })
    return this.installNext(this.receive) === undefined ? undefined : decryptFailed
  }

  private open(outerType: number, header: Uint8Array, body: Uint8Array, deliver: Deliver): ProtocolError | undefined {
    if (outerType !== MessageType.ENCRYPTED) return decryptFailed
    const receive = this.receive
    const opened = receive.aead.open(recordNonce(receive.iv, receive.sequence++, this.nonce), header, body)
    if (Either.isLeft(opened) || opened.right.length === 0) return decryptFailed
    const inner = opened.right
    const type = inner[0]!
    if (type === MessageType.KEY_UPDATE) return this.keyUpdate(inner.subarray(1))
    deliver(type, inner.subarray(1))
    return undefined
  }

  // A sealed frame in plaintext mode cannot be this session's: it fails like any record that does
  // not verify, so the handshake's first frame under keys reads it as other keys (§3.3).
  private verify(outerType: number, header: Uint8Array, body: Uint8Array, deliver: Deliver): ProtocolError | undefined {
    if (outerType === MessageType.ENCRYPTED || body.length < AEAD_TAG_LENGTH) return decryptFailed
    const receive = this.receive
    const split = body.length - AEAD_TAG_LENGTH
    const payload = body.subarray(0, split)
    const nonce = recordNonce(receive.iv, receive.sequence++, this.nonce)
    if (Either.isLeft(receive.aead.verifyParts(nonce, [header, payload], body.subarray(split)))) return decryptFailed
    if (outerType === MessageType.KEY_UPDATE) return this.keyUpdate(payload)
    deliver(outerType, payload)
    return undefined
  }

  write(type: number, head: Uint8Array, data: Uint8Array, emit: (part: Uint8Array) => void): CryptoError | undefined {
    // The KEY_UPDATE takes the last sequence number of the old key, so the counter never wraps.
    if (this.send.sequence === this.limit - 1) {
      const failed = this.frame(MessageType.KEY_UPDATE, EMPTY, EMPTY, emit) ?? this.installNext(this.send)
      if (failed !== undefined) return failed
      count(rekeys, 1)
    }
    return this.frame(type, head, data, emit)
  }

  read(outerType: number, header: Uint8Array, body: Uint8Array, deliver: Deliver): ProtocolError | undefined {
    if (this.receive.sequence >= MAX_RECORDS_PER_KEY) {
      return new ProtocolError({ reason: "LimitExceeded", detail: "peer did not update its key" })
    }
    return this.encrypted ? this.open(outerType, header, body, deliver) : this.verify(outerType, header, body, deliver)
  }
}

/** Encrypted mode: every record sealed with AES-256-GCM (PROTOCOL.md §4.4). */
export const makeEncryptedRecordLayer = (
  crypto: CryptoService,
  sendKeys: TrafficKeys,
  receiveKeys: TrafficKeys,
  rekeyAfter: number
): Either.Either<RecordLayer, CryptoError> => makeKeyedRecordLayer(crypto, sendKeys, receiveKeys, rekeyAfter, true)

/** Plaintext mode: every record readable and tagged with AES-GMAC (PROTOCOL.md §4.4). */
export const makeTaggedRecordLayer = (
  crypto: CryptoService,
  sendKeys: TrafficKeys,
  receiveKeys: TrafficKeys,
  rekeyAfter: number
): Either.Either<RecordLayer, CryptoError> => makeKeyedRecordLayer(crypto, sendKeys, receiveKeys, rekeyAfter, false)
