/**
 * Answering the peer's requests (PROTOCOL.md §8.2, §8.3): `reply`, `replyError`, `replyStream`, and
 * `respond` and `serve`, which run a handler on what arrives and always answer a request — with the
 * handler's reply, or a REPLY_ERROR when it fails, dies or answers nothing.
 */
import { Cause, Effect, Exit, Fiber, FiberRef, HashMap, Option, Runtime, type Stream } from "effect"
import { ConnectionClosed, RemoteError, type UnexpectedPacket } from "../errors.js"
import { ChunkFlags } from "../wire/Chunks.js"
import { MessageType } from "../wire/Messages.js"
import { Packet } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import { encodeReplyError } from "../wire/ReplyError.js"
import type { SessionContext } from "./Context.js"
import { type Inbox, type InboxItem, type InboxServer, release } from "./Inbox.js"
import type { IncomingStreams } from "./IncomingStreams.js"
import type { Outgoing } from "./Outgoing.js"
import type { PacketFilter, SessionError } from "./Session.js"
import { tagOf } from "../internal/tag.js"
import { isExit } from "../internal/validate.js"

/**
 * While fewer bytes than this wait for the socket, an answer that is ready at once is written in the
 * dispatch step that brought its request; above, it goes through a fiber that waits out
 * back-pressure like any write. Far below the transport's high-water mark, so the queue stays bounded.
 */
const DIRECT_WRITE_LIMIT = 64 * 1024

type Handler<E, R> = (packet: Packet) => Effect.Effect<Packet | undefined, E, R>

export interface Serving {
  readonly reply: (request: Packet, response: Packet) => Effect.Effect<void, SessionError>
  readonly replyError: (request: Packet, error: RemoteError) => Effect.Effect<void, SessionError>
  readonly replyStream: <E, R>(request: Packet, type: PacketType, data: Stream.Stream<Uint8Array, E, R>) => Effect.Effect<void, SessionError | E, R>
  readonly respond: <E, R>(filter: PacketFilter, handler: Handler<E, R>) => Effect.Effect<Packet, SessionError | UnexpectedPacket | E, R>
  readonly serve: <E, R>(handler: Handler<E, R>) => Effect.Effect<void, SessionError | E, R>
}

export interface ServingOptions {
  /** Handlers `serve` runs at once (`maxConcurrentHandlers`). */
  readonly maxHandlers: number
  /** A `RemoteError` carries the failure's message and stack, not only its tag. */
  readonly exposeErrors: boolean
  /** What `serve`'s handlers log is annotated with (the peer and the session). */
  readonly logAnnotations: Record<string, unknown>
}

/**
 * One running `serve`: handles what arrives, one item at a time, in the dispatch step when the
 * handler answers at once (most do), else in a fiber of its own, at most `maxHandlers` at once;
 * beyond that packets wait in the inbox. Its caller waits in one `Effect.async` and nothing else:
 * no scope, no fiber set, no generator stays on the stack of the fiber that serves, which for an
 * idle session is all that it keeps (docs/resources.md, "Memory of an idle session"). A class, so
 * that the loop is one object rather than a closure per step.
 */
class ServeLoop<E, R> implements InboxServer {
  /** Handlers running in fibers. */
  private running = 0
  /**
   * Of those, handlers of one-way packets and streams: after an orderly close `serve` waits for
   * them, since what arrived before the CLOSE is not lost (PROTOCOL.md §7.1), while a request's
   * handler can no longer be answered and is not waited for.
   */
  private oneWay = 0
  private pumping = false
  private outcome: Exit.Exit<void, SessionError | E> | undefined = undefined
  /** Created by the first handler that needs a fiber: an idle `serve` has none. */
  private fibers: Set<Fiber.RuntimeFiber<Packet, SessionError | E>> | undefined = undefined
  private removeServer: (() => void) | undefined = undefined

  constructor(
    private readonly ctx: SessionContext,
    private readonly inbox: Inbox,
    private readonly maxHandlers: number,
    private readonly runtime: Runtime.Runtime<R>,
    private resume: ((effect: Effect.Effect<void, SessionError | E>) => void) | undefined,
    /** Handles an item: undefined when it was answered at once, else the effect for its fiber. */
    private readonly start: (item: InboxItem) => Effect.Effect<Packet, SessionError | E, R> | undefined
  ) {}

  /** Registers with the inbox and starts what waits; returns what stops serving when interrupted. */
  begin(): Effect.Effect<void> {
    this.removeServer = this.inbox.addServer(this)
    this.pump()
    return Effect.suspend(() => {
      this.resume = undefined
      this.stop()
      return this.interruptHandlers()
    })
  }

  /** A packet that arrives while nothing waits before it is started at once, in the dispatch. */
  offer(item: InboxItem): boolean {
    if (this.pumping || this.outcome !== undefined || this.running >= this.maxHandlers) return false
    this.pumping = true
    try {
      this.handle(item)
    } finally {
      this.pumping = false
    }
    return true
  }

  ready(): void {
    this.pump()
  }

  private handle(item: InboxItem): void {
    const effect = this.start(item)
    if (effect === undefined) return
    const request = item.request
    this.running++
    if (!request) this.oneWay++
    // It starts running right here, not on a later turn.
    const fiber = Runtime.runFork(this.runtime)(effect)
    if (this.fibers === undefined) this.fibers = new Set()
    this.fibers.add(fiber)
    fiber.addObserver((exit) => {
      this.fibers?.delete(fiber)
      this.onHandlerExit(exit, request)
    })
  }

  private onHandlerExit(exit: Exit.Exit<Packet, SessionError | E>, request: boolean): void {
    this.running--
    if (!request) this.oneWay--
    // A one-way packet's failure, or the session's, ends `serve` (the requests' became RemoteErrors).
    if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) return this.end(Exit.failCause(exit.cause))
    this.pump()
  }

  /**
   * Starts what waits in the inbox, up to the limit; then ends `serve` once the session has ended
   * and nothing is left to start (after an orderly close, nor a one-way handler running).
   */
  private pump(): void {
    if (this.pumping || this.outcome !== undefined) return
    this.pumping = true
    try {
      while (this.running < this.maxHandlers && this.outcome === undefined) {
        const item = this.inbox.poll()
        if (item === undefined) break
        this.handle(item)
      }
    } finally {
      this.pumping = false
    }
    const ended = this.ctx.ended
    if (this.outcome !== undefined || ended === undefined || this.inbox.size() > 0) return
    if (this.oneWay > 0 && ended instanceof ConnectionClosed && ended.reason === "Closed") return
    this.end(Exit.fail(ended))
  }

  private end(exit: Exit.Exit<void, SessionError | E>): void {
    if (this.outcome !== undefined) return
    this.outcome = exit
    this.stop()
    const resume = this.resume
    this.resume = undefined
    // Handlers still running are stopped before `serve` returns; an orderly close by the peer is
    // how serving normally ends.
    resume?.(Effect.zipRight(this.interruptHandlers(), Exit.isFailure(exit) && isOrderlyClose(exit.cause) ? Exit.void : exit))
  }

  private stop(): void {
    this.removeServer?.()
    this.removeServer = undefined
  }

  private interruptHandlers(): Effect.Effect<void> {
    return this.fibers === undefined || this.fibers.size === 0 ? Effect.void : Fiber.interruptAll(this.fibers)
  }
}

const isOrderlyClose = (cause: Cause.Cause<unknown>): boolean => {
  const error = Cause.failureOption(cause)
  return Option.isSome(error) && error.value instanceof ConnectionClosed && error.value.reason === "Closed"
}

export const makeServing = (
  ctx: SessionContext,
  options: ServingOptions,
  parts: { readonly inbox: Inbox; readonly streams: IncomingStreams; readonly outgoing: Outgoing }
): Serving => new Responder(ctx, options, parts.inbox, parts.streams, parts.outgoing)

/**
 * A class, so that an idle session's answering side is one object rather than a closure per
 * operation (docs/resources.md, "Memory of an idle session").
 */
class Responder implements Serving {
  /** Requests that got their answer, so that `serve` does not answer them again with NO_REPLY; made by the first. */
  private answeredSet: WeakSet<Packet> | undefined = undefined

  constructor(
    private readonly ctx: SessionContext,
    private readonly options: ServingOptions,
    private readonly inbox: Inbox,
    private readonly streams: IncomingStreams,
    private readonly outgoing: Outgoing
  ) {}

  private markAnswered(request: Packet): void {
    if (this.answeredSet === undefined) this.answeredSet = new WeakSet()
    this.answeredSet.add(request)
  }

  private answered(request: Packet): boolean {
    return this.answeredSet?.has(request) === true
  }

  reply(request: Packet, response: Packet): Effect.Effect<void, SessionError> {
    return Effect.suspend(() => {
      this.markAnswered(request)
      return this.outgoing.sendPacket(
        response.id === request.id ? response : new Packet({ id: request.id, type: response.type, payload: response.payload }, true),
        MessageType.REPLY
      )
    })
  }

  replyError(request: Packet, error: RemoteError): Effect.Effect<void, SessionError> {
    return Effect.suspend(() => {
      if (this.ctx.ended !== undefined) return Effect.fail(this.ctx.ended)
      this.markAnswered(request)
      return this.outgoing.write(MessageType.REPLY_ERROR, encodeReplyError(request.id, error))
    })
  }

  replyStream<E, R>(request: Packet, type: PacketType, data: Stream.Stream<Uint8Array, E, R>): Effect.Effect<void, SessionError | E, R> {
    return Effect.suspend(() => {
      this.markAnswered(request)
      return this.outgoing.sendStream({ id: request.id, type }, data, ChunkFlags.STREAM | ChunkFlags.REPLY)
    })
  }

  respond<E, R>(filter: PacketFilter, handler: Handler<E, R>): Effect.Effect<Packet, SessionError | UnexpectedPacket | E, R> {
    return Effect.flatMap(this.inbox.takeMatching(filter), (item) => this.handle(item, handler))
  }

  /** What the requester learns of a handler's failure: its tag, or everything with `exposeErrors`. */
  private remoteErrorOf(cause: Cause.Cause<unknown>): RemoteError {
    const failure = Cause.failureOption(cause)
    const detail = this.options.exposeErrors
      ? Cause.pretty(cause)
      : Option.match(failure, { onNone: () => "", onSome: (error) => tagOf(error) ?? "" })
    return new RemoteError({ reason: Option.isSome(failure) ? "Failure" : "Defect", detail })
  }

  /** What a handler's success sends: its reply, or NO_REPLY for a request it left unanswered. */
  private answerWith(item: InboxItem, packet: Packet, response: Packet | undefined): Effect.Effect<Packet, SessionError> {
    return response !== undefined
      ? Effect.as(this.reply(packet, response), packet)
      : item.request && !this.answered(packet)
      ? Effect.as(this.replyError(packet, new RemoteError({ reason: "NoReply", detail: "" })), packet)
      : Effect.succeed(packet)
  }

  /**
   * Sends the answer to a handler's outcome. A request always gets one: the handler's reply, or a
   * `RemoteError` when it fails, dies or answers nothing; the session goes on either way.
   */
  private settle<E, R>(item: InboxItem, packet: Packet, run: Effect.Effect<Packet | undefined, E, R>): Effect.Effect<Packet, SessionError | E, R> {
    return Effect.matchCauseEffect(run, {
      onSuccess: (response): Effect.Effect<Packet, SessionError> => this.answerWith(item, packet, response),
      onFailure: (cause): Effect.Effect<Packet, SessionError | E> =>
        !item.request || Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : this.answered(packet)
          ? Effect.as(Effect.logDebug("handler failed after answering its request", cause), packet)
          : Effect.as(this.replyError(packet, this.remoteErrorOf(cause)), packet)
    })
  }

  /** Runs `handler` on an item and sends its answer (`settle`). */
  private handle<E, R>(item: InboxItem, handler: Handler<E, R>): Effect.Effect<Packet, SessionError | E, R> {
    return this.streams.withPacket(item, (packet) => this.settle(item, packet, Effect.suspend(() => handler(packet))))
  }

  /**
   * Answers a request whose handler answered at once (it returned `Effect.succeed`, an `Exit`) in the
   * dispatch step that delivered it: no fiber, no scheduler turn (docs/performance.md). Only while
   * the channel is writable by a wide margin, since nothing here can wait for back-pressure; false
   * when the answer must go the ordinary way.
   */
  private answerNow(packet: Packet, response: Packet | undefined, request: boolean): boolean {
    const ctx = this.ctx
    if (ctx.ended !== undefined || ctx.channel.pendingBytes() >= DIRECT_WRITE_LIMIT) return false
    if (response === undefined) {
      if (!request || this.answered(packet)) return true
      ctx.channel.write(MessageType.REPLY_ERROR, encodeReplyError(packet.id, new RemoteError({ reason: "NoReply", detail: "" })))
      return true
    }
    const answer = response.id === packet.id ? response : new Packet({ id: packet.id, type: response.type, payload: response.payload }, true)
    return this.outgoing.writeNow(answer, MessageType.REPLY)
  }

  serve<E, R>(handler: Handler<E, R>): Effect.Effect<void, SessionError | E, R> {
    const ctx = this.ctx
    // The handlers' fibers are forked from this runtime, so what they log names the peer and session.
    // A server's connection fiber has these annotations already: its own fiber refs are used then,
    // rather than a copy kept for as long as `serve` runs.
    const runtime = Effect.flatMap(FiberRef.get(FiberRef.currentLogAnnotations), (annotations) =>
      Object.entries(this.options.logAnnotations).every(([key, value]) => Option.contains(HashMap.get(annotations, key), value))
        ? Effect.runtime<R>()
        : Effect.annotateLogs(Effect.runtime<R>(), this.options.logAnnotations))
    return Effect.flatMap(runtime, (runtime) =>
      Effect.async<void, SessionError | E>((resume) =>
        new ServeLoop<E, R>(ctx, this.inbox, this.options.maxHandlers, runtime, resume, (item) => {
          if (item._tag !== "Packet") return this.handle(item, handler)
          const packet = item.packet
          const result = build(handler, packet)
          if (isExit(result) && Exit.isSuccess(result) && this.answerNow(packet, result.value, item.request)) {
            // The application is done with the packet: its bytes go back (as `withPacket` does).
            release(ctx.budget, item)
            return undefined
          }
          return Effect.ensuring(this.settle(item, packet, result), Effect.sync(() => release(ctx.budget, item)))
        }).begin()
      ))
  }
}

/**
 * The handler's effect for a packet, built outside any fiber: a handler that throws while building
 * it has died, as it would have inside one.
 */
const build = <E, R>(handler: Handler<E, R>, packet: Packet): Effect.Effect<Packet | undefined, E, R> => {
  try {
    return handler(packet)
  } catch (defect) {
    return Effect.die(defect)
  }
}
