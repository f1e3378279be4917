/**
 * Typed messages over a session (PROTOCOL.md §12): an `Api` names the messages both sides agree on,
 * as Schema classes, and gives a typed client and an exhaustively typed server for them.
 *
 * - one-way messages: `Schema.TaggedClass`, sent with `send`;
 * - requests: `Schema.TaggedRequest`, answered once with its `success` or its `failure`, via `call`;
 * - streams: `Schema.TaggedRequest` whose `success` is the item, answered with a stream of items
 *   that ends, or fails with its `failure`, via `stream`.
 *
 * Each rides a packet of its own type (§12.2) on the session's requests, so it shares their budgets,
 * back-pressure, timeouts and `RemoteError`s.
 */
import { Cause, Chunk, type Duration, Effect, Either, Exit, Option, Schema, Stream } from "effect"
import { DecodeFailed, InvalidArgument, RemoteError, type RequestTimeout, type UnexpectedPacket } from "../errors.js"
import type { Session, SessionError } from "../session/Session.js"
import { Packet } from "../wire/Packet.js"
import { decodeRemoteError, encodeRemoteError } from "../wire/ReplyError.js"
import {
  decodeReply,
  encodeItemInto,
  encodeReply,
  ITEM_HEADER_LENGTH,
  ItemStatus,
  makeItemReader,
  ReplyStatus
} from "../wire/TypedFrames.js"
import { tagOf } from "../internal/tag.js"
import * as Codec from "./Codec.js"
import { requestSpan, SPAN_CALL } from "../Observability.js"

/** The packet types of typed messages (PROTOCOL.md §12.2). */
export const TypedPacket = { MESSAGE: 0xd0, CALL: 0xd1, STREAM: 0xd2 } as const

/** Largest stream item a receiver gathers (PROTOCOL.md §12.3). */
export const MAX_ITEM_SIZE = 16 * 1024 * 1024

/** A one-way message's class: a `Schema.TaggedClass`. */
export type MessageClass = Schema.Schema.AnyNoContext & { readonly _tag: string }

/** A Schema without requirements, `Schema.Never` included (a request that cannot fail). */
export type ResultSchema = Schema.Schema.AnyNoContext | Schema.Schema<never, never, never>

/** A request's class: a `Schema.TaggedRequest`, with its `success` and `failure` Schemas. */
export type RequestClass = Schema.Schema.AnyNoContext & {
  readonly _tag: string
  readonly success: ResultSchema
  readonly failure: ResultSchema
}

type Success<Q extends RequestClass> = Schema.Schema.Type<Q["success"]>
type Failure<Q extends RequestClass> = Schema.Schema.Type<Q["failure"]>
type ClassOf<Union extends { readonly _tag: string }, Tag> = Extract<Union, { readonly _tag: Tag }>

/**
 * How a typed exchange can fail besides its declared failure; `UnexpectedPacket`: the peer answered a
 * call with a packet that is not a typed reply (§12.2).
 */
export type CallError = SessionError | RemoteError | RequestTimeout | DecodeFailed | InvalidArgument | UnexpectedPacket

export interface CallOptions {
  /** Give up with `RequestTimeout` after this long (for a stream: until its first bytes). Default: wait. */
  readonly timeout?: Duration.DurationInput | undefined
}

/** The client side of an `Api` on one session. */
export interface ApiClient<M extends MessageClass, Q extends RequestClass, S extends RequestClass> {
  /** Sends a request and waits for its success; its declared failure arrives as the failure itself. */
  readonly call: <Req extends Schema.Schema.Type<Q>>(
    request: Req,
    options?: CallOptions
  ) => Effect.Effect<Schema.WithResult.Success<Req>, Schema.WithResult.Failure<Req> | CallError>
  /** Sends a streaming request; the items arrive paced by back-pressure, the failure ends the stream. */
  readonly stream: <Req extends Schema.Schema.Type<S>>(
    request: Req,
    options?: CallOptions
  ) => Stream.Stream<Schema.WithResult.Success<Req>, Schema.WithResult.Failure<Req> | CallError>
  /** Sends a one-way message. */
  readonly send: (message: Schema.Schema.Type<M>) => Effect.Effect<void, SessionError | InvalidArgument>
}

/**
 * One handler per message of the `Api`, by tag; a missing one is a type error. A request's handler
 * may fail with its declared failure only, and must succeed with its success type.
 */
export type Handlers<M extends MessageClass, Q extends RequestClass, S extends RequestClass> =
  & { readonly [Tag in M["_tag"]]: (message: Schema.Schema.Type<ClassOf<M, Tag>>) => Effect.Effect<void, unknown, unknown> }
  & {
    readonly [Tag in Q["_tag"]]: (
      request: Schema.Schema.Type<ClassOf<Q, Tag>>
    ) => Effect.Effect<Success<ClassOf<Q, Tag>>, Failure<ClassOf<Q, Tag>>, unknown>
  }
  & {
    readonly [Tag in S["_tag"]]: (
      request: Schema.Schema.Type<ClassOf<S, Tag>>
    ) => Stream.Stream<Success<ClassOf<S, Tag>>, Failure<ClassOf<S, Tag>>, unknown>
  }

type ContextOf<F> = F extends (input: never) => Effect.Effect<infer _A, infer _E, infer R> ? R
  : F extends (input: never) => Stream.Stream<infer _A, infer _E, infer R> ? R
  : never
type ErrorOf<F> = F extends (input: never) => Effect.Effect<infer _A, infer E, infer _R> ? E : never

/** What the handlers need from the environment. */
export type HandlersContext<H> = { readonly [K in keyof H]: ContextOf<H[K]> }[keyof H]
/** A one-way message's handler that fails ends `serve` with its error (nobody else could hear it). */
export type MessageHandlersError<H, M extends MessageClass> = { readonly [K in keyof H & M["_tag"]]: ErrorOf<H[K]> }[keyof H & M["_tag"]]

export interface Api<M extends MessageClass, Q extends RequestClass, S extends RequestClass> {
  readonly messages: ReadonlyArray<M>
  readonly requests: ReadonlyArray<Q>
  readonly streams: ReadonlyArray<S>
  /** The typed client on `session`. */
  readonly client: (session: Session) => ApiClient<M, Q, S>
  /**
   * Answers every typed message on `session` until the peer closes. A request's declared failure goes
   * back as itself; anything else (an undeclared failure, a defect, a request that does not decode)
   * as a `RemoteError`, and serving goes on. A one-way message that does not decode, or whose handler
   * fails, ends `serve` with that error.
   */
  readonly serve: <H extends Handlers<M, Q, S>>(
    session: Session,
    handlers: H
  ) => Effect.Effect<void, SessionError | InvalidArgument | DecodeFailed | MessageHandlersError<H, M>, HandlersContext<H>>
}

const byTag = <C extends { readonly _tag: string }>(classes: ReadonlyArray<C>, kind: string): ReadonlyMap<string, C> => {
  const map = new Map<string, C>()
  for (const c of classes) map.set(c._tag, c)
  if (map.size !== classes.length) throw new Error(`Api.make: two ${kind} share a tag`)
  return map
}

/** Declares an `Api`: the messages, requests and streams both sides agree on. Tags must be unique. */
export const make = <
  const M extends ReadonlyArray<MessageClass> = readonly [],
  const Q extends ReadonlyArray<RequestClass> = readonly [],
  const S extends ReadonlyArray<RequestClass> = readonly []
>(declaration: {
  readonly messages?: M | undefined
  readonly requests?: Q | undefined
  readonly streams?: S | undefined
}): Api<M[number], Q[number], S[number]> => {
  type MC = M[number]
  type QC = Q[number]
  type SC = S[number]
  const messages: ReadonlyArray<MC> = declaration.messages ?? []
  const requests: ReadonlyArray<QC> = declaration.requests ?? []
  const streams: ReadonlyArray<SC> = declaration.streams ?? []
  const messageClasses = byTag(messages, "messages")
  const requestClasses = byTag(requests, "requests")
  const streamClasses = byTag(streams, "streams")
  for (const tag of requestClasses.keys()) {
    if (messageClasses.has(tag) || streamClasses.has(tag)) throw new Error(`Api.make: the tag ${tag} is declared twice`)
  }
  for (const tag of streamClasses.keys()) {
    if (messageClasses.has(tag)) throw new Error(`Api.make: the tag ${tag} is declared twice`)
  }

  /** The payload of a typed packet: the value encoded by its own class's Schema. */
  const encodeRequest = (classes: ReadonlyMap<string, Schema.Schema.AnyNoContext>, value: unknown): Either.Either<Uint8Array, InvalidArgument> => {
    const tag = tagOf(value)
    const schema = tag === undefined ? undefined : classes.get(tag)
    if (schema === undefined) {
      return Either.left(new InvalidArgument({ reason: "Message", field: tag ?? "_tag", detail: "not a message of this Api" }))
    }
    return Either.mapLeft(Codec.encode(schema, value), (detail) => new InvalidArgument({ reason: "Message", field: tag ?? "_tag", detail }))
  }

  const client = (session: Session): ApiClient<MC, QC, SC> => {
    const exchange = <Req extends Schema.Schema.Type<QC>>(
      request: Req,
      options?: CallOptions
    ): Effect.Effect<Schema.WithResult.Success<Req>, Schema.WithResult.Failure<Req> | CallError> =>
      Effect.suspend(() => {
        const payload = encodeRequest(requestClasses, request)
        if (Either.isLeft(payload)) return Effect.fail(payload.left)
        const tag = tagOf(request) ?? ""
        const schema = requestClasses.get(tag)!
        const packet = new Packet({ id: session.nextId(), type: TypedPacket.CALL, payload: payload.right }, true)
        const answered = session.request(packet, { expect: TypedPacket.CALL, timeout: options?.timeout })
        return Effect.flatMap(answered, (reply): Effect.Effect<Schema.WithResult.Success<Req>, Schema.WithResult.Failure<Req> | DecodeFailed> => {
          const answer = decodeReply(reply.payload)
          const failed = (detail: string) => Effect.fail(new DecodeFailed({ reason: "Reply", tag, detail }))
          if (answer === undefined) return failed("not a typed reply")
          const decoded = Codec.decode(answer.status === ReplyStatus.SUCCESS ? schema.success : schema.failure, answer.body)
          if (Either.isLeft(decoded)) return failed(decoded.left)
          // The request's own Schemas just decoded it, so it is of the declared type.
          return answer.status === ReplyStatus.SUCCESS
            ? Effect.succeed(decoded.right as Schema.WithResult.Success<Req>)
            : Effect.fail(decoded.right as Schema.WithResult.Failure<Req>)
        })
      })

    /**
     * The exchange under a `cvg.call` span, in which the `cvg.request` span of its packet nests
     * (README "Observability"). Built when run, as the rest of `call` is, not when called.
     */
    const call = <Req extends Schema.Schema.Type<QC>>(
      request: Req,
      options?: CallOptions
    ): Effect.Effect<Schema.WithResult.Success<Req>, Schema.WithResult.Failure<Req> | CallError> =>
      requestSpan(exchange(request, options), SPAN_CALL, true, () => ({
        kind: "client",
        attributes: { "cvg.call": tagOf(request) ?? "", "cvg.session": session.info.id }
      }))

    const stream = <Req extends Schema.Schema.Type<SC>>(
      request: Req,
      options?: CallOptions
    ): Stream.Stream<Schema.WithResult.Success<Req>, Schema.WithResult.Failure<Req> | CallError> =>
      Stream.unwrap(Effect.suspend(() => {
        const payload = encodeRequest(streamClasses, request)
        if (Either.isLeft(payload)) return Effect.fail(payload.left)
        const tag = tagOf(request) ?? ""
        const schema = streamClasses.get(tag)!
        const packet = new Packet({ id: session.nextId(), type: TypedPacket.STREAM, payload: payload.right }, true)
        const failed = (detail: string) => new DecodeFailed({ reason: "Item", tag, detail })
        return Effect.map(session.requestStream(packet, { timeout: options?.timeout }), (incoming) => {
          const reader = makeItemReader(MAX_ITEM_SIZE)
          const toValue = (
            item: { readonly status: number; readonly body: Uint8Array }
          ): Effect.Effect<Schema.WithResult.Success<Req>, Schema.WithResult.Failure<Req> | RemoteError | DecodeFailed> => {
            if (item.status === ItemStatus.ERROR) return Effect.fail(remoteErrorFromItem(item.body))
            const decoded = Codec.decode(item.status === ItemStatus.ITEM ? schema.success : schema.failure, item.body)
            if (Either.isLeft(decoded)) return Effect.fail(failed(decoded.left))
            // The request's own Schemas just decoded it, so it is of the declared type.
            return item.status === ItemStatus.ITEM
              ? Effect.succeed(decoded.right as Schema.WithResult.Success<Req>)
              : Effect.fail(decoded.right as Schema.WithResult.Failure<Req>)
          }
          const items = incoming.data.pipe(
            Stream.mapEffect((chunk) => {
              const pushed = reader.push(chunk)
              return typeof pushed === "string" ? Effect.fail(failed(pushed)) : Effect.succeed(pushed)
            }),
            Stream.flattenIterables,
            Stream.concat(Stream.suspend(() => (reader.atBoundary() ? Stream.empty : Stream.fail(failed("the stream ended inside an item")))))
          )
          return incoming.type === TypedPacket.STREAM
            ? Stream.mapEffect(items, toValue)
            : Stream.fail(failed("not a typed stream"))
        })
      }))

    const send = (message: Schema.Schema.Type<MC>): Effect.Effect<void, SessionError | InvalidArgument> =>
      Effect.suspend(() => {
        const payload = encodeRequest(messageClasses, message)
        if (Either.isLeft(payload)) return Effect.fail(payload.left)
        return session.send(new Packet({ id: 0, type: TypedPacket.MESSAGE, payload: payload.right }, true))
      })

    return { call, stream, send }
  }

  const serve = <H extends Handlers<MC, QC, SC>>(
    session: Session,
    handlers: H
  ): Effect.Effect<void, SessionError | InvalidArgument | DecodeFailed | MessageHandlersError<H, MC>, HandlersContext<H>> => {
    // Dispatch by a tag known only at run time: TypeScript cannot relate it to a key of the mapped
    // type, so the table is read as functions of `unknown`. `serve`'s signature checked the handlers.
    type AnyHandler = (input: unknown) => Effect.Effect<unknown, unknown, HandlersContext<H>> | Stream.Stream<unknown, unknown, HandlersContext<H>>
    const table: Readonly<Record<string, unknown>> = handlers
    const handlerOf = (tag: string) => table[tag] as AnyHandler

    /** The request's value and its class, or the RemoteError the requester gets instead. */
    const decodeRequest = <C extends RequestClass>(
      classes: ReadonlyMap<string, C>,
      payload: Uint8Array
    ): Either.Either<readonly [C, unknown], RemoteError> => {
      // Straight-line rather than through Either's combinators: this runs for every request, and
      // each combinator's closure is an allocation.
      const raw = Codec.unpack(payload)
      if (Either.isLeft(raw)) return Either.left(new RemoteError({ reason: "Undecodable", detail: raw.left }))
      const tag = tagOf(raw.right)
      const schema = tag === undefined ? undefined : classes.get(tag)
      if (schema === undefined) return Either.left(new RemoteError({ reason: "Unsupported", detail: `no handler for ${tag ?? "a value without _tag"}` }))
      const value = Codec.decodeValue(schema, raw.right)
      if (Either.isLeft(value)) return Either.left(new RemoteError({ reason: "Undecodable", detail: `${tag}: ${value.left}` }))
      return Either.right([schema, value.right] as const)
    }

    const onMessage = (packet: Packet) =>
      Effect.suspend(() => {
        const raw = Codec.unpack(packet.payload)
        const tag = Either.isRight(raw) ? tagOf(raw.right) ?? "" : ""
        const schema = messageClasses.get(tag)
        if (Either.isLeft(raw) || schema === undefined) {
          return Effect.fail(new DecodeFailed({ reason: "Message", tag, detail: Either.isLeft(raw) ? raw.left : "not a message of this Api" }))
        }
        const value = Codec.decodeValue(schema, raw.right)
        if (Either.isLeft(value)) return Effect.fail(new DecodeFailed({ reason: "Message", tag, detail: value.left }))
        const run = handlerOf(tag)(value.right)
        return Effect.as(Effect.isEffect(run) ? run : Effect.void, undefined)
      })

    /**
     * A request's answer. Decoding and the handler's call happen when `serve` builds the handler's
     * effect; a handler that answers at once (`Effect.succeed`/`Effect.fail`, an `Exit`) gets its
     * reply as an `Exit` too, which `session.serve` sends in the step that delivered the request
     * (docs/performance.md). Others are answered when their effect completes.
     */
    const onCall = (packet: Packet): Effect.Effect<Packet | undefined, unknown, HandlersContext<H>> => {
      const decoded = decodeRequest(requestClasses, packet.payload)
      if (Either.isLeft(decoded)) return Effect.as(session.replyError(packet, decoded.left), undefined)
      const [schema, request] = decoded.right
      const run = handlerOf(schema._tag)(request)
      if (!Effect.isEffect(run)) return Effect.die(new Error(`the handler of ${schema._tag} did not return an Effect`))
      const answer = (status: number, encoded: Either.Either<Uint8Array, string>, what: string): Effect.Effect<Packet | undefined, unknown> =>
        Either.isRight(encoded)
          ? Exit.succeed(new Packet({ id: packet.id, type: TypedPacket.CALL, payload: encodeReply(status, encoded.right) }, true))
          : Effect.as(
            Effect.zipRight(
              Effect.logWarning(`cvg: the ${what} of ${schema._tag} did not encode: ${encoded.left}`),
              session.replyError(packet, new RemoteError({ reason: "Failure", detail: `the ${what} did not encode` }))
            ),
            undefined
          )
      const onSuccess = (value: unknown) => answer(ReplyStatus.SUCCESS, Codec.encode(schema.success, value), "success")
      // An undeclared failure (possible only past the type checker) fails the handler: `RemoteError`.
      const onFailure = (error: unknown) =>
        Codec.is(schema.failure, error) ? answer(ReplyStatus.FAILURE, Codec.encode(schema.failure, error), "failure") : Effect.fail(error)
      if (Exit.isExit(run)) {
        if (Exit.isSuccess(run)) return onSuccess(run.value)
        const failure = Cause.failureOption(run.cause)
        if (Option.isSome(failure) && Cause.isFailType(run.cause)) return onFailure(failure.value)
      }
      return Effect.matchEffect(run, { onSuccess, onFailure })
    }

    const onStream = (packet: Packet) =>
      Effect.suspend(() => {
        const decoded = decodeRequest(streamClasses, packet.payload)
        if (Either.isLeft(decoded)) return Effect.as(session.replyError(packet, decoded.left), undefined)
        const [schema, request] = decoded.right
        const run = handlerOf(schema._tag)(request)
        if (Effect.isEffect(run)) return Effect.die(new Error(`the handler of ${schema._tag} did not return a Stream`))
        // Each upstream chunk of items becomes one piece of the byte stream (§12.3).
        const frames = Stream.mapChunksEffect(run, (values) => {
          const bodies: Array<Uint8Array> = []
          let total = 0
          for (const value of values) {
            const body = Codec.encode(schema.success, value)
            if (Either.isLeft(body)) return Effect.fail(new ItemDidNotEncode(body.left))
            bodies.push(body.right)
            total += ITEM_HEADER_LENGTH + body.right.length
          }
          const out = new Uint8Array(total)
          let offset = 0
          for (const body of bodies) offset = encodeItemInto(out, offset, ItemStatus.ITEM, body)
          return Effect.succeed(Chunk.of(out))
        })
        const ending = (cause: Cause.Cause<unknown>): Stream.Stream<Uint8Array, unknown> => {
          const failure = Cause.failureOption(cause)
          if (Option.isNone(failure)) {
            return Cause.isInterruptedOnly(cause) ? Stream.failCause(cause) : Stream.make(errorItem(new RemoteError({ reason: "Defect", detail: "" })))
          }
          const error = failure.value
          if (error instanceof ItemDidNotEncode) {
            return Stream.fromEffect(Effect.as(
              Effect.logWarning(`cvg: an item of ${schema._tag} did not encode: ${error.detail}`),
              errorItem(new RemoteError({ reason: "Failure", detail: "an item did not encode" }))
            ))
          }
          if (!Codec.is(schema.failure, error)) return Stream.make(errorItem(new RemoteError({ reason: "Failure", detail: tagOf(error) ?? "" })))
          const body = Codec.encode(schema.failure, error)
          return Stream.make(
            Either.isRight(body) ? item(ItemStatus.FAILURE, body.right) : errorItem(new RemoteError({ reason: "Failure", detail: "the failure did not encode" }))
          )
        }
        return Effect.as(session.replyStream(packet, TypedPacket.STREAM, Stream.catchAllCause(frames, ending)), undefined)
      })

    return session.serve((packet): Effect.Effect<Packet | undefined, unknown, HandlersContext<H>> => {
      switch (packet.type) {
        case TypedPacket.MESSAGE:
          return onMessage(packet)
        case TypedPacket.CALL:
          return onCall(packet)
        case TypedPacket.STREAM:
          return onStream(packet)
        default:
          // Not a typed message: a request among them gets NO_REPLY from `serve`.
          return Effect.succeed(undefined)
      }
      // The only failures that get through `session.serve` are those of one-way messages (requests'
      // become RemoteErrors, PROTOCOL.md §8.3): decoding, and the message handlers' own errors.
    }) as Effect.Effect<void, SessionError | InvalidArgument | DecodeFailed | MessageHandlersError<H, MC>, HandlersContext<H>>
  }

  return { messages, requests, streams, client, serve }
}

/** An item that failed its own Schema on the way out: the stream ends with an ERROR item (§12.3). */
class ItemDidNotEncode {
  readonly _tag = "ItemDidNotEncode"
  constructor(readonly detail: string) {}
}

const item = (status: number, body: Uint8Array): Uint8Array => {
  const out = new Uint8Array(ITEM_HEADER_LENGTH + body.length)
  encodeItemInto(out, 0, status, body)
  return out
}

const errorItem = (error: RemoteError): Uint8Array => item(ItemStatus.ERROR, encodeRemoteError(error))

const remoteErrorFromItem = (body: Uint8Array): RemoteError | DecodeFailed =>
  decodeRemoteError(body) ?? new DecodeFailed({ reason: "Item", tag: "", detail: "a malformed error item" })
