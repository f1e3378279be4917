/**
 * Our requests (PROTOCOL.md §8.2): a table of ids in flight, each answer handed to the request
 * with its id, at most `maxInFlight` at once (further requests wait for a slot, counted without a
 * semaphore), and local timeouts that free the id so that a late answer is dropped.
 */
import { Duration, Effect, Exit } from "effect"
import { InvalidArgument, type RemoteError, RequestTimeout, type UnexpectedPacket } from "../errors.js"
import { MessageType } from "../wire/Messages.js"
import type { Packet } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import type { Resume, SessionContext } from "./Context.js"
import { type InboxItem, unexpected } from "./Inbox.js"
import type { IncomingStreams } from "./IncomingStreams.js"
import type { Outgoing } from "./Outgoing.js"
import type { IncomingStream, RequestError, RequestOptions, SessionError } from "./Session.js"
import { requestSpan, SPAN_REQUEST } from "../Observability.js"

export interface Requests {
  readonly request: (packet: Packet, options?: RequestOptions) => Effect.Effect<Packet, RequestError | UnexpectedPacket>
  readonly requestStream: (packet: Packet, options?: Pick<RequestOptions, "timeout">) => Effect.Effect<IncomingStream, RequestError>
  /**
   * Hands an answer to the request waiting on `id`; false if none is (the request was interrupted
   * or timed out, PROTOCOL.md §8.2), and the caller drops what it holds.
   */
  readonly answer: (id: number, answer: Exit.Exit<InboxItem, SessionError | RemoteError>) => boolean
  /** An id no request is using. */
  readonly nextId: () => number
  /** The session ended: every request in flight, and every one waiting for a slot, fails with it. */
  readonly end: (failure: Exit.Exit<never, SessionError>) => void
}

/**
 * While fewer bytes than this wait for the socket, a request is written as it is made, without a
 * check for back-pressure; above, it waits for the queue first, like any write.
 */
const DIRECT_WRITE_LIMIT = 64 * 1024

/** A request of ours in flight: its answer, a packet or a streamed reply, or the peer's `RemoteError`. */
interface PendingRequest {
  result: Exit.Exit<InboxItem, SessionError | RemoteError> | undefined
  resume: Resume<InboxItem, SessionError | RemoteError> | undefined
}

export const makeRequests = (
  ctx: SessionContext,
  maxInFlight: number,
  parts: { readonly outgoing: Outgoing; readonly streams: IncomingStreams; readonly sessionId: string }
): Requests => {
  const { outgoing, streams } = parts
  const pending = new Map<number, PendingRequest>()
  /** Requests waiting for one of the `maxInFlight` slots; the pending table itself counts those in use. */
  const slotWaiters: Array<() => void> = []
  let nextRequestId = 1

  /** Frees a request's id and its in-flight slot, if the table still holds this very request. */
  const forget = (id: number, slot: PendingRequest) => {
    if (pending.get(id) !== slot) return
    pending.delete(id)
    slotWaiters.shift()?.()
  }

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

  /** Each request runs under a `cvg.request` span (README "Observability"): its id, type and session, never its payload. */
  const traced = <A, E>(effect: Effect.Effect<A, E>, packet: Packet, stream: boolean): Effect.Effect<A, E> =>
    requestSpan(effect, SPAN_REQUEST, false, () => ({
      kind: "client",
      attributes: { "cvg.request.id": packet.id, "cvg.packet.type": packet.type, "cvg.session": parts.sessionId, "cvg.stream": stream }
    }))

  /** A reply's final form for `request`: a streamed one collected, its type checked against `expect`. */
  const settle = <E>(
    packet: Packet,
    expect: PacketType | undefined,
    answer: Exit.Exit<InboxItem, E>
  ): Effect.Effect<Packet, E | SessionError | UnexpectedPacket> => {
    if (Exit.isFailure(answer)) return Exit.failCause(answer.cause)
    const item = answer.value
    if (item._tag === "Packet") return checked(packet, expect, item.packet)
    // A streamed reply is collected, and what it held goes back at once: the caller owns it now.
    return Effect.flatMap(streams.collect(item), ([reply, charged]) => {
      ctx.budget.refund(charged)
      return checked(packet, expect, reply)
    })
  }

  const checked = (packet: Packet, expect: PacketType | undefined, reply: Packet): Exit.Exit<Packet, UnexpectedPacket> =>
    expect === undefined || reply.type === expect ? Exit.succeed(reply) : Exit.fail(unexpected({ type: expect, id: packet.id }, reply))

  /**
   * The common request, as one `Effect.async`: the REQUEST is written synchronously when it runs,
   * and the frame dispatch that brings the answer resumes the caller with its final result
   * (docs/performance.md). Anything else — no slot free, an id in use, a payload that needs chunks,
   * a queue to wait on — takes `exchange`.
   */
  const ask = (packet: Packet, expect: PacketType | undefined): Effect.Effect<Packet, SessionError | RemoteError | InvalidArgument | UnexpectedPacket> =>
    Effect.suspend(() => {
      if (ctx.ended !== undefined) return Effect.fail(ctx.ended)
      if (
        pending.size >= maxInFlight || pending.has(packet.id) || !outgoing.fitsOne(packet.payload.length) ||
        ctx.channel.pendingBytes() >= DIRECT_WRITE_LIMIT
      ) {
        return Effect.flatMap(Effect.exit(exchange(packet)), (answer) => settle(packet, expect, answer))
      }
      return Effect.async<Packet, SessionError | RemoteError | UnexpectedPacket>((resume) => {
        const slot: PendingRequest = { result: undefined, resume: (answer) => resume(settle(packet, expect, answer)) }
        pending.set(packet.id, slot)
        outgoing.writeNow(packet, MessageType.REQUEST)
        return Effect.sync(() => forget(packet.id, slot))
      })
    })

  return {
    request: (packet, options) => traced(withTimeout(ask(packet, options?.expect), packet.id, options?.timeout), packet, false),
    requestStream: (packet, options) =>
      traced(withTimeout(Effect.map(exchange(packet), streams.toIncomingStream), packet.id, options?.timeout), packet, true),
    answer: (id, answer) => {
      const request = pending.get(id)
      if (request === undefined) return false
      forget(id, request)
      if (request.resume !== undefined) request.resume(answer)
      else request.result = answer
      return true
    },
    nextId: () => {
      while (pending.has(nextRequestId)) nextRequestId = (nextRequestId + 1) >>> 0
      const id = nextRequestId
      nextRequestId = (nextRequestId + 1) >>> 0
      return id
    },
    end: (failure) => {
      for (const request of pending.values()) {
        if (request.resume !== undefined) request.resume(failure)
        else request.result = failure
      }
      pending.clear()
      for (const waiter of slotWaiters.splice(0)) waiter()
    }
  }
}
