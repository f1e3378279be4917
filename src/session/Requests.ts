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
): Requests => new RequestTable(ctx, maxInFlight, parts.outgoing, parts.streams, parts.sessionId)

/**
 * A class, so that an idle session's request table is one object, its map and queue made by the
 * first request that needs them (docs/resources.md, "Memory of an idle session").
 */
class RequestTable implements Requests {
  private pending: Map<number, PendingRequest> | undefined = undefined
  /** Requests waiting for one of the `maxInFlight` slots; the pending table itself counts those in use. */
  private slotWaiters: Array<() => void> | undefined = undefined
  private nextRequestId = 1

  constructor(
    private readonly ctx: SessionContext,
    private readonly maxInFlight: number,
    private readonly outgoing: Outgoing,
    private readonly streams: IncomingStreams,
    private readonly sessionId: string
  ) {}

  private table(): Map<number, PendingRequest> {
    return this.pending ?? (this.pending = new Map())
  }

  private inFlight(): number {
    return this.pending?.size ?? 0
  }

  /** Frees a request's id and its in-flight slot, if the table still holds this very request. */
  private forget(id: number, slot: PendingRequest): void {
    if (this.pending?.get(id) !== slot) return
    this.pending.delete(id)
    this.slotWaiters?.shift()?.()
  }

  private awaitAnswer(id: number, slot: PendingRequest): Effect.Effect<InboxItem, SessionError | RemoteError> {
    return Effect.async<InboxItem, SessionError | RemoteError>((resume) => {
      if (slot.result !== undefined) return resume(slot.result)
      slot.resume = (exit) => resume(exit)
      return Effect.sync(() => this.forget(id, slot))
    })
  }

  private get awaitSlot(): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const waiters = this.slotWaiters ?? (this.slotWaiters = [])
      const waiter = () => resume(Effect.void)
      waiters.push(waiter)
      return Effect.sync(() => {
        const i = waiters.indexOf(waiter)
        if (i >= 0) waiters.splice(i, 1)
      })
    })
  }

  /** Sends a REQUEST and waits for its answer; the id is in flight until then, and free after. */
  private exchange(packet: Packet): Effect.Effect<InboxItem, SessionError | RemoteError | InvalidArgument> {
    return Effect.suspend(() => {
      const ctx = this.ctx
      if (ctx.ended !== undefined) return Effect.fail(ctx.ended)
      if (this.inFlight() >= this.maxInFlight) return Effect.zipRight(this.awaitSlot, this.exchange(packet))
      const pending = this.table()
      if (pending.has(packet.id)) {
        // Our own mistake, not the peer's: two requests can't share an id (nextId gives free ones).
        return Effect.fail(
          new InvalidArgument({ reason: "Packet", field: "packet.id", detail: `request id ${packet.id} is already in flight; take ids from nextId()` })
        )
      }
      const slot: PendingRequest = { result: undefined, resume: undefined }
      pending.set(packet.id, slot)
      return this.outgoing.sendPacket(packet, MessageType.REQUEST).pipe(
        Effect.zipRight(this.awaitAnswer(packet.id, slot)),
        Effect.onExit(() => Effect.sync(() => this.forget(packet.id, slot)))
      )
    })
  }

  /** Each request runs under a `cvg.request` span (README "Observability"): its id, type and session, never its payload. */
  private traced<A, E>(effect: Effect.Effect<A, E>, packet: Packet, stream: boolean): Effect.Effect<A, E> {
    return requestSpan(effect, SPAN_REQUEST, false, () => ({
      kind: "client",
      attributes: { "cvg.request.id": packet.id, "cvg.packet.type": packet.type, "cvg.session": this.sessionId, "cvg.stream": stream }
    }))
  }

  /** A reply's final form for `request`: a streamed one collected, its type checked against `expect`. */
  private settle<E>(
    packet: Packet,
    expect: PacketType | undefined,
    answer: Exit.Exit<InboxItem, E>
  ): Effect.Effect<Packet, E | SessionError | UnexpectedPacket> {
    if (Exit.isFailure(answer)) return Exit.failCause(answer.cause)
    const item = answer.value
    if (item._tag === "Packet") return checked(packet, expect, item.packet)
    // A streamed reply is collected, and what it held goes back at once: the caller owns it now.
    return Effect.flatMap(this.streams.collect(item), ([reply, charged]) => {
      this.ctx.budget.refund(charged)
      return checked(packet, expect, reply)
    })
  }

  /**
   * The common request, as one `Effect.async`: the REQUEST is written synchronously when it runs,
   * and the frame dispatch that brings the answer resumes the caller with its final result
   * (docs/performance.md). Anything else — no slot free, an id in use, a payload that needs chunks,
   * a queue to wait on — takes `exchange`.
   */
  private ask(packet: Packet, expect: PacketType | undefined): Effect.Effect<Packet, SessionError | RemoteError | InvalidArgument | UnexpectedPacket> {
    return Effect.suspend(() => {
      const ctx = this.ctx
      if (ctx.ended !== undefined) return Effect.fail(ctx.ended)
      if (
        this.inFlight() >= this.maxInFlight || this.pending?.has(packet.id) === true || !this.outgoing.fitsOne(packet.payload.length) ||
        ctx.channel.pendingBytes() >= DIRECT_WRITE_LIMIT
      ) {
        return Effect.flatMap(Effect.exit(this.exchange(packet)), (answer) => this.settle(packet, expect, answer))
      }
      return Effect.async<Packet, SessionError | RemoteError | UnexpectedPacket>((resume) => {
        const slot: PendingRequest = { result: undefined, resume: (answer) => resume(this.settle(packet, expect, answer)) }
        this.table().set(packet.id, slot)
        this.outgoing.writeNow(packet, MessageType.REQUEST)
        return Effect.sync(() => this.forget(packet.id, slot))
      })
    })
  }

  request(packet: Packet, options?: RequestOptions): Effect.Effect<Packet, RequestError | UnexpectedPacket> {
    return this.traced(withTimeout(this.ask(packet, options?.expect), packet.id, options?.timeout), packet, false)
  }

  requestStream(packet: Packet, options?: Pick<RequestOptions, "timeout">): Effect.Effect<IncomingStream, RequestError> {
    return this.traced(
      withTimeout(Effect.map(this.exchange(packet), (item) => this.streams.toIncomingStream(item)), packet.id, options?.timeout),
      packet,
      true
    )
  }

  answer(id: number, answer: Exit.Exit<InboxItem, SessionError | RemoteError>): boolean {
    const request = this.pending?.get(id)
    if (request === undefined) return false
    this.forget(id, request)
    if (request.resume !== undefined) request.resume(answer)
    else request.result = answer
    return true
  }

  nextId(): number {
    while (this.pending?.has(this.nextRequestId) === true) this.nextRequestId = (this.nextRequestId + 1) >>> 0
    const id = this.nextRequestId
    this.nextRequestId = (this.nextRequestId + 1) >>> 0
    return id
  }

  end(failure: Exit.Exit<never, SessionError>): void {
    if (this.pending !== undefined) {
      for (const request of this.pending.values()) {
        if (request.resume !== undefined) request.resume(failure)
        else request.result = failure
      }
      this.pending.clear()
    }
    if (this.slotWaiters !== undefined) for (const waiter of this.slotWaiters.splice(0)) waiter()
  }
}

const withTimeout = <A, E>(
  effect: Effect.Effect<A, E>,
  id: number,
  timeout: Duration.DurationInput | undefined
): Effect.Effect<A, E | RequestTimeout> => {
  if (timeout === undefined) return effect
  const millis = Duration.toMillis(timeout)
  return Effect.timeoutFail(effect, { duration: timeout, onTimeout: () => new RequestTimeout({ id, millis }) })
}

const checked = (packet: Packet, expect: PacketType | undefined, reply: Packet): Exit.Exit<Packet, UnexpectedPacket> =>
  expect === undefined || reply.type === expect ? Exit.succeed(reply) : Exit.fail(unexpected({ type: expect, id: packet.id }, reply))
