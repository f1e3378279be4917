/**
 * The server: listens on TCP, runs one handshake per connection in its own fiber under the
 * handshake timeout, then hands the session to the user's handler.
 *
 * A connection's failure is logged with the peer's address and touches no other connection. When
 * the server is interrupted, the listener closes and every open session is sent CLOSE
 * (PROTOCOL.md §7.1) before its socket is released.
 */
import * as Socket from "@effect/platform/Socket"
import type * as SocketServer from "@effect/platform/SocketServer"
import { Cause, Clock, Context, Deferred, Duration, Effect, Exit, FiberRef, HashMap, Layer, Option, Scope } from "effect"
import { Crypto, type CryptoService } from "../crypto/Crypto.js"
import * as NodeCrypto from "../crypto/NodeCrypto.js"
import { AuthFailed, HandshakeError, type InvalidArgument, type ListenFailed } from "../errors.js"
import {
  type Admission,
  DEFAULT_PUZZLE_THRESHOLD,
  EVICTED,
  isBusyRefusal,
  serverHandshake,
  type HandshakeFailure,
  type HandshakeOptions
} from "../handshake/Handshake.js"
import { checkServeOptions, checkSessionOptions } from "../internal/validate.js"
import { makeMemoryPool } from "../session/Budget.js"
import { makeWatchdog, SERVER_TICK } from "../session/Watchdog.js"
import { fromHandshake, type Session, type SessionOptions, type SessionSetup } from "../session/Session.js"
import { listenFailed } from "../transport/NetErrors.js"
import { listenTcp } from "../transport/NetListener.js"
import { netSocket } from "../transport/Transport.js"
import type * as Net from "node:net"
import { encodeFrame } from "../wire/Frame.js"
import { AlertCode, MessageType } from "../wire/Messages.js"
import { countTagged, LOG_PEER, LOG_SESSION, refusedConnections } from "../Observability.js"
import { addressKey, makeThrottle, type ThrottleOptions } from "./Throttle.js"

/**
 * With a password, the server also throttles online guessing per source address (`ThrottleOptions`,
 * PROTOCOL.md §10.5): after `maxPasswordFailures` failed attempts an address is refused with ALERT
 * THROTTLED for a time that doubles with each further failure.
 */
export interface ServeOptions extends HandshakeOptions, SessionOptions, ThrottleOptions {
  /** Default `"127.0.0.1"`. */
  readonly host?: string | undefined
  /** 0 picks a free port; `address` tells which. */
  readonly port: number
  /**
   * Connections served at once. Over the cap a new connection evicts the oldest handshake waiting on
   * its peer (ALERT TIMEOUT); when there is none it is refused with ALERT LIMIT_EXCEEDED. Default 1024.
   */
  readonly maxConnections?: number | undefined
  /**
   * Bytes all connections together may hold for their peers beyond each one's 64 KiB allowance
   * (PROTOCOL.md §10). A connection whose charge finds the pool empty ends with `LimitExceeded`.
   * Default 256 MiB.
   */
  readonly memoryBudget?: number | undefined
  /**
   * Connections still in their handshake; a new one over the cap evicts the oldest pending handshake
   * waiting on its peer (ALERT TIMEOUT) rather than being refused, so silent connections cannot lock
   * others out (PROTOCOL.md §10.5). Default 512.
   */
  readonly maxHandshakes?: number | undefined
}

export const DEFAULT_MAX_HANDSHAKES = 512

export const DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024
/** A server ends sessions that stay silent this long unless told otherwise (PROTOCOL.md §10). */
export const DEFAULT_SERVER_IDLE_TIMEOUT = Duration.minutes(5)

export interface Server {
  readonly address: SocketServer.TcpAddress
  /** Serves connections until interrupted. */
  readonly run: <E, R>(handler: (session: Session) => Effect.Effect<unknown, E, R>) => Effect.Effect<never, SocketServer.SocketServerError, Exclude<R, Scope.Scope>>
}

/** Handshake, then a session, over whatever `Socket` and `Crypto` the context provides. */
export const session = (
  options: HandshakeOptions & SessionSetup = {},
  admission?: Admission
): Effect.Effect<Session, HandshakeFailure | InvalidArgument, Socket.Socket | Crypto | Scope.Scope> =>
  Effect.flatMap(checkSessionOptions(options), (options) => fromHandshake(serverHandshake(options, admission), options))

/**
 * A warning logged at most once a second, with how many events happened since the last line: a flood
 * of refusals must not become a flood of log lines (PROTOCOL.md §10.5).
 */
/** @internal Exported for its test. */
export const rateLimitedWarning = (message: string) => rateLimitedTally(message)("")

/** The same, counting events by a key (such as an error's tag and reason) in each line. */
const rateLimitedTally = (message: string) => {
  const counts = new Map<string, number>()
  let last = Number.NEGATIVE_INFINITY
  return (key: string) =>
    Effect.gen(function*() {
      counts.set(key, (counts.get(key) ?? 0) + 1)
      const now = yield* Clock.currentTimeMillis
      if (now - last < 1000) return
      last = now
      const summary = [...counts].map(([k, n]) => (k === "" ? `${n}` : `${k} x${n}`)).join(", ")
      counts.clear()
      yield* Effect.logWarning(`${message} (${summary} since the last line)`)
    })
}

/**
 * Up to `perSecond` failed connections a second are logged one by one, with their peer and cause;
 * beyond that they are only counted by error in a line a second, so that a flood of failing
 * connections costs the server a few log lines, not one formatted cause each (PROTOCOL.md §10.5).
 */
const FAILURES_LOGGED_PER_SECOND = 10
const makeFailureLog = () => {
  let windowStart = Number.NEGATIVE_INFINITY
  let logged = 0
  const tally = rateLimitedTally("cvg-core: more connections failed than are logged one by one")
  return (cause: Cause.Cause<unknown>, peer: string) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (now - windowStart >= 1000) {
        windowStart = now
        logged = 0
      }
      if (logged++ < FAILURES_LOGGED_PER_SECOND) {
        return yield* Effect.logWarning("cvg-core: connection failed", cause).pipe(Effect.annotateLogs({ peer }))
      }
      const failure = Cause.failureOption(cause)
      const error = Option.getOrUndefined(failure)
      const key = typeof error === "object" && error !== null && "_tag" in error
        ? `${String(error._tag)}${"reason" in error ? ` ${String(error.reason)}` : ""}`
        : Cause.isInterruptedOnly(cause) ? "interrupted" : "defect"
      yield* tally(key)
    })
}

/**
 * Handshakes in progress, oldest first. Over the cap one is evicted to make room: the oldest of those
 * waiting on their peer (a silent or slow connection, or one that did not solve its puzzle), or the
 * oldest of all when none is. A handshake waiting on the server's own P-521 work is not the one to
 * drop while another is idle.
 */
const makeHandshakeSlots = (maxHandshakes: number, onEvict: Effect.Effect<void>) => {
  /** `heard`: the peer has sent at least one handshake message, so it is at least not silent. */
  const pending = new Map<number, { readonly evicted: Deferred.Deferred<void>; waiting: boolean; heard: boolean }>()
  let next = 0
  /**
   * Who makes room: the oldest connection still silent since it connected, else the oldest waiting on
   * its peer, else the oldest. Silent ones go first so that a flood of new silent connections, each
   * evicting the oldest, cannot keep evicting a real client between its handshake messages.
   */
  const oldest = (test: (entry: { waiting: boolean; heard: boolean }) => boolean): number | undefined => {
    for (const [id, entry] of pending) if (test(entry)) return id
    return undefined
  }
  const victim = (): number | undefined =>
    oldest((e) => e.waiting && !e.heard) ?? oldest((e) => e.waiting) ?? pending.keys().next().value
  /**
   * Evicts the oldest handshake waiting on its peer, if there is one: a connection over
   * `maxConnections` takes a silent one's place instead of being refused (PROTOCOL.md §10.5).
   */
  const evictWaiting: Effect.Effect<boolean> = Effect.suspend(() => {
    const id = oldest((e) => e.waiting && !e.heard) ?? oldest((e) => e.waiting)
    const entry = id === undefined ? undefined : pending.get(id)
    if (id === undefined || entry === undefined) return Effect.succeed(false)
    pending.delete(id)
    return Effect.as(Effect.zipRight(Deferred.succeed(entry.evicted, undefined), onEvict), true)
  })
  const slot = (underLoad: () => boolean) =>
    Effect.gen(function*() {
      const id = next++
      const evicted = yield* Deferred.make<void>()
      while (pending.size >= Math.max(1, maxHandshakes)) {
        const oldest = victim()
        const entry = oldest === undefined ? undefined : pending.get(oldest)
        if (oldest === undefined || entry === undefined) break
        pending.delete(oldest)
        yield* Deferred.succeed(entry.evicted, undefined)
        yield* onEvict
      }
      const entry = { evicted, waiting: false, heard: false }
      pending.set(id, entry)
      const admission: Admission = {
        evicted: Deferred.await(evicted),
        waitingOnPeer: (waiting) => {
          if (entry.waiting && !waiting) entry.heard = true
          entry.waiting = waiting
        },
        underLoad,
        done: Effect.sync(() => void pending.delete(id))
      }
      return admission
    })
  return { slot, evictWaiting }
}

/**
 * Whether the server counts as loaded, for the puzzle (PROTOCOL.md §3.6): from the moment its P-521
 * queue reaches the threshold until it has stayed below it for {@link PUZZLE_HOLD_MS}. Without the
 * hold, a flood would be let through again each time the queue dipped, and keep every P-521 slot
 * busy with replayed hellos.
 */
const PUZZLE_HOLD_MS = 5000
const makeLoadSignal = (crypto: CryptoService, threshold: number) => {
  let until = Number.NEGATIVE_INFINITY
  return () => {
    const now = Date.now()
    if ((crypto.load?.().queued ?? 0) >= threshold) until = now + PUZZLE_HOLD_MS
    return now < until
  }
}

/** The peer's address and port for logs, and its IP alone for the throttle. */
const peerOf = (conn: Net.Socket) => ({
  peer: conn.remoteAddress === undefined ? "unknown" : `${conn.remoteAddress}:${conn.remotePort}`,
  ip: conn.remoteAddress
})

/**
 * Refuses a connection: one plaintext alert (PROTOCOL.md §6: LIMIT_EXCEEDED over the limit, THROTTLED
 * for an address refused after failed passwords, §10.5), then the socket is released. A platform
 * socket only writes while its `run` is going, hence the reader.
 */
const refuse = (socket: Socket.Socket, code: AlertCode = AlertCode.LIMIT_EXCEEDED) =>
  Effect.scoped(
    Effect.gen(function*() {
      const write = yield* socket.writer
      yield* Effect.forkScoped(socket.run(() => {}))
      yield* write(encodeFrame(MessageType.ALERT, Uint8Array.of(code)))
      yield* write(new Socket.CloseEvent())
    })
  ).pipe(Effect.timeout("1 second"), Effect.ignore)

/** A wrong password found by this server, or reported by its client (PROTOCOL.md §5): one failed guess. */
const isWrongPassword = (cause: Cause.Cause<unknown>): boolean =>
  Option.exists(Cause.failureOption(cause), (error) => error instanceof AuthFailed && error.reason === "WrongPassword")

/**
 * The throttle's log (PROTOCOL.md §10.5): a line when an address starts or extends a refusal, with the
 * address, its failures and the backoff, at most one a second (how many more since the last line is
 * said in it), so that a guessing flood from many addresses stays a few lines.
 */
const makeThrottleLog = () => {
  let last = Number.NEGATIVE_INFINITY
  let more = 0
  return (address: string, failures: number, backoffMillis: number) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (now - last < 1000) {
        more++
        return
      }
      last = now
      const since = more === 0 ? "" : ` (${more} more since the last line)`
      more = 0
      yield* Effect.logWarning(
        `cvg-core: password attempts throttled: ${address} refused for ${Duration.format(Duration.millis(backoffMillis))} after ${failures} failures${since}`
      ).pipe(Effect.annotateLogs({ address, failures, backoffMillis }))
    })
}

/**
 * Options the server cannot use (`InvalidArgument`), an address it cannot bind (`ListenFailed`), or
 * the listener failing later (`SocketServerError`).
 */
export type ServeError = ListenFailed | InvalidArgument | SocketServer.SocketServerError

/** Binds the listener; the returned server serves once `run` is called. */
export const listen = (options: ServeOptions): Effect.Effect<Server, ListenFailed | InvalidArgument, Scope.Scope> =>
  Effect.gen(function*() {
    yield* checkServeOptions(options)
    const host = options.host ?? "127.0.0.1"
    // Frames are already coalesced by the writer; Nagle would only add latency to replies.
    const listener = yield* listenTcp({ host, port: options.port, noDelay: true }).pipe(
      Effect.mapError(listenFailed(host, options.port))
    )
    const address = listener.address
    const maxConnections = options.maxConnections ?? 1024
    let connections = 0
    const pool = makeMemoryPool(options.memoryBudget ?? DEFAULT_MEMORY_BUDGET)
    const watchdog = yield* makeWatchdog(SERVER_TICK)
    // One runtime for every session's release at its end, rather than one captured by each.
    const runtime = yield* Effect.runtime<never>()
    const idleTimeout = options.idleTimeout ?? DEFAULT_SERVER_IDLE_TIMEOUT
    // One P-521 work pool for the whole server, so that its caps on work in flight and waiting hold
    // across connections (PROTOCOL.md §10.5); a `Crypto` in the context (tests) is used as it is.
    const crypto = yield* Option.match(yield* Effect.serviceOption(Crypto), {
      onNone: () => NodeCrypto.make,
      onSome: Effect.succeed
    })
    const busyLog = rateLimitedWarning("cvg-core: handshakes refused, P-521 work queue full")
    const evictLog = rateLimitedWarning("cvg-core: pending handshakes evicted to make room (maxHandshakes or maxConnections reached)")
    const refusedLog = rateLimitedWarning("cvg-core: connections refused, maxConnections reached")
    // Only a server with a password can be guessed against (PROTOCOL.md §10.5).
    const throttle = options.password === undefined ? undefined : makeThrottle(options)
    const throttleLog = makeThrottleLog()
    const throttledRefusalLog = rateLimitedTally("cvg-core: connections refused, address throttled after failed passwords")
    const failureLog = makeFailureLog()
    const onEvict = Effect.zipRight(Effect.sync(() => countTagged(refusedConnections, { reason: "evicted" })), evictLog)
    const handshakes = makeHandshakeSlots(options.maxHandshakes ?? DEFAULT_MAX_HANDSHAKES, onEvict)
    const handshakeSlot = handshakes.slot(makeLoadSignal(crypto, options.puzzleThreshold ?? DEFAULT_PUZZLE_THRESHOLD))
    /** A wrong password counts against its address (PROTOCOL.md §10.5), and is logged like any failure. */
    const countGuess = (cause: Cause.Cause<unknown>, ip: string | undefined) => {
      const key = addressKey(ip)
      if (throttle === undefined || key === undefined || !isWrongPassword(cause)) return Effect.void
      return Effect.flatMap(throttle.failed(key), (failure) =>
        failure.backoffMillis > 0 ? throttleLog(key, failure.failures, failure.backoffMillis) : Effect.void)
    }
    /** Failures that admission control caused are counted in rate-limited lines, not logged one by one. */
    const logFailure = (cause: Cause.Cause<unknown>, peer: string) => {
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure) && isBusyRefusal(failure.value)) {
        countTagged(refusedConnections, { reason: "busy" })
        return busyLog
      }
      if (Option.isSome(failure) && failure.value instanceof HandshakeError && failure.value.detail === EVICTED) return Effect.void
      return failureLog(cause, peer)
    }

    // Kept flat on purpose: every wrapper of the connection's effect stays on its fiber's stack, with
    // its closures, for as long as the session lives (docs/resources.md, "Memory of an idle
    // session"). So the connection's scope is made and closed here by hand rather than by
    // `Effect.scoped`, and the scope and the log annotations are set on the connection's fiber
    // rather than provided around the handler: the fiber ends with the connection, so nothing needs
    // restoring. The slot is a counter given back by that scope, and the session object goes to the
    // handler without the server holding it.
    const connection = <E, R>(
      conn: Net.Socket,
      scope: Scope.CloseableScope,
      handler: (session: Session) => Effect.Effect<unknown, E, R>,
      log: { peer: string }
    ): Effect.Effect<Effect.Effect<unknown, unknown, Exclude<R, Scope.Scope>>> =>
      Effect.gen(function*() {
        const { ip, peer } = peerOf(conn)
        // The connection is ours from here: the session's transport takes it over, and whatever
        // happens before, it goes with the connection's scope.
        const socket = yield* netSocket(conn)
        log.peer = peer
        yield* FiberRef.update(FiberRef.currentLogAnnotations, HashMap.set<string, unknown>(LOG_PEER, peer))
        const key = throttle === undefined ? undefined : addressKey(ip)
        // One handshake in progress for the address, held until its outcome is counted, not for the
        // session; given back by the connection's scope too, should the handshake never start (§10.5).
        let guessing = false
        const endGuess = () => {
          if (guessing && throttle !== undefined && key !== undefined) throttle.end(key)
          guessing = false
        }
        const guessed = Effect.sync(endGuess)
        // The connection's slot, its guess and its socket, given back by one finalizer, registered
        // before any refusal so that a refusal that times out or is interrupted still closes it.
        let admitted = false
        yield* Scope.addFinalizer(
          scope,
          Effect.sync(() => {
            if (admitted) connections--
            endGuess()
            if (!conn.destroyed) conn.destroySoon()
          })
        )
        // An address refused after failed passwords costs no handshake work at all (§10.5).
        if (throttle !== undefined && key !== undefined && Option.isSome(yield* throttle.refusal(key))) {
          countTagged(refusedConnections, { reason: "throttled" })
          yield* throttledRefusalLog(key)
          return refuse(socket, AlertCode.THROTTLED)
        }
        if (throttle !== undefined && key !== undefined) {
          throttle.begin(key)
          guessing = true
        }
        // Full: a handshake waiting on a silent peer makes room; the evicted connection gives its
        // count back as it closes, so the count may exceed the cap by the evictions in progress.
        if (connections >= maxConnections && !(yield* handshakes.evictWaiting)) {
          countTagged(refusedConnections, { reason: "maxConnections" })
          yield* refusedLog
          return refuse(socket)
        }
        // Checked and taken in one synchronous step; the finalizer above gives it back.
        admitted = true
        connections++
        const slot = yield* handshakeSlot
        const established = yield* Effect.exit(
          session({ ...options, peer, pool, watchdog, idleTimeout, runtime }, slot).pipe(
            Effect.provideService(Socket.Socket, socket),
            Effect.provideService(Crypto, crypto),
            Effect.provideService(Scope.Scope, scope),
            // The handshake's outcome only: a handler's own errors are not the peer's guesses.
            Effect.tapErrorCause((cause) => countGuess(cause, ip)),
            Effect.ensuring(guessed)
          )
        )
        if (Exit.isFailure(established)) return Effect.failCause(established.cause)
        yield* FiberRef.update(FiberRef.currentLogAnnotations, HashMap.set<string, unknown>(LOG_SESSION, established.value.info.id))
        yield* FiberRef.update(FiberRef.currentContext, Context.add(Scope.Scope, scope))
        // Returned, not run here: the generator's frame is gone by the time the handler runs. The
        // handler's `Scope` is the connection's, set in this fiber's context above.
        return handler(established.value) as Effect.Effect<unknown, E, Exclude<R, Scope.Scope>>
      })

    const run = <E, R>(handler: (session: Session) => Effect.Effect<unknown, E, R>) =>
      listener.run((conn) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(Scope.make(), (scope) => {
            const log = { peer: "unknown" }
            return Effect.matchCauseEffect(restore(Effect.flatten(connection(conn, scope, handler, log))), {
              onSuccess: () => Scope.close(scope, Exit.void),
              // The server stopping interrupts its connections: that is no failure to log.
              onFailure: (cause) =>
                Cause.isInterruptedOnly(cause)
                  ? Scope.close(scope, Exit.failCause(cause))
                  : Effect.zipRight(logFailure(cause, log.peer), Scope.close(scope, Exit.failCause(cause)))
            })
          })
        )
      )

    return { address, run }
  })

/** Serve options, plus a callback that learns the bound address (with port 0 there is no other way). */
export type ServeAndAnnounceOptions = ServeOptions & {
  readonly onListen?: ((address: SocketServer.TcpAddress) => Effect.Effect<void>) | undefined
}

const listenAndAnnounce = (options: ServeAndAnnounceOptions) =>
  Effect.tap(listen(options), (server) => options.onListen?.(server.address) ?? Effect.void)

/** Listens and serves until interrupted. */
export const serve = <E, R>(
  options: ServeAndAnnounceOptions,
  handler: (session: Session) => Effect.Effect<unknown, E, R>
): Effect.Effect<never, ServeError, Exclude<R, Scope.Scope>> =>
  Effect.scoped(Effect.flatMap(listenAndAnnounce(options), (server) => server.run(handler)))

/**
 * The server as a Layer: it serves in the background for as long as the Layer is alive; a failure
 * to listen fails the Layer itself.
 */
export const layer = <E, R>(
  options: ServeAndAnnounceOptions,
  handler: (session: Session) => Effect.Effect<unknown, E, R>
): Layer.Layer<never, ServeError, Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(Effect.flatMap(listenAndAnnounce(options), (server) => Effect.forkScoped(server.run(handler))))
