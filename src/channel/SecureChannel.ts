/**
 * The secure channel: what a successful handshake turns into (PROTOCOL.md §7).
 *
 * Only the handshake constructs one, so nothing can be sent before keys are confirmed and the
 * password checked. It owns the record layer, answers CLOSE, ALERT and PING (with PONG) itself, and
 * counts every frame it receives for the keep-alive (PROTOCOL.md §7.4). It tells a finished
 * connection (CLOSE received) from a cut one (end of stream without CLOSE).
 */
import type * as Socket from "@effect/platform/Socket"
import { Duration, Effect } from "effect"
import type { Option } from "effect"
import type { AuthFailed, EncryptionPolicy, PeerAlert } from "../errors.js"
import { ConnectionClosed, ProtocolError } from "../errors.js"
import type { Framed, FrameSink, ReadEnd } from "../transport/Framed.js"
import { BATCH_ITEM_HEADER, BATCH_LIMIT, type BatchItem, batchable, decodeBatch, encodeBatch } from "../wire/Batch.js"
import { decodeAlert, encodeAlert, Alert, KEEP_ALIVE_BODY_LENGTH, MessageType } from "../wire/Messages.js"
import { errorToAlert, sessionAlertToError } from "./Alerts.js"
import type { CryptoError } from "../crypto/Crypto.js"
import type { RecordLayer } from "./RecordLayer.js"

const EMPTY = new Uint8Array(0)
/** How long an orderly close waits for the peer's answering CLOSE before it stops reading. */
const PEER_CLOSE_WAIT = Duration.seconds(1)

/**
 * How a channel ends: `ProtocolError` for what this side found, `PeerAlert` for what the peer
 * reported (PROTOCOL.md §6). (`AuthFailed` is no longer raised here: since version 4 every
 * authentication verdict is reached before the session starts.)
 */
export type ChannelError = ProtocolError | PeerAlert | ConnectionClosed | AuthFailed | Socket.SocketError

/**
 * Why this side believes the server's identity key (PROTOCOL.md §3.7). The server proved possession
 * of it in every case; what differs is what vouches that it is the right key:
 * - `Pinned`: it is the client's `serverKey`;
 * - `KnownHost`: it is the key the client's known-hosts file holds for this peer;
 * - `FirstUse`: the known-hosts file had no key for this peer, and now holds this one;
 * - `Unverified`: nothing: the client neither pins nor keeps known hosts, so a relay with a key of
 *   its own would look the same;
 * - `Own`: on the server, the key it proved itself.
 */
export type ServerKeyTrust = "Pinned" | "KnownHost" | "FirstUse" | "Unverified" | "Own"

export interface ServerKeyInfo {
  /** `sha256:` and the lowercase hex of SHA-256 of the 32-byte Ed25519 public key. */
  readonly fingerprint: string
  readonly trust: ServerKeyTrust
}

/** What the handshake established, exactly (README "Session info"). */
export interface ChannelInfo {
  /**
   * Records are confidential: sealed with AES-256-GCM. When false they are readable but still
   * authenticated, each with an AES-GMAC tag under the same keys (PROTOCOL.md §4.4).
   */
  readonly encrypted: boolean
  /** Both sides proved knowledge of the password (PROTOCOL.md §5). */
  readonly passwordAuthenticated: boolean
  /** The server's identity key and why it is trusted; none when the server proved no key (§3.7). */
  readonly serverKey: Option.Option<ServerKeyInfo>
  readonly localPolicy: EncryptionPolicy
  readonly peerPolicy: EncryptionPolicy
  /** Human-readable cipher suite, e.g. `ECDHE-P521+HKDF-SHA256+AES-256-GCM`. */
  readonly suite: string
}

export interface ChannelHandler {
  /** Application messages (PACKET, CHUNK_*, STREAM_CREDIT), in arrival order. */
  readonly onMessage: (type: number, body: Uint8Array) => void
  /** Called once, when the channel can no longer receive. */
  readonly onEnd: (error: ChannelError) => void
}

export interface SecureChannel {
  readonly info: ChannelInfo
  /**
   * Frames, seals and queues one message whose body is `head ‖ data`; synchronous, in call order.
   * No-op once closed. `data` is not copied before it is sealed or queued: it must not change.
   */
  readonly write: (type: number, head: Uint8Array, data?: Uint8Array) => void
  /** Waits while the outgoing queue is above its high-water mark (back-pressure). */
  readonly awaitWritable: Effect.Effect<void>
  /** Bytes queued for the socket and not yet written. */
  readonly pendingBytes: () => number
  /** When the socket write in flight began, if one is (see `Framed.writingSince`). */
  readonly writingSince: () => number | undefined
  /**
   * Frames received since the handshake, of any type (PING and PONG included): the keep-alive's
   * measure of a live peer (PROTOCOL.md §7.4). A counter, so that receiving costs no clock read.
   */
  readonly heard: () => number
  /** Sends a PING (PROTOCOL.md §7.4); the peer answers with a PONG, which the channel consumes. */
  readonly ping: () => void
  /**
   * Reads the peer slowly while the application leaves what arrived untaken, or at full speed again
   * (PROTOCOL.md §10.1, read pacing).
   */
  readonly paceReading: (slow: boolean) => void
  /** Starts delivering messages; frames that arrived earlier are delivered first. */
  readonly listen: (handler: ChannelHandler) => void
  /**
   * Orderly close: sends CLOSE, flushes and ends the write side. Idempotent. A flush that makes no
   * progress for `flushWithin` (the peer stopped reading) is abandoned.
   */
  readonly close: (flushWithin: Duration.DurationInput) => Effect.Effect<void>
  /**
   * Ends the channel with `error` from inside the frame path: queues the matching alert and tells
   * the handler. The transport is released by `release`, which the owner runs. `ConnectionClosed`
   * only as `Timeout`: the keep-alive went unanswered (PROTOCOL.md §7.4).
   */
  readonly fail: (error: ProtocolError | ConnectionClosed) => void
  /**
   * Releases the transport once the channel has ended: flushes what is queued (abandoned after
   * `flushWithin`), ends the write side and stops reading. After a close we started, it first
   * gives the peer a moment to answer with its own CLOSE (PROTOCOL.md §7.1).
   */
  readonly release: (flushWithin: Duration.DurationInput) => Effect.Effect<void>
}

/** Maps how the transport's read side ended to the channel's error (PROTOCOL.md §7.1). */
export const readEndToError = (end: ReadEnd): ChannelError =>
  end._tag === "Eof"
    ? new ConnectionClosed({ reason: "Cut" })
    : end.error

export const makeSecureChannel = (
  framed: Framed,
  records: RecordLayer,
  info: ChannelInfo
): SecureChannel => new Channel(framed, records, info)

/**
 * A class, so that an idle channel is one object rather than a closure per operation
 * (docs/resources.md, "Memory of an idle session"); the callbacks handed to the layers below are
 * its only closures.
 */
class Channel implements SecureChannel, FrameSink {
  private ended: ChannelError | undefined = undefined
  private closing = false
  /** We sent CLOSE first: the peer's answering CLOSE (and end of stream) is still to come. */
  private initiatedClose = false
  private handler: ChannelHandler | undefined = undefined
  private heardFrames = 0
  private pings = 0
  // Messages held back until the writer takes its next batch, then sealed together as one BATCH
  // record (PROTOCOL.md §7.3): one AEAD operation and one tag for all of them instead of one each.
  private held: Array<BatchItem> = []
  private heldBytes = 0

  constructor(private readonly framed: Framed, private readonly records: RecordLayer, readonly info: ChannelInfo) {}

  /**
   * A record the local `Crypto` could not seal ends the channel with `ProtocolError("Internal")` and
   * no alert (PROTOCOL.md §6): the peer would never see the message, and carrying on would lose it
   * silently.
   */
  private sealingFailed(failure: CryptoError): void {
    this.fail(new ProtocolError({ reason: "Internal", detail: "a record could not be sealed", cause: failure }))
  }

  /** Seals and queues one record. */
  private seal(type: number, head: Uint8Array, data: Uint8Array): void {
    const failure = this.records.write(type, head, data, this.framed.enqueue)
    if (failure !== undefined) this.sealingFailed(failure)
  }

  /** Seals what is held as one record (a BATCH of several); why not, if it could not be sealed. */
  private sealHeldRecord(): CryptoError | undefined {
    if (this.held.length === 0) return undefined
    const items = this.held
    const length = this.heldBytes
    this.held = []
    this.heldBytes = 0
    return items.length === 1
      ? this.records.write(items[0]!.type, items[0]!.head, items[0]!.data, this.framed.enqueue)
      : this.records.write(MessageType.BATCH, encodeBatch(items, length), EMPTY, this.framed.enqueue)
  }

  private readonly sealHeld = (): void => {
    const failure = this.sealHeldRecord()
    if (failure !== undefined) this.sealingFailed(failure)
  }

  write(type: number, head: Uint8Array, data: Uint8Array = EMPTY): void {
    if (this.closing || this.ended !== undefined) return
    const size = BATCH_ITEM_HEADER + head.length + data.length
    // A large message goes alone, as it would fill most of a batch anyway; what was held goes first.
    if (size > BATCH_LIMIT / 2 || !batchable(type)) {
      this.sealHeld()
      if (!this.closing) this.seal(type, head, data)
      return
    }
    if (this.heldBytes + size > BATCH_LIMIT) this.sealHeld()
    if (this.closing) return
    this.held.push({ type, head, data })
    this.heldBytes += size
    if (this.held.length === 1) this.framed.enqueueLater(this.sealHeld)
  }

  private finish(error: ChannelError): void {
    if (this.ended !== undefined) return
    this.ended = error
    this.handler?.onEnd(error)
  }

  private sendClose(): void {
    if (this.closing) return
    this.sealHeld()
    if (this.closing) return
    this.seal(MessageType.CLOSE, EMPTY, EMPTY)
    this.closing = true
  }

  fail(error: ProtocolError | ConnectionClosed): void {
    if (!this.closing && this.ended === undefined) {
      this.closing = true
      // What was held goes out before the alert. After the handshake no alert means "our own
      // failure" (§6), and a side that could not seal a record has no business sealing one more:
      // the peer then sees the connection end, and `error` stays the reason.
      const unsealed = this.sealHeldRecord()
      const sealing = error._tag === "ProtocolError" && error.reason === "Internal"
      if (unsealed === undefined && !sealing) {
        this.records.write(MessageType.ALERT, encodeAlert(new Alert({ code: errorToAlert(error) })), EMPTY, this.framed.enqueue)
      }
    }
    this.finish(error)
  }

  /** One message of a BATCH: only the session's own types get here (`decodeBatch` checks). */
  private readonly deliverItem = (type: number, body: Uint8Array): void => {
    if (this.ended === undefined) this.handler?.onMessage(type, body)
  }

  private readonly deliver = (type: number, body: Uint8Array): void => {
    if (this.ended !== undefined) return
    switch (type) {
      case MessageType.CLOSE: {
        if (body.length !== 0) return this.fail(new ProtocolError({ reason: "Malformed", detail: "close with a body" }))
        // Answer the peer's CLOSE with ours, like TLS close_notify, then stop.
        this.sendClose()
        this.finish(new ConnectionClosed({ reason: "Closed" }))
        return
      }
      case MessageType.ALERT: {
        // A received alert is never answered with one of ours (PROTOCOL.md §6).
        const alert = decodeAlert(body)
        this.finish(alert._tag === "Right" ? sessionAlertToError(alert.right.code) : alert.left)
        return
      }
      // Keep-alive (PROTOCOL.md §7.4): answered here, never seen by the session, so that it is
      // neither application data nor activity for the idle timeout (§10.3).
      case MessageType.PING: {
        if (body.length !== KEEP_ALIVE_BODY_LENGTH) return this.fail(new ProtocolError({ reason: "Malformed", detail: "ping length" }))
        // Copied: the body is a view into a frame buffer that may be reused before the PONG is written.
        return this.write(MessageType.PONG, body.slice())
      }
      case MessageType.PONG:
        // Its only job was to arrive, which `heard` has counted; the body is opaque to us.
        if (body.length !== KEEP_ALIVE_BODY_LENGTH) return this.fail(new ProtocolError({ reason: "Malformed", detail: "pong length" }))
        return
      case MessageType.PACKET:
      case MessageType.REQUEST:
      case MessageType.REPLY:
      case MessageType.REPLY_ERROR:
      case MessageType.CHUNK_START:
      case MessageType.CHUNK_DATA:
      case MessageType.CHUNK_END:
      case MessageType.STREAM_CREDIT:
      case MessageType.STREAM_CANCEL:
        this.handler?.onMessage(type, body)
        return
      case MessageType.BATCH: {
        const error = decodeBatch(body, this.deliverItem)
        if (error !== undefined) this.fail(error)
        return
      }
      default:
        this.fail(new ProtocolError({ reason: "UnexpectedMessage", detail: `message type ${type}` }))
    }
  }

  listen(next: ChannelHandler): void {
    this.handler = next
    if (this.ended !== undefined) {
      next.onEnd(this.ended)
      return
    }
    // Sealed frames are opened into new memory and never referenced afterwards (PROTOCOL.md §4.4).
    if (this.info.encrypted) this.framed.reuseFrameBuffers()
    this.framed.setSink(this)
  }

  /** A frame from the transport, once `listen` has made this channel the sink. */
  onFrame(type: number, header: Uint8Array, body: Uint8Array): void {
    if (this.ended !== undefined) return
    this.heardFrames++
    const error = this.records.read(type, header, body, this.deliver)
    if (error !== undefined) this.fail(error)
  }

  /** A framing error (an oversized or truncated frame) is the peer's fault: it hears why (PROTOCOL.md §2.1). */
  onEnd(end: ReadEnd): void {
    if (end._tag === "ProtocolError") this.fail(end.error)
    else this.finish(readEndToError(end))
  }

  private shutdown(flushWithin: Duration.DurationInput): Effect.Effect<void> {
    return this.framed.endWrite.pipe(
      Effect.timeout(flushWithin),
      Effect.catchAll(() => this.framed.abortWrites),
      Effect.zipRight(this.framed.stopReading)
    )
  }

  // Our write side stays open until the peer has answered: ending it first would race the peer's
  // answer against its transport closing on our end of stream.
  release(flushWithin: Duration.DurationInput): Effect.Effect<void> {
    return Effect.suspend(() =>
      this.initiatedClose
        ? Effect.zipRight(Effect.ignore(Effect.timeout(this.framed.readEnded, PEER_CLOSE_WAIT)), this.shutdown(flushWithin))
        : this.shutdown(flushWithin)
    )
  }

  get awaitWritable(): Effect.Effect<void> {
    return this.framed.awaitWritable
  }

  pendingBytes(): number {
    return this.framed.pendingBytes() + this.heldBytes
  }

  writingSince(): number | undefined {
    return this.framed.writingSince()
  }

  paceReading(slow: boolean): void {
    this.framed.paceReading(slow)
  }

  heard(): number {
    return this.heardFrames
  }

  ping(): void {
    // The body is opaque to the peer (§7.4): a counter, so that PINGs differ on the wire.
    const body = new Uint8Array(KEEP_ALIVE_BODY_LENGTH)
    new DataView(body.buffer).setBigUint64(0, BigInt(++this.pings))
    this.write(MessageType.PING, body)
  }

  close(flushWithin: Duration.DurationInput): Effect.Effect<void> {
    return Effect.suspend(() => {
      const opening = !this.closing && this.ended === undefined
      this.sendClose()
      // Only a CLOSE that went out is waited on for its answer (`release`).
      if (opening && this.ended === undefined) this.initiatedClose = true
      this.finish(new ConnectionClosed({ reason: "Closed" }))
      return this.release(flushWithin)
    })
  }
}
