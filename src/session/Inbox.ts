/**
 * The inbox: received packets and streams waiting for `receive`, `respond` or `serve`.
 *
 * An item goes straight to a caller already waiting, or to a running `serve` with a free handler
 * slot when nothing is queued before it; otherwise it waits here, its bytes charged to
 * the budget, up to `maxQueuedPackets` items (PROTOCOL.md §10.1). Waiting callers are `Effect.async`
 * callbacks in an array, not a queue of Deferreds (docs/performance.md).
 */
import { Effect, Exit } from "effect"
import type { ByteBudget } from "./Budget.js"
import { ProtocolError, UnexpectedPacket } from "../errors.js"
import type { Packet } from "../wire/Packet.js"
import type { PacketType } from "../wire/PacketType.js"
import type { Resume, SessionContext } from "./Context.js"
import type { IncomingStreamState } from "./IncomingStreams.js"
import type { PacketFilter, SessionError } from "./Session.js"

/** A received packet or stream; `request`: the sender awaits an answer (PROTOCOL.md §8.2). */
export type InboxItem =
  | { readonly _tag: "Packet"; readonly packet: Packet; readonly charged: number; readonly request: boolean }
  | { readonly _tag: "Stream"; readonly id: number; readonly type: PacketType; readonly state: IncomingStreamState; readonly request: false }

export interface Inbox {
  /**
   * Queues a received packet. `charged` is what its bytes already hold against the budget (a
   * reassembled message); a packet that arrived whole is charged here, with its overhead.
   */
  readonly deliverPacket: (packet: Packet, request: boolean, charged: number) => void
  readonly deliver: (item: InboxItem) => void
  readonly take: Effect.Effect<InboxItem, SessionError>
  /** Takes the next item, failing with `UnexpectedPacket` (the item consumed) when it does not match. */
  readonly takeMatching: (filter: PacketFilter | undefined) => Effect.Effect<InboxItem, SessionError | UnexpectedPacket>
  /** The next item if one waits, without waiting. */
  readonly poll: () => InboxItem | undefined
  /**
   * Registers a running `serve`: an item that arrives while no caller waits and nothing is queued
   * before it is offered to it first; `ready` runs when the session ends. Returns the unregistering
   * function.
   */
  readonly addServer: (server: InboxServer) => () => void
  /** Items waiting. */
  readonly size: () => number
  /**
   * The session ended: waiting callers fail. After an orderly close (`orderly`), what the peer sent
   * before its CLOSE stays for `receive` and `serve`, which see the close once it is taken
   * (PROTOCOL.md §7.1); after a failure nothing that arrived can be acted on, and it goes.
   */
  readonly end: (failure: Exit.Exit<never, SessionError>, orderly: boolean) => void
}

/** A running `serve`, as the inbox sees it. */
export interface InboxServer {
  /** Takes the item and starts handling it at once, or declines (every handler slot is busy). */
  readonly offer: (item: InboxItem) => boolean
  /** The session ended: what is queued is all there will be. */
  readonly ready: () => void
}

/** Charged per queued packet on top of its payload, so that empty packets are not free (PROTOCOL.md §10.1). */
const ITEM_OVERHEAD = 64
/**
 * Read pacing (PROTOCOL.md §10.1): with this many bytes of packets waiting untaken, the connection
 * is read slowly, until fewer than {@link PACE_BELOW} wait. A peer sending faster than the
 * application takes is slowed by TCP instead of filling `maxBufferedBytes` and being cut off, and
 * one sending to an application that stopped taking costs a trickle rather than its budget at once.
 */
const PACE_ABOVE = 1024 * 1024
const PACE_BELOW = 512 * 1024

/** What an item still holds against the budget, given back once the application has it. */
export const release = (budget: ByteBudget, item: InboxItem): void => {
  if (item._tag === "Packet") budget.refund(item.charged)
}

const matches = (filter: PacketFilter | undefined, packet: { readonly id: number; readonly type: number }) =>
  filter === undefined ||
  ((filter.type === undefined || filter.type === packet.type) && (filter.id === undefined || filter.id === packet.id))

export const unexpected = (filter: PacketFilter | undefined, packet: { readonly id: number; readonly type: number }) =>
  new UnexpectedPacket({
    expected: { ...(filter?.type === undefined ? {} : { type: filter.type }), ...(filter?.id === undefined ? {} : { id: filter.id }) },
    received: { type: packet.type, id: packet.id }
  })

export const makeInbox = (ctx: SessionContext, maxQueued: number): Inbox => new Mailroom(ctx, maxQueued)

/**
 * A class, so that an idle session's inbox is one object, its arrays made by their first item
 * (docs/resources.md, "Memory of an idle session").
 */
class Mailroom implements Inbox {
  private readonly items: Array<InboxItem> = []
  private takers: Array<Resume<InboxItem>> | undefined = undefined
  /** One per running `serve`. */
  private servers: Array<InboxServer> | undefined = undefined
  /** What the waiting packets hold against the budget; reading is paced above `PACE_ABOVE`. */
  private waitingBytes = 0
  private paced = false

  constructor(private readonly ctx: SessionContext, private readonly maxQueued: number) {}

  deliver(item: InboxItem): void {
    const taker = this.takers?.shift()
    if (taker !== undefined) return taker(Exit.succeed(item))
    // Straight to a `serve` with a free slot, in this dispatch step (docs/performance.md); never
    // ahead of what already waits, so items are started in arrival order.
    if (this.items.length === 0 && this.servers !== undefined) for (const server of this.servers) if (server.offer(item)) return
    if (this.items.length >= this.maxQueued) return this.ctx.fail(new ProtocolError({ reason: "LimitExceeded", detail: "too many queued packets" }))
    this.items.push(item)
    if (item._tag === "Packet") this.waited(item.charged)
  }

  /** The next waiting item, out of the queue. */
  private shift(): InboxItem | undefined {
    const item = this.items.shift()
    if (item?._tag === "Packet") this.waited(-item.charged)
    return item
  }

  private waited(bytes: number): void {
    this.waitingBytes += bytes
    // Once the session has ended, what still arrives is dropped: nothing to be slow for, and after
    // our CLOSE the peer's answering CLOSE comes behind whatever it had in flight.
    const pace = this.ctx.ended !== undefined
      ? false
      : this.paced ? this.waitingBytes >= PACE_BELOW : this.waitingBytes >= PACE_ABOVE
    if (pace !== this.paced) {
      this.paced = pace
      this.ctx.channel.paceReading(pace)
    }
  }

  deliverPacket(packet: Packet, request: boolean, charged: number): void {
    const extra = ITEM_OVERHEAD + (charged === 0 ? packet.payload.length : 0)
    if (!this.ctx.charge(extra)) return this.ctx.budget.refund(charged)
    this.deliver({ _tag: "Packet", packet, charged: charged + extra, request })
  }

  get take(): Effect.Effect<InboxItem, SessionError> {
    return Effect.async<InboxItem, SessionError>((resume) => {
      const item = this.shift()
      if (item !== undefined) return resume(Effect.succeed(item))
      if (this.ctx.ended !== undefined) return resume(Effect.fail(this.ctx.ended))
      const takers = this.takers ?? (this.takers = [])
      const taker: Resume<InboxItem> = (exit) => resume(exit)
      takers.push(taker)
      return Effect.sync(() => {
        const i = takers.indexOf(taker)
        if (i >= 0) takers.splice(i, 1)
      })
    })
  }

  takeMatching(filter: PacketFilter | undefined): Effect.Effect<InboxItem, SessionError | UnexpectedPacket> {
    return Effect.flatMap(this.take, (item): Effect.Effect<InboxItem, UnexpectedPacket> => {
      const header = item._tag === "Packet" ? item.packet : item
      if (matches(filter, header)) return Effect.succeed(item)
      release(this.ctx.budget, item)
      return Effect.fail(unexpected(filter, header))
    })
  }

  poll(): InboxItem | undefined {
    return this.shift()
  }

  addServer(server: InboxServer): () => void {
    const servers = this.servers ?? (this.servers = [])
    servers.push(server)
    return () => {
      const i = servers.indexOf(server)
      if (i >= 0) servers.splice(i, 1)
    }
  }

  size(): number {
    return this.items.length
  }

  end(failure: Exit.Exit<never, SessionError>, orderly: boolean): void {
    if (this.takers !== undefined) for (const taker of this.takers.splice(0)) taker(failure)
    if (!orderly) {
      this.items.length = 0
      this.waitingBytes = 0
    }
    this.waited(0)
    if (this.servers !== undefined) for (const server of [...this.servers]) server.ready()
  }
}
