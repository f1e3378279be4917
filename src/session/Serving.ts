/**
 * Answering the peer's requests (PROTOCOL.md §8.2, §8.3): `reply`, `replyError`, `replyStream`, and
 * `respond` and `serve`, which run a handler on what arrives and always answer a request — with the
 * handler's reply, or a REPLY_ERROR when it fails, dies or answers nothing.
 */
import { Cause, Effect, Exit, FiberSet, Option, type Stream } from "effect"
import { ConnectionClosed, RemoteError, type UnexpectedPacket } from "../errors.js"
import { ChunkFlags } from "../wire/Chunks.js"
import { MessageType } from "../wire/Messages.js"
import { Packet } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import { encodeReplyError } from "../wire/ReplyError.js"
import type { SessionContext } from "./Context.js"
import { type Inbox, type InboxItem, release } from "./Inbox.js"
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
}

export const makeServing = (
  ctx: SessionContext,
  options: ServingOptions,
  parts: { readonly inbox: Inbox; readonly streams: IncomingStreams; readonly outgoing: Outgoing }
): Serving => {
  const { inbox, outgoing, streams } = parts
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

  /** What the requester learns of a handler's failure: its tag, or everything with `exposeErrors`. */
  const remoteErrorOf = (cause: Cause.Cause<unknown>): RemoteError => {
    const failure = Cause.failureOption(cause)
    const detail = options.exposeErrors ? Cause.pretty(cause) : Option.match(failure, { onNone: () => "", onSome: (error) => tagOf(error) ?? "" })
    return new RemoteError({ reason: Option.isSome(failure) ? "Failure" : "Defect", detail })
  }

  /** What a handler's success sends: its reply, or NO_REPLY for a request it left unanswered. */
  const answerWith = (item: InboxItem, packet: Packet, response: Packet | undefined): Effect.Effect<Packet, SessionError> =>
    response !== undefined
      ? Effect.as(reply(packet, response), packet)
      : item.request && !answered.has(packet)
      ? Effect.as(replyError(packet, new RemoteError({ reason: "NoReply", detail: "" })), packet)
      : Effect.succeed(packet)

  /**
   * Sends the answer to a handler's outcome. A request always gets one: the handler's reply, or a
   * `RemoteError` when it fails, dies or answers nothing; the session goes on either way.
   */
  const settle = <E, R>(item: InboxItem, packet: Packet, run: Effect.Effect<Packet | undefined, E, R>): Effect.Effect<Packet, SessionError | E, R> =>
    Effect.matchCauseEffect(run, {
      onSuccess: (response): Effect.Effect<Packet, SessionError> => answerWith(item, packet, response),
      onFailure: (cause): Effect.Effect<Packet, SessionError | E> =>
        !item.request || Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : answered.has(packet)
          ? Effect.as(Effect.logDebug("handler failed after answering its request", cause), packet)
          : Effect.as(replyError(packet, remoteErrorOf(cause)), packet)
    })

  /** Runs `handler` on an item and sends its answer (`settle`). */
  const handle = <E, R>(item: InboxItem, handler: Handler<E, R>): Effect.Effect<Packet, SessionError | E, R> =>
    streams.withPacket(item, (packet) => settle(item, packet, Effect.suspend(() => handler(packet))))

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

  /**
   * Answers a request whose handler answered at once (it returned `Effect.succeed`, an `Exit`) in the
   * dispatch step that delivered it: no fiber, no scheduler turn (docs/performance.md). Only while
   * the channel is writable by a wide margin, since nothing here can wait for back-pressure; false
   * when the answer must go the ordinary way.
   */
  const answerNow = (packet: Packet, response: Packet | undefined, request: boolean): boolean => {
    if (ctx.ended !== undefined || ctx.channel.pendingBytes() >= DIRECT_WRITE_LIMIT) return false
    if (response === undefined) {
      if (!request || answered.has(packet)) return true
      ctx.channel.write(MessageType.REPLY_ERROR, encodeReplyError(packet.id, new RemoteError({ reason: "NoReply", detail: "" })))
      return true
    }
    const answer = response.id === packet.id ? response : new Packet({ id: packet.id, type: response.type, payload: response.payload }, true)
    return outgoing.writeNow(answer, MessageType.REPLY)
  }

  const serve = <E, R>(handler: Handler<E, R>): Effect.Effect<void, SessionError | E, R> =>
    Effect.scoped(
      Effect.gen(function*() {
        const handlers = yield* FiberSet.make<Packet, SessionError | E>()
        const run = yield* FiberSet.runtime(handlers)<R>()
        /** Handlers running in fibers; at most `maxConcurrentHandlers`, beyond which packets wait in the inbox. */
        let running = 0
        /**
         * Of those, handlers of one-way packets and streams: after an orderly close `serve` waits for
         * them, since what arrived before the CLOSE is not lost (PROTOCOL.md §7.1), while a request's
         * handler can no longer be answered and is not waited for.
         */
        let oneWay = 0
        let pumping = false
        let finish: ((exit: Exit.Exit<void, SessionError | E>) => void) | undefined
        let outcome: Exit.Exit<void, SessionError | E> | undefined
        const end = (exit: Exit.Exit<void, SessionError | E>) => {
          if (outcome !== undefined) return
          outcome = exit
          finish?.(exit)
        }

        const onHandlerExit = (exit: Exit.Exit<Packet, SessionError | E>, request: boolean) => {
          running--
          if (!request) oneWay--
          // A one-way packet's failure, or the session's, ends `serve` (the requests' became RemoteErrors).
          if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) return end(Exit.failCause(exit.cause))
          pump()
        }

        /** Starts the fiber of a handler that did not answer at once; it starts running right here, not on a later turn. */
        const inFiber = (effect: Effect.Effect<Packet, SessionError | E, R>, request: boolean) => {
          running++
          if (!request) oneWay++
          run(effect).addObserver((exit) => onHandlerExit(exit, request))
        }

        /**
         * Handles one item, in the dispatch step when the handler answers at once (most do), else in
         * a fiber of its own. The handler runs exactly once either way.
         */
        const start = (item: InboxItem) => {
          if (item._tag !== "Packet") return inFiber(handle(item, handler), false)
          const packet = item.packet
          const result = build(handler, packet)
          if (isExit(result) && Exit.isSuccess(result) && answerNow(packet, result.value, item.request)) {
            // The application is done with the packet: its bytes go back (as `withPacket` does).
            return release(ctx.budget, item)
          }
          inFiber(Effect.ensuring(settle(item, packet, result), Effect.sync(() => release(ctx.budget, item))), item.request)
        }

        /**
         * Starts what waits in the inbox, up to the limit; then ends `serve` once the session has
         * ended and nothing is left to start (after an orderly close, nor a one-way handler running).
         */
        const pump = () => {
          if (pumping || outcome !== undefined) return
          pumping = true
          try {
            while (running < options.maxHandlers && outcome === undefined) {
              const item = inbox.poll()
              if (item === undefined) break
              start(item)
            }
          } finally {
            pumping = false
          }
          const ended = ctx.ended
          if (outcome !== undefined || ended === undefined || inbox.size() > 0) return
          if (oneWay > 0 && ended instanceof ConnectionClosed && ended.reason === "Closed") return
          end(Exit.fail(ended))
        }

        // A packet that arrives while nothing waits before it is started at once, in the dispatch.
        const removeServer = inbox.addServer({
          offer: (item) => {
            if (pumping || outcome !== undefined || running >= options.maxHandlers) return false
            pumping = true
            try {
              start(item)
            } finally {
              pumping = false
            }
            return true
          },
          ready: pump
        })
        yield* Effect.addFinalizer(() => Effect.sync(removeServer))
        pump()
        const exit = yield* Effect.exit(Effect.async<void, SessionError | E>((resume) => {
          if (outcome !== undefined) return resume(outcome)
          finish = resume
          return Effect.sync(() => {
            finish = undefined
          })
        }))
        if (Exit.isFailure(exit)) {
          const error = Cause.failureOption(exit.cause)
          // An orderly close by the peer is how serving normally ends.
          if (Option.isSome(error) && error.value instanceof ConnectionClosed && error.value.reason === "Closed") return
          return yield* Effect.failCause(exit.cause)
        }
      })
    )

  return {
    reply,
    replyError,
    replyStream: (request, type, data) =>
      Effect.suspend(() => {
        answered.add(request)
        return outgoing.sendStream({ id: request.id, type }, data, ChunkFlags.STREAM | ChunkFlags.REPLY)
      }),
    respond: (filter, handler) => Effect.flatMap(inbox.takeMatching(filter), (item) => handle(item, handler)),
    serve
  }
}
