/**
 * Byte budgets for what a session holds on its peer's behalf (PROTOCOL.md §10, docs/resources.md).
 *
 * Every byte a peer makes us keep — a message being reassembled, a packet waiting in the inbox, a
 * stream chunk the consumer has not taken — is charged when it arrives and refunded when the
 * application takes it or the session ends. A connection draws first on a small allowance of its
 * own, then on a pool that all connections of a server share, and never beyond its own limit. So
 * one peer cannot take more than its limit, and all peers together cannot take more than the pool
 * plus the allowances; a refused charge ends only the connection that asked.
 */

/** Bytes shared by every connection of one server. */
export interface MemoryPool {
  /** Takes `bytes` from the pool if they are there. */
  readonly reserve: (bytes: number) => boolean
  readonly release: (bytes: number) => void
  /** Bytes currently taken. */
  readonly used: () => number
  readonly size: number
}

export const makeMemoryPool = (size: number): MemoryPool => {
  let used = 0
  return {
    size,
    used: () => used,
    reserve: (bytes) => {
      if (used + bytes > size) return false
      used += bytes
      return true
    },
    release: (bytes) => {
      used = Math.max(0, used - bytes)
    }
  }
}

/** Why a charge was refused. */
export type BudgetRefusal = "ConnectionLimit" | "PoolExhausted"

/** One connection's account. */
export interface ByteBudget {
  /** Charges `bytes`; on refusal nothing is charged. */
  readonly charge: (bytes: number) => BudgetRefusal | undefined
  readonly refund: (bytes: number) => void
  /** Bytes charged and not yet refunded. */
  readonly held: () => number
  /** Gives everything still held back to the pool; later charges are refused, refunds ignored. */
  readonly close: () => void
}

export interface ByteBudgetOptions {
  /** Most this connection may hold. */
  readonly limit: number
  /** Held without drawing on the pool. */
  readonly allowance: number
  readonly pool: MemoryPool
}

export const makeByteBudget = (options: ByteBudgetOptions): ByteBudget => new ConnectionBudget(options.limit, options.allowance, options.pool)

/** A class, so that every connection's account is one small object (docs/resources.md). */
class ConnectionBudget implements ByteBudget {
  private heldBytes = 0
  /** Of `heldBytes`, the part taken from the pool (what lies above the allowance). */
  private fromPool = 0
  private closed = false

  constructor(private readonly limit: number, private readonly allowance: number, private readonly pool: MemoryPool) {}

  private settlePool(): void {
    const needed = Math.max(0, this.heldBytes - this.allowance)
    if (needed < this.fromPool) {
      this.pool.release(this.fromPool - needed)
      this.fromPool = needed
    }
  }

  held(): number {
    return this.heldBytes
  }

  charge(bytes: number): BudgetRefusal | undefined {
    if (this.closed || this.heldBytes + bytes > this.limit) return "ConnectionLimit"
    const needed = Math.max(0, this.heldBytes + bytes - this.allowance)
    if (needed > this.fromPool) {
      if (!this.pool.reserve(needed - this.fromPool)) return "PoolExhausted"
      this.fromPool = needed
    }
    this.heldBytes += bytes
    return undefined
  }

  refund(bytes: number): void {
    if (this.closed) return
    this.heldBytes = Math.max(0, this.heldBytes - bytes)
    this.settlePool()
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.heldBytes = 0
    this.settlePool()
  }
}
