/**
 * Answering the peer's requests (PROTOCOL.md §8.2, §8.3): `reply`, `replyError`, `replyStream`, and
 * `respond` and `serve`, which run a handler on what arrives and always answer a request — with the
 * handler's reply, or a REPLY_ERROR when it fails, dies or answers nothing.
 */
import { Cause, Effect, Either, FiberSet, Option, type Stream } from "effect"
import { ConnectionClosed, RemoteError, type UnexpectedPacket } from "../errors.js"
import { ChunkFlags } from "../wire/Chunks.js"
import { MessageType } from "../wire/Messages.js"
import { Packet } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import { encodeReplyError } from "../wire/ReplyError.js"
import type { SessionContext } from "./Context.js"
import type { Inbox, InboxItem } from "./Inbox.js"
import type { IncomingStreams } from "./IncomingStreams.js"
import type { Outgoing } from "./Outgoing.js"
import type { PacketFilter, SessionError } from "./Session.js"
import { tagOf } from "../internal/tag.js"

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

  /**
   * Runs `handler` on an item and sends its answer. A request always gets one: the handler's reply,
   * or a `RemoteError` when it fails, dies or answers nothing; the session goes on either way.
   */
  const handle = <E, R>(item: InboxItem, handler: Handler<E, R>): Effect.Effect<Packet, SessionError | E, R> =>
    streams.withPacket(item, (packet) =>
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

  const serve = <E, R>(handler: Handler<E, R>): Effect.Effect<void, SessionError | E, R> =>
    Effect.scoped(
      Effect.gen(function*() {
        const handlers = yield* FiberSet.make<void, SessionError | E>()
        const run = yield* FiberSet.runtime(handlers)<R>()
        // Long-lived workers, one per packet being handled at once, instead of a fiber per packet
        // (docs/performance.md): a worker that finishes takes the next packet, and a packet that finds
        // every worker busy starts one more, so handling stays fully concurrent.
        const worker: Effect.Effect<never, SessionError | E, R> = Effect.forever(Effect.flatMap(inbox.take, (item) => handle(item, handler)))
        // Up to `maxConcurrentHandlers` workers; beyond that, packets wait in the inbox, within its budget.
        let workers = 0
        const spawn = () => {
          if (workers >= options.maxHandlers) return
          workers++
          run(worker)
        }
        const removeSpawner = inbox.addSpawner(spawn)
        yield* Effect.addFinalizer(() => Effect.sync(removeSpawner))
        for (let i = 0; i < Math.max(1, inbox.size()); i++) spawn()
        const outcome = yield* Effect.either(FiberSet.join(handlers))
        if (Either.isLeft(outcome)) {
          const error = outcome.left
          // An orderly close by the peer is how serving normally ends.
          if (error instanceof ConnectionClosed && error.reason === "Closed") return
          return yield* Effect.fail(error)
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
