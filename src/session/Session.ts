/**
 * A session: the seed's procedures on top of a secure channel (PROTOCOL.md §8, §9).
 *
 * Incoming messages are dispatched synchronously, in the channel's frame handler: packets go to the
 * inbox (for `receive`, `respond`, `serve`), replies to the request waiting on their id, chunks into
 * their reassembly buffer. Waiting is done with `Effect.async` callbacks, not Deferreds or fibers per
 * message (docs/performance.md).
 */
import type * as Socket from "@effect/platform/Socket"
import { Cause, Duration, Effect, Either, Exit, FiberSet, Option, Stream } from "effect"
import type { Scope } from "effect"
import type { CryptoService, Sha256Hasher } from "../crypto/Crypto.js"
import { Crypto } from "../crypto/Crypto.js"
import {
  type AuthFailed,
  ConnectionClosed,
  InvalidArgument,
  ProtocolError,
  RemoteError,
  RequestTimeout,
  UnexpectedPacket
} from "../errors.js"
import { checkedSession } from "../internal/validate.js"
import type { ChannelInfo, SecureChannel } from "../channel/SecureChannel.js"
import {
  ChunkEndStatus,
  chunkData,
  ChunkFlags,
  decodeChunkEnd,
  decodeChunkStart,
  decodeStreamCancel,
  decodeStreamCredit,
  encodeStreamCancel,
  encodeStreamCredit,
  INITIAL_STREAM_CREDIT,
  readStreamId
} from "../wire/Chunks.js"
import { MessageType } from "../wire/Messages.js"
import { decodePacket, Packet } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import { decodeReplyError, encodeReplyError } from "../wire/ReplyError.js"
import { makeByteBudget, makeMemoryPool, type MemoryPool } from "./Budget.js"
import { EMPTY, makeContext, malformed, newHasher, own, type Resume } from "./Context.js"
import { makeOutgoing } from "./Outgoing.js"
import { watchTimers } from "./Timers.js"
import type { Watchdog } from "./Watchdog.js"

export type SessionError = ProtocolError | ConnectionClosed | AuthFailed | Socket.SocketError

export interface PacketFilter {
  readonly type?: PacketType | undefined
  readonly id?: number | undefined
}

export interface SessionOptions {
  /** Payloads above this many bytes are chunked (PROTOCOL.md §9). Default 256 KiB. */
  readonly chunkSize?: number | undefined
  /** Largest chunked message accepted, checked before anything is allocated. Default 64 MiB. */
  readonly maxMessageSize?: number | undefined
  /**
   * Bytes this session may hold on the peer's behalf: messages being reassembled, received packets
   * not yet taken, stream data not yet consumed (PROTOCOL.md §10). Default `maxMessageSize` + 16 MiB.
   */
  readonly maxBufferedBytes?: number | undefined
  /** Requests this session may have in flight; more wait for a slot. Default 4096. */
  readonly maxInFlight?: number | undefined
  /** Received packets waiting for `receive`/`serve`; beyond that the peer is flooding. Default 65536. */
  readonly maxQueuedPackets?: number | undefined
  /** Chunked messages and streams the peer may have open at once. Default 64. */
  readonly maxIncomingStreams?: number | undefined
  /** Handlers `serve` runs at once; further packets wait in the inbox, within its budget. Default 1024. */
  readonly maxConcurrentHandlers?: number | undefined
  /**
   * End the session with `ProtocolError("Timeout")` when nothing arrives for this long. Default:
   * never on a client, 5 minutes on a server (`serve`, `listen`); `Duration.infinity` turns it off.
   */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /**
   * End the session with `ProtocolError("Timeout")` when a write to the peer has not completed for
   * this long: the peer stopped reading while we have data for it. Default 30 seconds.
   */
  readonly stallTimeout?: Duration.DurationInput | undefined
  /**
   * Let a `RemoteError` carry the failure's message and stack to the peer when a handler of `serve` or
   * `respond` fails or dies on a request. Off by default: the peer then learns the error's tag only.
   */
  readonly exposeErrors?: boolean | undefined
}

/** What the library itself passes to a session beside the user's options. */
export interface SessionSetup extends SessionOptions {
  readonly peer?: string | undefined
  /** The server-wide pool this session draws on beyond its allowance; by default a pool of its own. */
  readonly pool?: MemoryPool | undefined
  /** The server-wide clock of the time budgets; by default one of its own. */
  readonly watchdog?: Watchdog | undefined
}

export interface SessionInfo extends ChannelInfo {
  /** The peer's address, when the transport knows it. */
  readonly peer: Option.Option<string>
}

/** A stream of unknown length from the peer, paced by credit (PROTOCOL.md §9.3). */
export interface IncomingStream {
  readonly id: number
  readonly type: PacketType
  readonly data: Stream.Stream<Uint8Array, SessionError>
}

export interface RequestOptions {
  /** The reply must have this type, else `UnexpectedPacket`. */
  readonly expect?: PacketType | undefined
  /** Give up with `RequestTimeout` after this long; the id is freed and a late reply dropped. Default: wait. */
  readonly timeout?: Duration.DurationInput | undefined
}

/** How a request can fail beyond the session itself: the peer's `RemoteError`, or our own timeout. */
export type RequestError = SessionError | RemoteError | RequestTimeout | InvalidArgument

export interface Session {
  readonly info: SessionInfo
  /** Sends one packet; payloads above the chunk size are chunked transparently. */
  readonly send: (packet: Packet) => Effect.Effect<void, SessionError | InvalidArgument>
  /** The next packet; `UnexpectedPacket` (and the packet is consumed) when it does not match the filter. */
  readonly receive: (filter?: PacketFilter) => Effect.Effect<Packet, SessionError | UnexpectedPacket | InvalidArgument>
  /**
   * Sends a request and waits for the answer with the same id; many may be in flight. A streamed reply
   * is collected (up to `maxMessageSize`); a peer that cannot answer gives `RemoteError`.
   */
  readonly request: (packet: Packet, options?: RequestOptions) => Effect.Effect<Packet, RequestError | UnexpectedPacket>
  /** Sends a request whose answer is a stream (`replyStream`); a plain reply arrives as a one-chunk stream. */
  readonly requestStream: (
    packet: Packet,
    options?: Pick<RequestOptions, "timeout">
  ) => Effect.Effect<IncomingStream, RequestError>
  /** Answers a received request with `response` (its id set to the request's). */
  readonly reply: (request: Packet, response: Packet) => Effect.Effect<void, SessionError | InvalidArgument>
  /** Answers a received request with a stream, paced by the requester's credit (PROTOCOL.md §9.3). */
  readonly replyStream: <E, R>(
    request: Packet,
    type: PacketType,
    data: Stream.Stream<Uint8Array, E, R>
  ) => Effect.Effect<void, SessionError | InvalidArgument | E, R>
  /** Answers a received request with an error: the requester's `request` fails with it. */
  readonly replyError: (request: Packet, error: RemoteError) => Effect.Effect<void, SessionError | InvalidArgument>
  /** Receives a packet and answers it with `response` (its id set to the request's). Returns the request. */
  readonly receiveAndSend: (
    response: Packet,
    filter?: PacketFilter
  ) => Effect.Effect<Packet, SessionError | UnexpectedPacket | InvalidArgument>
  /**
   * Receives a packet, runs `handler`, and sends back what it returns. Returns the request. A request
   * the handler fails on, dies on or leaves unanswered gets a `RemoteError` (see `serve`).
   */
  readonly respond: <E, R>(
    filter: PacketFilter,
    handler: (packet: Packet) => Effect.Effect<Packet | undefined, E, R>
  ) => Effect.Effect<Packet, SessionError | UnexpectedPacket | InvalidArgument | E, R>
  /**
   * Answers every incoming packet concurrently until the peer closes. On a request (`request`), a
   * handler that fails, dies or returns `undefined` without answering sends the requester a
   * `RemoteError` and serving goes on; on a one-way packet (`send`) a failure ends `serve` with it.
   */
  readonly serve: <E, R>(
    handler: (packet: Packet) => Effect.Effect<Packet | undefined, E, R>
  ) => Effect.Effect<void, SessionError | InvalidArgument | E, R>
  /**
   * Sends a stream of unknown length with back-pressure from the peer's credit. Ends early, without
   * an error, if the receiver cancels it (PROTOCOL.md §9.4).
   */
  readonly sendStream: <E, R>(
    header: { readonly id: number; readonly type: PacketType },
    data: Stream.Stream<Uint8Array, E, R>
  ) => Effect.Effect<void, SessionError | InvalidArgument | E, R>
  /** The next incoming stream (a plain packet arrives as a one-chunk stream). */
  readonly receiveStream: (filter?: PacketFilter) => Effect.Effect<IncomingStream, SessionError | UnexpectedPacket | InvalidArgument>
  /** An id no request of this session is using. */
  readonly nextId: () => number
  /** Orderly close (PROTOCOL.md §7.1). Idempotent. */
  readonly close: Effect.Effect<void>
  /** Completes when the session ends: with `ConnectionClosed("Closed")` after an orderly close. */
  readonly closed: Effect.Effect<SessionError>
}

export const DEFAULT_CHUNK_SIZE = 256 * 1024
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
/** What `maxBufferedBytes` adds to `maxMessageSize` by default: room for packets beside one full message. */
const DEFAULT_BUFFER_HEADROOM = 16 * 1024 * 1024
/** Held by each session without drawing on its server's pool: enough for ordinary request traffic. */
export const CONNECTION_ALLOWANCE = 64 * 1024
/** Charged per queued packet on top of its payload, so that empty packets are not free. */
const ITEM_OVERHEAD = 64
export const DEFAULT_STALL_TIMEOUT = Duration.seconds(30)
export { INITIAL_STREAM_CREDIT }

// --- internal state --------------------------------------------------------------------------

/**
 * A chunked message being reassembled. `buffer` grows with the data that arrived (doubling, capped
 * at `total`), never allocated from the declared total alone (PROTOCOL.md §9.1); its capacity is
 * what the budget is charged.
 */
interface IncomingMessage {
  readonly _tag: "Message"
  /** `kind`: what the reassembled packet is, PACKET, REQUEST or REPLY (PROTOCOL.md §8). */
  readonly start: { readonly id: number; readonly type: PacketType; readonly kind: number }
  readonly total: number
  buffer: Uint8Array
  offset: number
}

/** A stream being received: chunks wait here until the consumer pulls them. */
interface IncomingStreamState {
  readonly _tag: "Stream"
  readonly streamId: number
  readonly chunks: Array<Uint8Array>
  /** Credit granted so far: the initial window plus every STREAM_CREDIT sent (PROTOCOL.md §9.3). */
  granted: number
  /** CHUNK_DATA bytes received; never more than `granted`. */
  received: number
  consumedSinceCredit: number
  done: Exit.Exit<void, SessionError> | undefined
  waiter: Resume<Option.Option<Uint8Array>> | undefined
  hasher: Sha256Hasher | undefined
  /** We sent STREAM_CANCEL: what still arrives is counted against credit, then dropped (PROTOCOL.md §9.4). */
  cancelled: boolean
  /** The buffer small pieces are packed into while they wait (`queueChunk`). */
  pack: Uint8Array | undefined
}

/** Stream data under this size waits packed with its neighbours, in buffers of `PACK_SIZE`. */
const PACK_BELOW = 4096
const PACK_SIZE = 64 * 1024

/** A received packet or stream; `request`: the sender awaits an answer (PROTOCOL.md §8.2). */
type InboxItem =
  | { readonly _tag: "Packet"; readonly packet: Packet; readonly charged: number; readonly request: boolean }
  | { readonly _tag: "Stream"; readonly id: number; readonly type: PacketType; readonly state: IncomingStreamState; readonly request: false }

/** The smallest reassembly buffer; below it, growing step by step would cost more copies than it saves. */
const MIN_REASSEMBLY = 64 * 1024

/** A request of ours in flight: its answer, a packet or a streamed reply, or the peer's `RemoteError`. */
interface PendingRequest {
  result: Exit.Exit<InboxItem, SessionError | RemoteError> | undefined
  resume: Resume<InboxItem, SessionError | RemoteError> | undefined
}

/** A failure's `_tag`, if it has one: what a `RemoteError` says of it by default. */
const tagOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : ""

const matches = (filter: PacketFilter | undefined, packet: { readonly id: number; readonly type: number }) =>
  filter === undefined ||
  ((filter.type === undefined || filter.type === packet.type) && (filter.id === undefined || filter.id === packet.id))

const unexpected = (filter: PacketFilter | undefined, packet: { readonly id: number; readonly type: number }) =>
  new UnexpectedPacket({
    expected: { ...(filter?.type === undefined ? {} : { type: filter.type }), ...(filter?.id === undefined ? {} : { id: filter.id }) },
    received: { type: packet.type, id: packet.id }
  })

export const makeSession = (
  channel: SecureChannel,
  crypto: CryptoService,
  options: SessionSetup = {}
): Effect.Effect<Session, never, Scope.Scope> =>
  Effect.gen(function*() {
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE
    const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE
    const maxQueued = options.maxQueuedPackets ?? 65536
    const maxIncoming = options.maxIncomingStreams ?? 64
    const maxHandlers = Math.max(1, options.maxConcurrentHandlers ?? 1024)
    const maxBuffered = options.maxBufferedBytes ?? maxMessageSize + DEFAULT_BUFFER_HEADROOM
    const exposeErrors = options.exposeErrors ?? false
    const finite = (input: Duration.DurationInput | undefined): Option.Option<number> =>
      input === undefined ? Option.none() : Option.filter(Option.some(Duration.toMillis(input)), Number.isFinite)
    const idleMillis = finite(options.idleTimeout)
    const stallMillis = finite(options.stallTimeout ?? DEFAULT_STALL_TIMEOUT)
    const budget = makeByteBudget({
      limit: maxBuffered,
      allowance: CONNECTION_ALLOWANCE,
      pool: options.pool ?? makeMemoryPool(maxBuffered)
    })
    const encrypted = channel.info.encrypted
    const maxInFlight = Math.max(1, options.maxInFlight ?? 4096)
    /** Requests waiting for one of the `maxInFlight` slots; the pending table itself counts those in use. */
    const slotWaiters: Array<() => void> = []
    const ctx = makeContext(channel, crypto, budget, maxBuffered)
    const { charge, fail } = ctx
    const outgoing = makeOutgoing(ctx, chunkSize)
    let received = 0
    const endWaiters: Array<(error: SessionError) => void> = []
    const inbox: Array<InboxItem> = []
    const takers: Array<Resume<InboxItem>> = []
    /** One per running `serve`: starts another worker when a packet finds all of them busy. */
    const spawners = new Set<() => void>()
    const pending = new Map<number, PendingRequest>()
    const incoming = new Map<number, IncomingMessage | IncomingStreamState>()
    let nextRequestId = 1

    // --- dispatch (synchronous, PROTOCOL.md §8-§9) --------------------------------------------

    /** What an item still holds against the budget, given back once the application has it. */
    const release = (item: InboxItem) => {
      if (item._tag === "Packet") budget.refund(item.charged)
    }

    const deliverItem = (item: InboxItem) => {
      let taker = takers.shift()
      if (taker === undefined) {
        // Every `serve` worker is busy: start one more, up to the limit. It may already be waiting
        // when `spawn` returns; otherwise it finds the item in the inbox.
        for (const spawn of spawners) {
          spawn()
          break
        }
        taker = takers.shift()
      }
      if (taker !== undefined) return taker(Exit.succeed(item))
      if (inbox.length >= maxQueued) return fail(new ProtocolError({ reason: "LimitExceeded", detail: "too many queued packets" }))
      inbox.push(item)
    }

    /** Frees a request's id and its in-flight slot, if the table still holds this very request. */
    const forget = (id: number, slot: PendingRequest) => {
      if (pending.get(id) !== slot) return
      pending.delete(id)
      slotWaiters.shift()?.()
    }

    /**
     * Hands an answer to the request waiting on `id`; false if none is (the request was interrupted
     * or timed out, PROTOCOL.md §8.2), and the caller drops what it holds.
     */
    const deliverAnswer = (id: number, answer: Exit.Exit<InboxItem, SessionError | RemoteError>): boolean => {
      const request = pending.get(id)
      if (request === undefined) return false
      forget(id, request)
      if (request.resume !== undefined) request.resume(answer)
      else request.result = answer
      return true
    }

    /**
     * Hands over a received packet of message type `kind`. `charged` is what its bytes already hold
     * against the budget (a reassembled message); a reply goes straight to its caller and gives that
     * back at once.
     */
    const deliverPacket = (packet: Packet, kind: number, charged: number) => {
      if (kind === MessageType.REPLY) {
        budget.refund(charged)
        deliverAnswer(packet.id, Exit.succeed({ _tag: "Packet", packet, charged: 0, request: false }))
        return
      }
      const extra = ITEM_OVERHEAD + (charged === 0 ? packet.payload.length : 0)
      if (!charge(extra)) return budget.refund(charged)
      deliverItem({ _tag: "Packet", packet, charged: charged + extra, request: kind === MessageType.REQUEST })
    }

    /** Tells the sender of a stream we want no more of it, and gives back what it holds (PROTOCOL.md §9.4). */
    const cancelStream = (state: IncomingStreamState) => {
      if (state.done !== undefined || state.cancelled || ctx.ended !== undefined) return
      state.cancelled = true
      for (const chunk of state.chunks.splice(0)) budget.refund(chunk.length)
      channel.write(MessageType.STREAM_CANCEL, encodeStreamCancel(state.streamId))
    }

    const onChunkStart = (body: Uint8Array) => {
      const decoded = decodeChunkStart(body)
      if (Either.isLeft(decoded)) return fail(decoded.left)
      const start = decoded.right
      if (incoming.has(start.streamId)) return fail(malformed("stream id reused"))
      if (incoming.size >= maxIncoming) return fail(new ProtocolError({ reason: "LimitExceeded", detail: "too many open streams" }))
      const kind = (start.flags & ChunkFlags.REPLY) !== 0
        ? MessageType.REPLY
        : (start.flags & ChunkFlags.REQUEST) !== 0
        ? MessageType.REQUEST
        : MessageType.PACKET
      if ((start.flags & ChunkFlags.STREAM) !== 0) {
        const state: IncomingStreamState = {
          _tag: "Stream",
          streamId: start.streamId,
          chunks: [],
          granted: INITIAL_STREAM_CREDIT,
          received: 0,
          consumedSinceCredit: 0,
          done: undefined,
          waiter: undefined,
          hasher: newHasher(ctx),
          cancelled: false,
          pack: undefined
        }
        incoming.set(start.streamId, state)
        const item: InboxItem = { _tag: "Stream", id: start.id, type: start.type, state, request: false }
        if (kind !== MessageType.REPLY) return deliverItem(item)
        // A streamed reply nobody waits for any more is cancelled at once.
        if (!deliverAnswer(start.id, Exit.succeed(item))) cancelStream(state)
        return
      }
      // Refused before allocating (PROTOCOL.md §9.1).
      if (start.total > maxMessageSize) {
        return fail(new ProtocolError({ reason: "MessageTooLarge", detail: `${start.total} > ${maxMessageSize}` }))
      }
      incoming.set(start.streamId, {
        _tag: "Message",
        start: { id: start.id, type: start.type, kind },
        total: start.total,
        buffer: EMPTY,
        offset: 0
      })
    }

    /** Makes room for `bytes` more in a message's buffer, charging the growth; false if refused. */
    const reserve = (state: IncomingMessage, bytes: number): boolean => {
      const needed = state.offset + bytes
      if (needed <= state.buffer.length) return true
      const size = Math.min(state.total, Math.max(needed, MIN_REASSEMBLY, 2 * state.buffer.length))
      if (!charge(size - state.buffer.length)) return false
      const next = new Uint8Array(size)
      next.set(state.buffer.subarray(0, state.offset), 0)
      state.buffer = next
      return true
    }

    const onChunkData = (body: Uint8Array) => {
      const streamId = readStreamId(body)
      const state = streamId === undefined ? undefined : incoming.get(streamId)
      if (state === undefined) return fail(malformed("data for unknown stream"))
      const data = chunkData(body)
      if (state._tag === "Message") {
        if (state.offset + data.length > state.total) return fail(new ProtocolError({ reason: "StreamIntegrity", detail: "more data than declared" }))
        if (!reserve(state, data.length)) return
        state.buffer.set(data, state.offset)
        state.offset += data.length
        return
      }
      state.received += data.length
      if (state.received > state.granted) return fail(new ProtocolError({ reason: "LimitExceeded", detail: "stream credit exceeded" }))
      if (state.cancelled) return
      if (!charge(data.length)) return
      state.hasher?.update(data)
      // A consumer already waiting takes the view at once; a chunk that waits is owned (`own`).
      if (state.waiter !== undefined) {
        const waiter = state.waiter
        state.waiter = undefined
        waiter(Exit.succeed(Option.some(data)))
      } else {
        queueChunk(state, data)
      }
    }

    /**
     * Queues stream data for its consumer. Small pieces are packed into a shared buffer behind the
     * last one, so that a peer sending many tiny CHUNK_DATA frames costs memory in proportion to its
     * bytes, not one object per frame (PROTOCOL.md §10.1); a stream's chunk boundaries are not kept.
     */
    const queueChunk = (state: IncomingStreamState, data: Uint8Array) => {
      const last = state.chunks.length - 1
      const tail = state.chunks[last]
      if (data.length < PACK_BELOW && tail !== undefined && tail.buffer === state.pack?.buffer) {
        const pack = state.pack
        const end = tail.byteOffset - pack.byteOffset + tail.length
        if (end + data.length <= pack.length) {
          pack.set(data, end)
          state.chunks[last] = pack.subarray(tail.byteOffset - pack.byteOffset, end + data.length)
          return
        }
      }
      if (data.length < PACK_BELOW) {
        state.pack = new Uint8Array(PACK_SIZE)
        state.pack.set(data, 0)
        state.chunks.push(state.pack.subarray(0, data.length))
        return
      }
      state.chunks.push(own(data))
    }

    const verifyDigest = (hasher: Sha256Hasher | undefined, data: Uint8Array | undefined, trailer: Uint8Array | undefined): boolean => {
      if (encrypted) return true
      const digest = data === undefined ? hasher?.digest() : crypto.sha256(data)
      return digest !== undefined && trailer !== undefined && crypto.timingSafeEqual(digest, trailer)
    }

    const finishStream = (state: IncomingStreamState, exit: Exit.Exit<void, SessionError>) => {
      state.done = exit
      if (state.waiter !== undefined && state.chunks.length === 0) {
        const waiter = state.waiter
        state.waiter = undefined
        waiter(Exit.isSuccess(exit) ? Exit.succeed(Option.none()) : Exit.failCause(exit.cause))
      }
    }

    const onChunkEnd = (body: Uint8Array) => {
      const streamId = readStreamId(body)
      const state = streamId === undefined ? undefined : incoming.get(streamId)
      if (streamId === undefined || state === undefined) return fail(malformed("end of unknown stream"))
      const decoded = decodeChunkEnd(body, !encrypted)
      if (Either.isLeft(decoded)) return fail(decoded.left)
      const { digest: trailer, status } = decoded.right
      incoming.delete(streamId)
      if (state._tag === "Message") {
        // The sender gave up: nothing is delivered and the buffer goes back to the budget.
        if (status !== ChunkEndStatus.OK) return budget.refund(state.buffer.length)
        // Growth is capped at `total`, so a complete message fills its buffer exactly.
        if (state.offset !== state.total || !verifyDigest(undefined, state.buffer, trailer)) {
          return fail(new ProtocolError({ reason: "StreamIntegrity" }))
        }
        return deliverPacket(new Packet({ id: state.start.id, type: state.start.type, payload: state.buffer }, true), state.start.kind, state.total)
      }
      if (state.cancelled) return
      if (status !== ChunkEndStatus.OK) {
        return finishStream(state, Exit.fail(new ProtocolError({ reason: "StreamIntegrity", detail: "sender aborted the stream" })))
      }
      if (!verifyDigest(state.hasher, undefined, trailer)) {
        finishStream(state, Exit.fail(new ProtocolError({ reason: "StreamIntegrity" })))
        return fail(new ProtocolError({ reason: "StreamIntegrity" }))
      }
      finishStream(state, Exit.void)
    }

    const onStreamCredit = (body: Uint8Array) => {
      const decoded = decodeStreamCredit(body)
      if (Either.isLeft(decoded)) return fail(decoded.left)
      outgoing.credit(decoded.right)
    }

    const onStreamCancel = (body: Uint8Array) => {
      const streamId = decodeStreamCancel(body)
      if (Either.isLeft(streamId)) return fail(streamId.left)
      outgoing.cancel(streamId.right)
    }

    const onReplyError = (body: Uint8Array) => {
      const decoded = decodeReplyError(body)
      if (Either.isLeft(decoded)) return fail(decoded.left)
      deliverAnswer(decoded.right.id, Exit.fail(decoded.right.error))
    }

    const onEnd = (error: SessionError) => {
      if (ctx.ended !== undefined) return
      ctx.ended = error
      const failure = Exit.fail(error)
      for (const taker of takers.splice(0)) taker(failure)
      for (const request of pending.values()) {
        if (request.resume !== undefined) request.resume(failure)
        else request.result = failure
      }
      pending.clear()
      for (const waiter of slotWaiters.splice(0)) waiter()
      for (const state of incoming.values()) if (state._tag === "Stream") finishStream(state, failure)
      incoming.clear()
      // Nobody will take what is still queued: it goes, and everything held goes back to the pool.
      inbox.length = 0
      budget.close()
      outgoing.end()
      for (const waiter of endWaiters.splice(0)) waiter(error)
    }

    channel.listen({
      onMessage: (type, body) => {
        received++
        switch (type) {
          case MessageType.PACKET:
          case MessageType.REQUEST:
          case MessageType.REPLY: {
            // A queued packet keeps its bytes; a reply is taken by its caller at once.
            const packet = decodePacket(type === MessageType.REPLY ? body : own(body))
            if (Either.isLeft(packet)) return fail(packet.left)
            return deliverPacket(packet.right, type, 0)
          }
          case MessageType.REPLY_ERROR:
            return onReplyError(body)
          case MessageType.CHUNK_START:
            return onChunkStart(body)
          case MessageType.CHUNK_DATA:
            return onChunkData(body)
          case MessageType.CHUNK_END:
            return onChunkEnd(body)
          case MessageType.STREAM_CREDIT:
            return onStreamCredit(body)
          case MessageType.STREAM_CANCEL:
            return onStreamCancel(body)
        }
      },
      onEnd
    })

    // When the channel ends for any reason, release the transport too.
    const closed: Effect.Effect<SessionError> = Effect.async<SessionError>((resume) => {
      if (ctx.ended !== undefined) return resume(Effect.succeed(ctx.ended))
      const waiter = (error: SessionError) => resume(Effect.succeed(error))
      endWaiters.push(waiter)
      return Effect.sync(() => {
        const i = endWaiters.indexOf(waiter)
        if (i >= 0) endWaiters.splice(i, 1)
      })
    })
    // Flushing is bounded like any write (the stall timeout); after a failure only the alert is left to
    // send, so it gets a second at most.
    const flushWithin = Option.getOrElse(stallMillis, () => Infinity)
    // Released when the session ends, by a fiber started then rather than one waiting all along.
    const runAtEnd = yield* FiberSet.makeRuntime<never, void, never>()
    endWaiters.push((error) =>
      void runAtEnd(channel.release(error instanceof ConnectionClosed ? flushWithin : Math.min(flushWithin, 1000))))
    yield* Effect.addFinalizer(() => channel.close(flushWithin))

    yield* watchTimers(ctx, { idle: idleMillis, stall: stallMillis, watchdog: options.watchdog, received: () => received })

    // --- receiving -----------------------------------------------------------------------------

    const takeItem: Effect.Effect<InboxItem, SessionError> = Effect.async<InboxItem, SessionError>((resume) => {
      const item = inbox.shift()
      if (item !== undefined) return resume(Effect.succeed(item))
      if (ctx.ended !== undefined) return resume(Effect.fail(ctx.ended))
      const taker: Resume<InboxItem> = (exit) => resume(exit)
      takers.push(taker)
      return Effect.sync(() => {
        const i = takers.indexOf(taker)
        if (i >= 0) takers.splice(i, 1)
      })
    })

    const pullChunk = (state: IncomingStreamState): Effect.Effect<Option.Option<Uint8Array>, SessionError> =>
      Effect.async<Option.Option<Uint8Array>, SessionError>((resume) => {
        const chunk = state.chunks.shift()
        if (chunk !== undefined) return resume(Effect.succeed(Option.some(chunk)))
        if (state.done !== undefined) {
          return resume(Exit.isSuccess(state.done) ? Effect.succeed(Option.none()) : Effect.failCause(state.done.cause))
        }
        state.waiter = (exit) => resume(exit)
        return Effect.sync(() => {
          state.waiter = undefined
        })
      })

    /** Hands credit back once half the window is consumed, so the sender rarely stalls. */
    const consumed = (state: IncomingStreamState, bytes: number) => {
      budget.refund(bytes)
      state.consumedSinceCredit += bytes
      if (state.done === undefined && state.consumedSinceCredit >= INITIAL_STREAM_CREDIT / 2) {
        channel.write(MessageType.STREAM_CREDIT, encodeStreamCredit(state.streamId, state.consumedSinceCredit))
        state.granted += state.consumedSinceCredit
        state.consumedSinceCredit = 0
      }
    }

    /**
     * A stream's data for its consumer. A consumer that stops early cancels the rest (PROTOCOL.md
     * §9.4) and gives back what was waiting for it.
     */
    const streamOf = (state: IncomingStreamState): Stream.Stream<Uint8Array, SessionError> =>
      Stream.repeatEffectOption(
        pullChunk(state).pipe(
          Effect.mapError(Option.some),
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(Option.none()),
            onSome: (chunk) =>
              Effect.sync(() => {
                consumed(state, chunk.length)
                return chunk
              })
          }))
        )
      ).pipe(
        Stream.ensuring(Effect.sync(() => {
          for (const chunk of state.chunks.splice(0)) budget.refund(chunk.length)
          cancelStream(state)
        }))
      )

    /**
     * Collects a stream into one packet for `receive` and `serve`. The running total is checked
     * against `maxMessageSize` as the data arrives and charged to the budget, so an endless stream
     * ends the session at the limit instead of growing without bound (PROTOCOL.md §9.3).
     * Returns the packet and what it holds against the budget.
     */
    const collect = (item: InboxItem): Effect.Effect<readonly [Packet, number], SessionError> => {
      if (item._tag === "Packet") return Effect.succeed([item.packet, item.charged] as const)
      const chunks: Array<Uint8Array> = []
      let total = 0
      const tooLarge = () => {
        const error = new ProtocolError({ reason: "MessageTooLarge", detail: `stream over ${maxMessageSize} bytes` })
        fail(error)
        return error
      }
      return Stream.runForEach(streamOf(item.state), (chunk) =>
        Effect.suspend(() => {
          if (total + chunk.length > maxMessageSize) return Effect.fail(tooLarge())
          if (!charge(chunk.length)) return Effect.fail(ctx.ended ?? tooLarge())
          total += chunk.length
          chunks.push(chunk)
          return Effect.void
        })).pipe(
          Effect.onError(() => Effect.sync(() => budget.refund(total))),
          Effect.map(() => {
            const payload = new Uint8Array(total)
            let offset = 0
            for (const c of chunks) {
              payload.set(c, offset)
              offset += c.length
            }
            return [new Packet({ id: item.id, type: item.type, payload }, true), total] as const
          })
        )
    }

    /** Collects an item, hands the packet to `use`, and gives its bytes back to the budget after. */
    const withPacket = <A, E, R>(item: InboxItem, use: (packet: Packet) => Effect.Effect<A, E, R>) =>
      Effect.flatMap(collect(item), ([packet, charged]) =>
        Effect.ensuring(use(packet), Effect.sync(() => budget.refund(charged))))

    /** Takes the next item, failing with `UnexpectedPacket` (the item consumed) when it does not match. */
    const takeMatching = (filter: PacketFilter | undefined): Effect.Effect<InboxItem, SessionError | UnexpectedPacket> =>
      Effect.flatMap(takeItem, (item): Effect.Effect<InboxItem, UnexpectedPacket> => {
        const header = item._tag === "Packet" ? item.packet : item
        if (matches(filter, header)) return Effect.succeed(item)
        release(item)
        return Effect.fail(unexpected(filter, header))
      })

    const toIncomingStream = (item: InboxItem): IncomingStream => {
      release(item)
      return item._tag === "Packet"
        ? { id: item.packet.id, type: item.packet.type, data: Stream.make(item.packet.payload) }
        : { id: item.id, type: item.type, data: streamOf(item.state) }
    }

    const receive = (filter?: PacketFilter): Effect.Effect<Packet, SessionError | UnexpectedPacket> =>
      Effect.flatMap(takeMatching(filter), (item) => withPacket(item, Effect.succeed))

    // --- answering requests (PROTOCOL.md §8.2, §8.3) --------------------------------------------

    /** Requests that got their answer, so that `serve` does not answer them again with NO_REPLY. */
    const answered = new WeakSet<Packet>()

    const reply = (request: Packet, response: Packet): Effect.Effect<void, SessionError> =>
      Effect.suspend(() => {
        answered.add(request)
        return outgoing.sendPacket(
          response.id === request.id ? response : new Packet({ id: request.id, type: response.type, payload: response.payload }, true),
          MessageType.REPLY
        )
      })

    const replyError = (request: Packet, error: RemoteError): Effect.Effect<void, SessionError> =>
      Effect.suspend(() => {
        if (ctx.ended !== undefined) return Effect.fail(ctx.ended)
        answered.add(request)
        return outgoing.write(MessageType.REPLY_ERROR, encodeReplyError(request.id, error))
      })

    const replyStream = <E, R>(request: Packet, type: PacketType, data: Stream.Stream<Uint8Array, E, R>) =>
      Effect.suspend(() => {
        answered.add(request)
        return outgoing.sendStream({ id: request.id, type }, data, ChunkFlags.STREAM | ChunkFlags.REPLY)
      })

    /** What the requester learns of a handler's failure: its tag, or everything with `exposeErrors`. */
    const remoteErrorOf = (cause: Cause.Cause<unknown>): RemoteError => {
      const failure = Cause.failureOption(cause)
      const detail = exposeErrors ? Cause.pretty(cause) : Option.match(failure, { onNone: () => "", onSome: tagOf })
      return new RemoteError({ reason: Option.isSome(failure) ? "Failure" : "Defect", detail })
    }

    /**
     * Runs `handler` on an item and sends its answer. A request always gets one: the handler's reply,
     * or a `RemoteError` when it fails, dies or answers nothing; the session goes on either way.
     */
    const handle = <E, R>(
      item: InboxItem,
      handler: (packet: Packet) => Effect.Effect<Packet | undefined, E, R>
    ): Effect.Effect<Packet, SessionError | E, R> =>
      withPacket(item, (packet) =>
        Effect.matchCauseEffect(handler(packet), {
          onSuccess: (response): Effect.Effect<Packet, SessionError> =>
            response !== undefined
              ? Effect.as(reply(packet, response), packet)
              : item.request && !answered.has(packet)
              ? Effect.as(replyError(packet, new RemoteError({ reason: "NoReply", detail: "" })), packet)
              : Effect.succeed(packet),
          onFailure: (cause): Effect.Effect<Packet, SessionError | E> =>
            !item.request || Cause.isInterruptedOnly(cause)
              ? Effect.failCause(cause)
              : answered.has(packet)
              ? Effect.as(Effect.logDebug("handler failed after answering its request", cause), packet)
              : Effect.as(replyError(packet, remoteErrorOf(cause)), packet)
        }))

    // --- requesting ----------------------------------------------------------------------------

    const awaitAnswer = (id: number, slot: PendingRequest): Effect.Effect<InboxItem, SessionError | RemoteError> =>
      Effect.async<InboxItem, SessionError | RemoteError>((resume) => {
        if (slot.result !== undefined) return resume(slot.result)
        slot.resume = (exit) => resume(exit)
        return Effect.sync(() => forget(id, slot))
      })

    const awaitSlot: Effect.Effect<void> = Effect.async<void>((resume) => {
      const waiter = () => resume(Effect.void)
      slotWaiters.push(waiter)
      return Effect.sync(() => {
        const i = slotWaiters.indexOf(waiter)
        if (i >= 0) slotWaiters.splice(i, 1)
      })
    })

    /** Sends a REQUEST and waits for its answer; the id is in flight until then, and free after. */
    const exchange = (packet: Packet): Effect.Effect<InboxItem, SessionError | RemoteError | InvalidArgument> =>
      Effect.suspend(() => {
        if (ctx.ended !== undefined) return Effect.fail(ctx.ended)
        if (pending.size >= maxInFlight) return Effect.zipRight(awaitSlot, exchange(packet))
        if (pending.has(packet.id)) {
          // Our own mistake, not the peer's: two requests can't share an id (nextId gives free ones).
          return Effect.fail(
            new InvalidArgument({ reason: "Packet", field: "packet.id", detail: `request id ${packet.id} is already in flight; take ids from nextId()` })
          )
        }
        const slot: PendingRequest = { result: undefined, resume: undefined }
        pending.set(packet.id, slot)
        return outgoing.sendPacket(packet, MessageType.REQUEST).pipe(
          Effect.zipRight(awaitAnswer(packet.id, slot)),
          Effect.onExit(() => Effect.sync(() => forget(packet.id, slot)))
        )
      })

    const withTimeout = <A, E>(
      effect: Effect.Effect<A, E>,
      id: number,
      timeout: Duration.DurationInput | undefined
    ): Effect.Effect<A, E | RequestTimeout> => {
      if (timeout === undefined) return effect
      const millis = Duration.toMillis(timeout)
      return Effect.timeoutFail(effect, { duration: timeout, onTimeout: () => new RequestTimeout({ id, millis }) })
    }

    const request = (packet: Packet, requestOptions?: RequestOptions): Effect.Effect<Packet, RequestError | UnexpectedPacket> =>
      withTimeout(
        Effect.flatMap(exchange(packet), (item) =>
          // A streamed reply is collected, and what it held goes back at once: the caller owns it now.
          Effect.map(collect(item), ([answer, charged]) => {
            budget.refund(charged)
            return answer
          })),
        packet.id,
        requestOptions?.timeout
      ).pipe(
        Effect.flatMap((answer) =>
          requestOptions?.expect === undefined || answer.type === requestOptions.expect
            ? Effect.succeed(answer)
            : Effect.fail(unexpected({ type: requestOptions.expect, id: packet.id }, answer))
        )
      )

    const requestStream = (packet: Packet, requestOptions?: Pick<RequestOptions, "timeout">): Effect.Effect<IncomingStream, RequestError> =>
      withTimeout(Effect.map(exchange(packet), toIncomingStream), packet.id, requestOptions?.timeout)

    // --- serving -------------------------------------------------------------------------------

    const respond = <E, R>(
      filter: PacketFilter,
      handler: (packet: Packet) => Effect.Effect<Packet | undefined, E, R>
    ): Effect.Effect<Packet, SessionError | UnexpectedPacket | E, R> => Effect.flatMap(takeMatching(filter), (item) => handle(item, handler))

    const serve = <E, R>(
      handler: (packet: Packet) => Effect.Effect<Packet | undefined, E, R>
    ): Effect.Effect<void, SessionError | E, R> =>
      Effect.scoped(
        Effect.gen(function*() {
          const handlers = yield* FiberSet.make<void, SessionError | E>()
          const run = yield* FiberSet.runtime(handlers)<R>()
          // Long-lived workers, one per packet being handled at once, instead of a fiber per packet
          // (docs/performance.md): a worker that finishes takes the next packet, and a packet that finds
          // every worker busy starts one more, so handling stays fully concurrent.
          const worker: Effect.Effect<never, SessionError | E, R> = Effect.forever(Effect.flatMap(takeItem, (item) => handle(item, handler)))
          // Up to `maxConcurrentHandlers` workers; beyond that, packets wait in the inbox, within its budget.
          let workers = 0
          const spawn = () => {
            if (workers >= maxHandlers) return
            workers++
            run(worker)
          }
          spawners.add(spawn)
          yield* Effect.addFinalizer(() => Effect.sync(() => spawners.delete(spawn)))
          for (let i = 0; i < Math.max(1, inbox.length); i++) spawn()
          const outcome = yield* Effect.either(FiberSet.join(handlers))
          if (Either.isLeft(outcome)) {
            const error = outcome.left
            // An orderly close by the peer is how serving normally ends.
            if (error instanceof ConnectionClosed && error.reason === "Closed") return
            return yield* Effect.fail(error)
          }
        })
      )

    const receiveStream = (filter?: PacketFilter): Effect.Effect<IncomingStream, SessionError | UnexpectedPacket> =>
      Effect.map(takeMatching(filter), toIncomingStream)

    const nextId = () => {
      while (pending.has(nextRequestId)) nextRequestId = (nextRequestId + 1) >>> 0
      const id = nextRequestId
      nextRequestId = (nextRequestId + 1) >>> 0
      return id
    }

    return {
      info: { ...channel.info, peer: Option.fromNullable(options.peer) },
      send: (packet) => outgoing.sendPacket(packet, MessageType.PACKET),
      receive,
      request,
      requestStream,
      reply,
      replyStream,
      replyError,
      receiveAndSend: (response, filter) =>
        Effect.flatMap(receive(filter), (packet) => Effect.as(reply(packet, response), packet)),
      respond,
      serve,
      sendStream: (header, data) => outgoing.sendStream(header, data, ChunkFlags.STREAM),
      receiveStream,
      nextId,
      close: channel.close(flushWithin),
      closed
    }
  })

export const fromHandshake = <E, R>(
  handshake: Effect.Effect<SecureChannel, E, R>,
  options: SessionSetup
): Effect.Effect<Session, E, R | Crypto | Scope.Scope> =>
  Effect.flatMap(handshake, (channel) => Effect.flatMap(Crypto, (crypto) => Effect.map(makeSession(channel, crypto, options), checkedSession)))
