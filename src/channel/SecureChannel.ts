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
import type { AuthFailed, EncryptionPolicy, PeerAlert } from "../errors.js"
import { ConnectionClosed, ProtocolError } from "../errors.js"
import type { Framed, ReadEnd } from "../transport/Framed.js"
import { BATCH_ITEM_HEADER, BATCH_LIMIT, type BatchItem, batchable, decodeBatch, encodeBatch } from "../wire/Batch.js"
import { decodeAlert, encodeAlert, Alert, KEEP_ALIVE_BODY_LENGTH, MessageType } from "../wire/Messages.js"
import { errorToAlert, sessionAlertToError } from "./Alerts.js"
import type { RecordLayer } from "./RecordLayer.js"

const EMPTY = new Uint8Array(0)
/** How long an orderly close waits for the peer's answering CLOSE before it stops reading. */
const PEER_CLOSE_WAIT = Duration.seconds(1)

/**
 * How a channel ends: `ProtocolError` for what this side found, `PeerAlert` for what the peer
 * reported (PROTOCOL.md §6). `AuthFailed` only as `ServerUnproven`: a client that rejects the
 * server's password proof does so after the server has started its session.
 */
export type ChannelError = ProtocolError | PeerAlert | ConnectionClosed | AuthFailed | Socket.SocketError

export interface ChannelInfo {
  /**
   * Records are sealed with AES-256-GCM. When false they are readable but still authenticated, each
   * with an AES-GMAC tag under the same keys (PROTOCOL.md §4.4).
   */
  readonly encrypted: boolean
  /** Both sides proved knowledge of the password (PROTOCOL.md §5). */
  readonly authenticated: boolean
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
): SecureChannel => {
  let ended: ChannelError | undefined
  let closing = false
  /** We sent CLOSE first: the peer's answering CLOSE (and end of stream) is still to come. */
  let initiatedClose = false
  let handler: ChannelHandler | undefined
  const emit = framed.enqueue
  let heard = 0
  let pings = 0

  // Messages held back until the writer takes its next batch, then sealed together as one BATCH
  // record (PROTOCOL.md §7.3): one AEAD operation and one tag for all of them instead of one each.
  let held: Array<BatchItem> = []
  let heldBytes = 0

  const sealHeld = () => {
    if (held.length === 0) return
    const items = held
    const length = heldBytes
    held = []
    heldBytes = 0
    if (items.length === 1) records.write(items[0]!.type, items[0]!.head, items[0]!.data, emit)
    else records.write(MessageType.BATCH, encodeBatch(items, length), EMPTY, emit)
  }

  const write = (type: number, head: Uint8Array, data: Uint8Array = EMPTY) => {
    if (closing || ended !== undefined) return
    const size = BATCH_ITEM_HEADER + head.length + data.length
    // A large message goes alone, as it would fill most of a batch anyway; what was held goes first.
    if (size > BATCH_LIMIT / 2 || !batchable(type)) {
      sealHeld()
      records.write(type, head, data, emit)
      return
    }
    if (heldBytes + size > BATCH_LIMIT) sealHeld()
    held.push({ type, head, data })
    heldBytes += size
    if (held.length === 1) framed.enqueueLater(sealHeld)
  }

  const finish = (error: ChannelError) => {
    if (ended !== undefined) return
    ended = error
    handler?.onEnd(error)
  }

  const sendClose = () => {
    if (closing) return
    sealHeld()
    records.write(MessageType.CLOSE, EMPTY, EMPTY, emit)
    closing = true
  }

  const fail = (error: ProtocolError | ConnectionClosed) => {
    if (!closing && ended === undefined) {
      sealHeld()
      records.write(MessageType.ALERT, encodeAlert(new Alert({ code: errorToAlert(error) })), EMPTY, emit)
      closing = true
    }
    finish(error)
  }

  /** One message of a BATCH: only the session's own types get here (`decodeBatch` checks). */
  const deliverItem = (type: number, body: Uint8Array) => {
    if (ended === undefined) handler?.onMessage(type, body)
  }

  const deliver = (type: number, body: Uint8Array) => {
    if (ended !== undefined) return
    switch (type) {
      case MessageType.CLOSE: {
        if (body.length !== 0) return fail(new ProtocolError({ reason: "Malformed", detail: "close with a body" }))
        // Answer the peer's CLOSE with ours, like TLS close_notify, then stop.
        sendClose()
        finish(new ConnectionClosed({ reason: "Closed" }))
        return
      }
      case MessageType.ALERT: {
        // A received alert is never answered with one of ours (PROTOCOL.md §6).
        const alert = decodeAlert(body)
        finish(alert._tag === "Right" ? sessionAlertToError(alert.right.code) : alert.left)
        return
      }
      // Keep-alive (PROTOCOL.md §7.4): answered here, never seen by the session, so that it is
      // neither application data nor activity for the idle timeout (§10.3).
      case MessageType.PING: {
        if (body.length !== KEEP_ALIVE_BODY_LENGTH) return fail(new ProtocolError({ reason: "Malformed", detail: "ping length" }))
        // Copied: the body is a view into a frame buffer that may be reused before the PONG is written.
        return write(MessageType.PONG, body.slice())
      }
      case MessageType.PONG:
        // Its only job was to arrive, which `heard` has counted; the body is opaque to us.
        if (body.length !== KEEP_ALIVE_BODY_LENGTH) return fail(new ProtocolError({ reason: "Malformed", detail: "pong length" }))
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
        handler?.onMessage(type, body)
        return
      case MessageType.BATCH: {
        const error = decodeBatch(body, deliverItem)
        if (error !== undefined) fail(error)
        return
      }
      default:
        fail(new ProtocolError({ reason: "UnexpectedMessage", detail: `message type ${type}` }))
    }
  }

  const listen = (next: ChannelHandler) => {
    handler = next
    if (ended !== undefined) {
      next.onEnd(ended)
      return
    }
    // Sealed frames are opened into new memory and never referenced afterwards (PROTOCOL.md §4.4).
    if (info.encrypted) framed.reuseFrameBuffers()
    framed.setSink({
      onFrame: (type, header, body) => {
        if (ended !== undefined) return
        heard++
        const error = records.read(type, header, body, deliver)
        if (error !== undefined) fail(error)
      },
      // A framing error (an oversized or truncated frame) is the peer's fault: it hears why (PROTOCOL.md §2.1).
      onEnd: (end) => (end._tag === "ProtocolError" ? fail(end.error) : finish(readEndToError(end)))
    })
  }

  const shutdown = (flushWithin: Duration.DurationInput) =>
    framed.endWrite.pipe(
      Effect.timeout(flushWithin),
      Effect.catchAll(() => framed.abortWrites),
      Effect.zipRight(framed.stopReading)
    )

  // Our write side stays open until the peer has answered: ending it first would race the peer's
  // answer against its transport closing on our end of stream.
  const release = (flushWithin: Duration.DurationInput) =>
    initiatedClose
      ? Effect.zipRight(Effect.ignore(Effect.timeout(framed.readEnded, PEER_CLOSE_WAIT)), shutdown(flushWithin))
      : shutdown(flushWithin)

  return {
    info,
    write,
    awaitWritable: framed.awaitWritable,
    pendingBytes: () => framed.pendingBytes() + heldBytes,
    writingSince: framed.writingSince,
    heard: () => heard,
    ping: () => {
      // The body is opaque to the peer (§7.4): a counter, so that PINGs differ on the wire.
      const body = new Uint8Array(KEEP_ALIVE_BODY_LENGTH)
      new DataView(body.buffer).setBigUint64(0, BigInt(++pings))
      write(MessageType.PING, body)
    },
    listen,
    close: (flushWithin) =>
      Effect.suspend(() => {
        if (!closing && ended === undefined) initiatedClose = true
        sendClose()
        finish(new ConnectionClosed({ reason: "Closed" }))
        return release(flushWithin)
      }),
    fail,
    release
  }
}
