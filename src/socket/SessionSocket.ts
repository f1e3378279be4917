/**
 * An established session as an `@effect/platform` `Socket.Socket`, so that any protocol written
 * against `Socket` (`@effect/rpc`'s socket protocols among them) runs over the secure channel.
 *
 * The socket is message-oriented, which a byte stream is not: each write is one packet of the
 * socket's packet type (PROTOCOL.md §8; above `chunkSize` it is chunked and reassembled, §9), and
 * each such packet reaches `runRaw`'s handler as one `Uint8Array`. Reading uses the session's own
 * `receive`, so what the peer makes us hold stays within the session's budgets (PROTOCOL.md §10):
 * the adapter keeps no queue of its own.
 *
 * How it maps the platform's conventions (those of `NodeSocket`, which the rest of the ecosystem
 * is written against):
 * - `runRaw` forks each Effect its handler returns, as platform sockets do, but at most
 *   `maxConcurrentHandlers` at once; beyond that it stops taking packets, which then wait in the
 *   session's inbox.
 * - An orderly close (PROTOCOL.md §7.1), by either side, ends `runRaw` normally once the handlers
 *   already running have finished; any other end of the session fails it with a `SocketError`
 *   ("Read") whose `cause` is the cvg error.
 * - Writing a `CloseEvent` closes the session in order. cvg's CLOSE carries no code, so a code
 *   other than 1000 only shows locally, as `SocketCloseError` from our own `runRaw`.
 */
import * as Socket from "@effect/platform/Socket"
import { Deferred, Effect, ExecutionStrategy, Exit, FiberSet, Scope } from "effect"
import { ConnectionClosed, InvalidArgument, type UnexpectedPacket } from "../errors.js"
import type { Session, SessionError } from "../session/Session.js"
import { Packet } from "../wire/Packet.js"
import { PacketType } from "../wire/PacketType.js"

export interface SessionSocketOptions {
  /**
   * The packet type every write is sent as and every read must have; a packet of another type
   * fails `runRaw` with `SocketError` "Read" (its `cause` an `UnexpectedPacket`). Both sides must
   * agree. Default `PacketType.PACKET` (0xf0).
   */
  readonly packetType?: PacketType | undefined
  /** Effects returned by `runRaw`'s handler that run at once. Default 1024, as for `session.serve`. */
  readonly maxConcurrentHandlers?: number | undefined
}

/** @internal Options once checked. */
export interface Settings {
  readonly packetType: PacketType
  readonly maxConcurrentHandlers: number
}

const DEFAULT_MAX_CONCURRENT_HANDLERS = 1024

const optionError = (field: string, expected: string, value: unknown) =>
  new InvalidArgument({ reason: "Option", field, detail: `expected ${expected}, got ${typeof value === "number" ? value : typeof value}` })

const isIntegerIn = (value: unknown, min: number, max: number): value is number =>
  typeof value === "number" && Number.isInteger(value) && value >= min && value <= max

/**
 * @internal
 * Checked once, when the socket is made. The packet type is only checked to be a byte: whether the
 * session accepts it is the session's rule (PROTOCOL.md §8.1), and `send` applies it.
 */
export const checkOptions = (options: SessionSocketOptions = {}): Effect.Effect<Settings, InvalidArgument> =>
  Effect.suspend(() => {
    const packetType = options.packetType ?? PacketType.PACKET
    const maxConcurrentHandlers = options.maxConcurrentHandlers ?? DEFAULT_MAX_CONCURRENT_HANDLERS
    if (!isIntegerIn(packetType, 0, 255)) return Effect.fail(optionError("packetType", "an integer from 0 to 255", packetType))
    if (!isIntegerIn(maxConcurrentHandlers, 1, Number.MAX_SAFE_INTEGER)) {
      return Effect.fail(optionError("maxConcurrentHandlers", "a positive integer", maxConcurrentHandlers))
    }
    return Effect.succeed({ packetType, maxConcurrentHandlers })
  })

type ReadError = SessionError | UnexpectedPacket | InvalidArgument

/** Whether a read failed because the session ended, rather than on one packet. */
const isSessionEnd = (error: ReadError): error is SessionError =>
  error._tag !== "UnexpectedPacket" && error._tag !== "InvalidArgument"

const isOrderlyClose = (error: unknown): boolean => error instanceof ConnectionClosed && error.reason === "Closed"

/** The adapter over one session; `ended` turns true once a read or a watcher has seen the session end. */
interface Adapter {
  readonly socket: Socket.Socket
  readonly write: (chunk: Uint8Array | string | Socket.CloseEvent) => Effect.Effect<void, Socket.SocketError>
  ended: boolean
}

const encoder = new TextEncoder()

const adapt = (session: Session, settings: Settings): Adapter => {
  const { packetType, maxConcurrentHandlers } = settings
  let closeEvent: Socket.CloseEvent | undefined

  const write = (chunk: Uint8Array | string | Socket.CloseEvent): Effect.Effect<void, Socket.SocketError> => {
    if (Socket.isCloseEvent(chunk)) {
      closeEvent ??= chunk
      return session.close
    }
    const payload = typeof chunk === "string" ? encoder.encode(chunk) : chunk
    // Id 0: these packets are not requests, and nothing on either side matches replies to them.
    return Effect.mapError(
      session.send(new Packet({ id: 0, type: packetType, payload }, true)),
      (cause) => new Socket.SocketGenericError({ reason: "Write", cause })
    )
  }

  const runRaw = <_, E = never, R = never>(
    handler: (data: Uint8Array) => Effect.Effect<_, E, R> | void,
    options?: { readonly onOpen?: Effect.Effect<void> | undefined }
  ): Effect.Effect<void, Socket.SocketError | E, R> =>
    Effect.scoped(Effect.gen(function*() {
      const handlers = yield* FiberSet.make<unknown, E | Socket.SocketError>()
      const fork = yield* FiberSet.runtime(handlers)<R>()
      const slots = yield* Effect.makeSemaphore(maxConcurrentHandlers)
      const release = slots.release(1)

      const deliver = (packet: Packet): Effect.Effect<void> =>
        Effect.suspend(() => {
          const result = handler(packet.payload)
          if (!Effect.isEffect(result)) return release
          fork(Effect.ensuring(result, release))
          return Effect.void
        })

      const ended = (error: ReadError): Effect.Effect<void, Socket.SocketError> => {
        if (isSessionEnd(error)) adapter.ended = true
        if (!isOrderlyClose(error)) return Effect.fail(new Socket.SocketGenericError({ reason: "Read", cause: error }))
        if (closeEvent !== undefined && closeEvent.code !== 1000) {
          return Effect.fail(new Socket.SocketCloseError({ reason: "Close", code: closeEvent.code, closeReason: closeEvent.reason }))
        }
        // What arrived before the close is handled before `runRaw` returns (a reply in the last packet).
        return Effect.zipRight(slots.take(maxConcurrentHandlers), Deferred.succeed(handlers.deferred, undefined))
      }

      const reading: Effect.Effect<never, ReadError> = Effect.forever(
        Effect.zipRight(
          slots.take(1),
          Effect.flatMap(Effect.tapError(session.receive({ type: packetType }), () => release), deliver)
        )
      )
      yield* FiberSet.run(handlers, Effect.catchAll(reading, ended))
      if (options?.onOpen !== undefined) yield* options.onOpen
      return yield* FiberSet.join(handlers)
    }))

  const socket: Socket.Socket = Socket.Socket.of({
    [Socket.TypeId]: Socket.TypeId,
    run: runRaw,
    runRaw,
    writer: Effect.succeed(write)
  })
  const adapter: Adapter = { socket, write, ended: false }
  return adapter
}

/** @internal A socket over `session` with options already checked. */
export const socketOf = (session: Session, settings: Settings): Socket.Socket => adapt(session, settings).socket

/**
 * The session as a `Socket`. The session stays the caller's: `runRaw` may be run again after it
 * returns (packets that arrive meanwhile wait in the session's inbox), and neither `runRaw` nor the
 * writer's scope closes the session; only a `CloseEvent` does. One `runRaw` at a time: two would
 * share the packets between them.
 */
export const fromSession = (session: Session, options?: SessionSocketOptions): Effect.Effect<Socket.Socket, InvalidArgument> =>
  Effect.map(checkOptions(options), (settings) => socketOf(session, settings))

/**
 * A `Socket` over sessions that `connect` makes, for a client: one connection, one handshake, used
 * by every `runRaw` for as long as it lives.
 *
 * The first session is made at once, so that an unreachable server or a wrong password fails here,
 * with `connect`'s typed error, rather than inside a background `runRaw`. Once that session has
 * ended (closed by either side, cut, timed out), the next `runRaw` connects again, and fails with
 * `SocketError` "Open" (its `cause` `connect`'s error) if it cannot; writes wait until a session is
 * open, as they do on a platform socket that is not connected. Every session lives in a scope of
 * its own, released when the session ends or when the scope of this socket closes.
 */
export const reconnecting = <E>(
  connect: Effect.Effect<Session, E, Scope.Scope>,
  options?: SessionSocketOptions
): Effect.Effect<Socket.Socket, E | InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    const settings = yield* checkOptions(options)
    const outer = yield* Effect.scope
    const open = yield* Effect.makeLatch(false)
    let current: Adapter | undefined
    // Once this socket's scope has closed, writes fail instead of waiting for a session that will not come.
    let shut = false
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        shut = true
        return open.open
      })
    )
    const watchers = yield* FiberSet.make()
    // One connection attempt at a time, so that concurrent `runRaw`s share one session.
    const connecting = yield* Effect.makeSemaphore(1)

    const attach: Effect.Effect<Adapter, E> = Effect.gen(function*() {
      const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
      const session = yield* Effect.onError(Scope.extend(connect, scope), (cause) => Scope.close(scope, Exit.failCause(cause)))
      const adapter = adapt(session, settings)
      current = adapter
      yield* open.open
      // Releases the transport as soon as the session ends, not when the next one is made.
      yield* FiberSet.run(
        watchers,
        Effect.zipRight(
          session.closed,
          Effect.suspend(() => {
            adapter.ended = true
            if (current === adapter && !shut) open.unsafeClose()
            return Scope.close(scope, Exit.void)
          })
        )
      )
      return adapter
    })

    yield* attach

    const live: Effect.Effect<Adapter, Socket.SocketError> = connecting.withPermits(1)(
      Effect.suspend(() => {
        if (shut) return Effect.fail(new Socket.SocketGenericError({ reason: "Open", cause: new ConnectionClosed({ reason: "Closed" }) }))
        if (current !== undefined && !current.ended) return Effect.succeed(current)
        return Effect.mapError(attach, (cause) => new Socket.SocketGenericError({ reason: "Open", cause }))
      })
    )

    const runRaw = <_, E2 = never, R = never>(
      handler: (data: Uint8Array) => Effect.Effect<_, E2, R> | void,
      runOptions?: { readonly onOpen?: Effect.Effect<void> | undefined }
    ): Effect.Effect<void, Socket.SocketError | E2, R> => Effect.flatMap(live, (adapter) => adapter.socket.run(handler, runOptions))

    const write = (chunk: Uint8Array | string | Socket.CloseEvent): Effect.Effect<void, Socket.SocketError> =>
      open.whenOpen(
        Effect.suspend(() =>
          shut || current === undefined
            ? Effect.fail(new Socket.SocketGenericError({ reason: "Write", cause: new ConnectionClosed({ reason: "Closed" }) }))
            : current.write(chunk)
        )
      )

    return Socket.Socket.of({
      [Socket.TypeId]: Socket.TypeId,
      run: runRaw,
      runRaw,
      writer: Effect.succeed(write)
    })
  })
