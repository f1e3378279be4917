/**
 * A session: the seed's procedures on top of a secure channel (PROTOCOL.md §8, §9).
 *
 * This module holds the public types and wires the parts together, each with one job and sharing
 * only the `SessionContext` (docs/architecture.md): `Inbox`, `Requests`, `Reassembly`,
 * `IncomingStreams`, `Outgoing`, `Serving` and `Timers`. What stays here is the dispatch: each
 * incoming message is routed synchronously, in the channel's frame handler — packets to the inbox,
 * answers to the request waiting on their id, chunks to their transfer — and waiting is done with
 * `Effect.async` callbacks, not Deferreds or fibers per message (docs/performance.md).
 */
import type * as Socket from "@effect/platform/Socket"
import { Duration, Effect, Either, Exit, Fiber, Option, Runtime, Scope, type Stream } from "effect"
import type { CryptoService } from "../crypto/Crypto.js"
import { Crypto } from "../crypto/Crypto.js"
import {
  type AuthFailed,
  ConnectionClosed,
  type InvalidArgument,
  type PeerAlert,
  ProtocolError,
  type RemoteError,
  type RequestTimeout,
  type UnexpectedPacket
} from "../errors.js"
import { checkedSession } from "../internal/validate.js"
import type { ChannelHandler, ChannelInfo, SecureChannel } from "../channel/SecureChannel.js"
import {
  chunkData,
  ChunkFlags,
  decodeChunkEnd,
  decodeChunkStart,
  decodeStreamCancel,
  decodeStreamCredit,
  INITIAL_STREAM_CREDIT,
  readStreamId
} from "../wire/Chunks.js"
import { MessageType } from "../wire/Messages.js"
import { decodePacket, type Packet } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import { decodeReplyError } from "../wire/ReplyError.js"
import { makeByteBudget, makeMemoryPool, type MemoryPool } from "./Budget.js"
import { makeContext, malformed, own, type SessionContext } from "./Context.js"
import { type Inbox, type InboxItem, makeInbox } from "./Inbox.js"
import { type IncomingStreams, type IncomingStreamState, makeIncomingStreams } from "./IncomingStreams.js"
import { makeOutgoing, type Outgoing } from "./Outgoing.js"
import { type IncomingMessage, makeReassembly, type Reassembly } from "./Reassembly.js"
import { makeRequests, type Requests } from "./Requests.js"
import { makeServing } from "./Serving.js"
import { watchTimers } from "./Timers.js"
import type { Watchdog } from "./Watchdog.js"
import { LOG_PEER, LOG_SESSION, moveActiveSessions, nextSessionId } from "../Observability.js"

/** How a session ends; `PeerAlert` is a failure the peer reported, `ProtocolError` one this side found (PROTOCOL.md §6). */
export type SessionError = ProtocolError | PeerAlert | ConnectionClosed | AuthFailed | Socket.SocketError

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
   * End the session with `ProtocolError("Timeout")` when no application message arrives for this
   * long (keep-alive PINGs and PONGs do not count, PROTOCOL.md §10.3). Default:
   * never on a client, 5 minutes on a server (`serve`, `listen`); `Duration.infinity` turns it off.
   */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /**
   * Detect a dead peer on a quiet connection (PROTOCOL.md §7.4): when nothing has arrived for this
   * long, send a PING; when still nothing has arrived this long after it, end the session with
   * `ConnectionClosed("Timeout")`. PING and PONG are not application activity: they never keep a
   * session from its `idleTimeout` (§10.3). Default: off; `Duration.infinity` also turns it off.
   */
  readonly keepAlive?: Duration.DurationInput | undefined
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
  /**
   * What the release at the session's end runs on: the server's one runtime; by default the
   * session's own, captured as it starts (which keeps that moment's fiber refs for its whole life).
   */
  readonly runtime?: Runtime.Runtime<never> | undefined
}

export interface SessionInfo extends ChannelInfo {
  /** The peer's address, when the transport knows it. */
  readonly peer: Option.Option<string>
  /** Unique in this process, not secret: the `cvg.session` log annotation and span attribute (README "Observability"). */
  readonly id: string
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
export const DEFAULT_STALL_TIMEOUT = Duration.seconds(30)
export { INITIAL_STREAM_CREDIT }

export const makeSession = (
  channel: SecureChannel,
  crypto: CryptoService,
  options: SessionSetup = {}
): Effect.Effect<Session, never, Scope.Scope> =>
  Effect.gen(function*() {
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE
    const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE
    const maxIncoming = options.maxIncomingStreams ?? 64
    const maxBuffered = options.maxBufferedBytes ?? maxMessageSize + DEFAULT_BUFFER_HEADROOM
    const finite = (input: Duration.DurationInput | undefined): Option.Option<number> =>
      input === undefined ? Option.none() : Option.filter(Option.some(Duration.toMillis(input)), Number.isFinite)
    const idleMillis = finite(options.idleTimeout)
    const stallMillis = finite(options.stallTimeout ?? DEFAULT_STALL_TIMEOUT)
    const keepAliveMillis = finite(options.keepAlive)
    const budget = makeByteBudget({
      limit: maxBuffered,
      allowance: CONNECTION_ALLOWANCE,
      pool: options.pool ?? makeMemoryPool(maxBuffered)
    })

    // The parts, each with one job, sharing only the context (docs/architecture.md).
    const ctx = makeContext(channel, crypto, budget, maxBuffered)
    const outgoing = makeOutgoing(ctx, chunkSize)
    const inbox = makeInbox(ctx, options.maxQueuedPackets ?? 65536)
    const reassembly = makeReassembly(ctx, maxMessageSize)
    const streams = makeIncomingStreams(ctx, maxMessageSize)
    const id = nextSessionId()
    const requests = makeRequests(ctx, Math.max(1, options.maxInFlight ?? 4096), { outgoing, streams, sessionId: id })
    // What `serve` and `respond` log (and what their handlers log) names the peer and the session.
    const logAnnotations = options.peer === undefined ? { [LOG_SESSION]: id } : { [LOG_PEER]: options.peer, [LOG_SESSION]: id }
    const serving = makeServing(
      ctx,
      {
        maxHandlers: Math.max(1, options.maxConcurrentHandlers ?? 1024),
        exposeErrors: options.exposeErrors ?? false,
        logAnnotations
      },
      { inbox, streams, outgoing }
    )

    const dispatch = new Dispatch(ctx, { inbox, requests, streams, reassembly, outgoing }, maxIncoming)
    channel.listen(dispatch)
    const endWaiters = dispatch.endWaiters
    const inactive = () => dispatch.inactive()
    const closed = dispatch.closed

    // Flushing is bounded like any write (the stall timeout); after a failure only the alert is left to
    // send, so it gets a second at most.
    const flushWithin = Option.getOrElse(stallMillis, () => Infinity)
    // Released when the session ends, by a fiber started then rather than one waiting all along; the
    // session's scope, closing, interrupts it.
    const runtime = options.runtime ?? (yield* Effect.runtime<never>())
    let releasing: Fiber.RuntimeFiber<void> | undefined
    endWaiters.push((error) => {
      releasing = Runtime.runFork(runtime)(channel.release(
        // A peer that stopped answering is unlikely to read what is left: it gets the failure's second.
        error instanceof ConnectionClosed && error.reason !== "Timeout" ? flushWithin : Math.min(flushWithin, 1000)
      ))
    })
    const unwatch = yield* watchTimers(ctx, {
      idle: idleMillis,
      stall: stallMillis,
      keepAlive: keepAliveMillis,
      watchdog: options.watchdog,
      received: () => dispatch.received
    })
    // One finalizer for all of it, and `Scope.addFinalizer` rather than `Effect.addFinalizer`, which
    // keeps a snapshot of the fiber's refs and closures per finalizer for the whole session
    // (docs/resources.md, "Memory of an idle session").
    yield* Scope.addFinalizer(
      yield* Effect.scope,
      Effect.suspend(() => {
        unwatch()
        inactive()
        // The release that closing itself starts is interrupted too: `close` flushes already.
        return Effect.zipRight(
          channel.close(flushWithin),
          Effect.suspend(() => (releasing === undefined ? Effect.void : Fiber.interrupt(releasing)))
        )
      })
    )

    const receive = (filter?: PacketFilter): Effect.Effect<Packet, SessionError | UnexpectedPacket> =>
      Effect.flatMap(inbox.takeMatching(filter), (item) => streams.withPacket(item, Effect.succeed))

    return {
      info: { ...channel.info, peer: Option.fromNullable(options.peer), id },
      send: (packet) => outgoing.sendPacket(packet, MessageType.PACKET),
      receive,
      request: (packet, options) => requests.request(packet, options),
      requestStream: (packet, options) => requests.requestStream(packet, options),
      reply: (request, response) => serving.reply(request, response),
      replyStream: (request, type, data) => serving.replyStream(request, type, data),
      replyError: (request, error) => serving.replyError(request, error),
      receiveAndSend: (response, filter) =>
        Effect.flatMap(receive(filter), (packet) => Effect.as(serving.reply(packet, response), packet)),
      respond: (filter, handler) => Effect.annotateLogs(serving.respond(filter, handler), logAnnotations),
      serve: (handler) => serving.serve(handler),
      sendStream: (header, data) => outgoing.sendStream(header, data, ChunkFlags.STREAM),
      receiveStream: (filter) => Effect.map(inbox.takeMatching(filter), (item) => streams.toIncomingStream(item)),
      nextId: () => requests.nextId(),
      close: channel.close(flushWithin),
      closed
    }
  })

/**
 * The session's side of the channel (PROTOCOL.md §8, §9): what arrives is dispatched synchronously,
 * in the channel's frame handler, to the part whose job it is; and how the session ends is told to
 * every part. A class, so that an idle session's dispatch is one object rather than a closure per
 * message kind (docs/resources.md, "Memory of an idle session").
 */
class Dispatch implements ChannelHandler {
  /** Application messages received (never PING or PONG, which the channel keeps): the idle timer's measure of activity. */
  received = 0
  /** The transfers the peer has open, by stream id (PROTOCOL.md §9): messages and streams share the ids; made by the first. */
  private incoming: Map<number, IncomingMessage | IncomingStreamState> | undefined = undefined
  /** Told once, when the session ends. */
  readonly endWaiters: Array<(error: SessionError) => void> = []
  // `cvg.sessions.active` counts this session from here until it ends or its scope closes, whichever is first.
  private active = true

  constructor(
    private readonly ctx: SessionContext,
    private readonly parts: {
      readonly inbox: Inbox
      readonly requests: Requests
      readonly streams: IncomingStreams
      readonly reassembly: Reassembly
      readonly outgoing: Outgoing
    },
    private readonly maxIncoming: number
  ) {
    moveActiveSessions(1)
  }

  inactive(): void {
    if (!this.active) return
    this.active = false
    moveActiveSessions(-1)
  }

  /**
   * A PACKET or REQUEST goes to the inbox; a REPLY to the request waiting on its id, which takes its
   * bytes at once, so what they held (`charged`, a reassembled message's) goes back (§8.2).
   */
  private deliverPacket(packet: Packet, kind: number, charged: number): void {
    if (kind !== MessageType.REPLY) return this.parts.inbox.deliverPacket(packet, kind === MessageType.REQUEST, charged)
    this.ctx.budget.refund(charged)
    this.parts.requests.answer(packet.id, Exit.succeed({ _tag: "Packet", packet, charged: 0, request: false }))
  }

  /** §9.1: a message to reassemble, or a stream; a streamed reply answers its request. */
  private onChunkStart(body: Uint8Array): void {
    const { ctx, parts } = this
    const decoded = decodeChunkStart(body)
    if (Either.isLeft(decoded)) return ctx.fail(decoded.left)
    const start = decoded.right
    const incoming = this.incoming ?? (this.incoming = new Map())
    if (incoming.has(start.streamId)) return ctx.fail(malformed("stream id reused"))
    if (incoming.size >= this.maxIncoming) return ctx.fail(new ProtocolError({ reason: "LimitExceeded", detail: "too many open streams" }))
    const kind = (start.flags & ChunkFlags.REPLY) !== 0
      ? MessageType.REPLY
      : (start.flags & ChunkFlags.REQUEST) !== 0
      ? MessageType.REQUEST
      : MessageType.PACKET
    if ((start.flags & ChunkFlags.STREAM) === 0) {
      const message = parts.reassembly.open(start, kind)
      if (message !== undefined) incoming.set(start.streamId, message)
      return
    }
    const state = parts.streams.open(start.streamId)
    incoming.set(start.streamId, state)
    const item: InboxItem = { _tag: "Stream", id: start.id, type: start.type, state, request: false }
    if (kind !== MessageType.REPLY) return parts.inbox.deliver(item)
    // A streamed reply nobody waits for any more is cancelled at once (§8.2, §9.4).
    if (!parts.requests.answer(start.id, Exit.succeed(item))) parts.streams.cancel(state)
  }

  /** §9.2: data for an open transfer, appended to its message or queued for its stream. */
  private onChunkData(body: Uint8Array): void {
    const streamId = readStreamId(body)
    const state = streamId === undefined ? undefined : this.incoming?.get(streamId)
    if (state === undefined) return this.ctx.fail(malformed("data for unknown stream"))
    if (state._tag === "Message") this.parts.reassembly.data(state, chunkData(body))
    else this.parts.streams.data(state, chunkData(body))
  }

  /** §9.2: a complete message is delivered like a packet; a stream ends for its consumer. */
  private onChunkEnd(body: Uint8Array): void {
    const ctx = this.ctx
    const streamId = readStreamId(body)
    const state = streamId === undefined ? undefined : this.incoming?.get(streamId)
    if (streamId === undefined || state === undefined) return ctx.fail(malformed("end of unknown stream"))
    const end = decodeChunkEnd(body, !ctx.encrypted)
    if (Either.isLeft(end)) return ctx.fail(end.left)
    this.incoming?.delete(streamId)
    if (state._tag === "Stream") return this.parts.streams.end(state, end.right)
    const packet = this.parts.reassembly.end(state, end.right)
    if (packet !== undefined) this.deliverPacket(packet, state.start.kind, state.total)
  }

  onMessage(type: number, body: Uint8Array): void {
    const ctx = this.ctx
    this.received++
    switch (type) {
      case MessageType.PACKET:
      case MessageType.REQUEST:
      case MessageType.REPLY: {
        // A queued packet keeps its bytes; a reply is taken by its caller at once.
        const packet = decodePacket(type === MessageType.REPLY ? body : own(body))
        if (Either.isLeft(packet)) return ctx.fail(packet.left)
        return this.deliverPacket(packet.right, type, 0)
      }
      case MessageType.REPLY_ERROR: {
        const decoded = decodeReplyError(body)
        if (Either.isLeft(decoded)) return ctx.fail(decoded.left)
        this.parts.requests.answer(decoded.right.id, Exit.fail(decoded.right.error))
        return
      }
      case MessageType.CHUNK_START:
        return this.onChunkStart(body)
      case MessageType.CHUNK_DATA:
        return this.onChunkData(body)
      case MessageType.CHUNK_END:
        return this.onChunkEnd(body)
      case MessageType.STREAM_CREDIT: {
        const credit = decodeStreamCredit(body)
        if (Either.isLeft(credit)) return ctx.fail(credit.left)
        return this.parts.outgoing.credit(credit.right)
      }
      case MessageType.STREAM_CANCEL: {
        const streamId = decodeStreamCancel(body)
        if (Either.isLeft(streamId)) return ctx.fail(streamId.left)
        return this.parts.outgoing.cancel(streamId.right)
      }
    }
  }

  /** Everyone waiting fails with the session's error, and everything held goes back to the pool. */
  onEnd(error: SessionError): void {
    const { ctx, parts } = this
    if (ctx.ended !== undefined) return
    ctx.ended = error
    this.inactive()
    const failure = Exit.fail(error)
    parts.inbox.end(failure, error instanceof ConnectionClosed && error.reason === "Closed")
    parts.requests.end(failure)
    if (this.incoming !== undefined) {
      for (const state of this.incoming.values()) if (state._tag === "Stream") parts.streams.finish(state, failure)
      this.incoming.clear()
    }
    // Whatever the inbox keeps, the budget goes back to the pool now.
    ctx.budget.close()
    parts.outgoing.end()
    for (const waiter of this.endWaiters.splice(0)) waiter(error)
  }

  /** Completes when the session ends, with how. */
  get closed(): Effect.Effect<SessionError> {
    return Effect.async<SessionError>((resume) => {
      const ctx = this.ctx
      if (ctx.ended !== undefined) return resume(Effect.succeed(ctx.ended))
      const waiter = (error: SessionError) => resume(Effect.succeed(error))
      this.endWaiters.push(waiter)
      return Effect.sync(() => {
        const i = this.endWaiters.indexOf(waiter)
        if (i >= 0) this.endWaiters.splice(i, 1)
      })
    })
  }
}

export const fromHandshake = <E, R>(
  handshake: Effect.Effect<SecureChannel, E, R>,
  options: SessionSetup
): Effect.Effect<Session, E, R | Crypto | Scope.Scope> =>
  Effect.flatMap(handshake, (channel) => Effect.flatMap(Crypto, (crypto) => Effect.map(makeSession(channel, crypto, options), checkedSession)))
