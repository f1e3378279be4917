/**
 * The id layer of the request/response anchors (`tls-rpc`, `ws-tls`), written the way an
 * application would write it by hand: every request carries a u32 id, the server answers with the
 * same id, and the client resolves the caller waiting on that id from a Map of pending calls.
 *
 * Unlike the echo of `lenprefix.ts`, these are real calls: in the in-flight figure each of `depth`
 * callers awaits its own reply before it sends its next request, as cvg's `session.request` callers
 * do, so the anchor pays for ids, the Map and a promise per request, not just for counting echoes.
 *
 * On a byte stream (`tls-rpc`) a request is `u32 len ‖ u32 id ‖ payload`, `len` counting the id and
 * the payload; over WebSocket (`ws-tls`) the message is its own frame, so a request is `u32 id ‖
 * payload`. Both servers answer with the request's id and payload.
 */
import type * as Net from "node:net"
import { performance } from "node:perf_hooks"
import type { EchoConnection, InflightOptions, InflightResult, RoundTripOptions } from "./types.js"

/** For the figures a system is not measured in (`ECHO_ONLY`, `HANDSHAKE_ONLY` in types.ts). */
export const notMeasured = (what: string) => (): Promise<never> => Promise.reject(new Error(`${what} is not measured for this system`))

/** Larger frames are a bug in the peer, not a load to serve: the benchmark sends 64 bytes. */
const MAX_FRAME = 1 << 20

export const encodeCall = (id: number, payload: Uint8Array): Buffer => {
  const frame = Buffer.allocUnsafe(8 + payload.length)
  frame.writeUInt32BE(4 + payload.length, 0)
  frame.writeUInt32BE(id, 4)
  frame.set(payload, 8)
  return frame
}

/**
 * Splits a byte stream into `u32 len ‖ u32 id ‖ payload` frames. A frame split across reads is
 * joined with the next read (frames are small, so the copy is too); payloads are views into the read.
 */
export class CallReader {
  private rest: Buffer | undefined

  constructor(private readonly onFrame: (id: number, payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    const buffer = this.rest === undefined ? chunk : Buffer.concat([this.rest, chunk])
    let at = 0
    while (buffer.length - at >= 8) {
      const length = buffer.readUInt32BE(at)
      if (length < 4 || length > MAX_FRAME) throw new Error(`bad frame length ${length}`)
      if (buffer.length - at < 4 + length) break
      this.onFrame(buffer.readUInt32BE(at + 4), buffer.subarray(at + 8, at + 4 + length))
      at += 4 + length
    }
    this.rest = at === buffer.length ? undefined : buffer.subarray(at)
  }
}

/** Server side over a byte stream: every reply of one read goes out in one corked write. */
export const serveCalls = (socket: Net.Socket): void => {
  socket.setNoDelay(true)
  // Peers that hang up mid-call are expected when a measurement ends; nothing to report.
  socket.on("error", () => socket.destroy())
  const reader = new CallReader((id, payload) => socket.write(encodeCall(id, payload)))
  socket.on("data", (chunk: Buffer) => {
    socket.cork()
    try {
      reader.push(chunk)
    } catch {
      socket.destroy()
    } finally {
      socket.uncork()
    }
  })
  socket.on("end", () => socket.end())
}

/** How a client connection moves calls; the id bookkeeping is `callConnection`'s. */
export interface CallTransport {
  /** Sends one request; coalescing writes is the transport's business. */
  readonly send: (id: number, payload: Uint8Array) => void
  readonly close: () => Promise<void>
}

export interface CallHandlers {
  /** A reply arrived for `id`. */
  readonly reply: (id: number, payload: Buffer) => void
  /** The connection failed: every pending and later call fails with `error`. */
  readonly fail: (error: Error) => void
}

interface Waiter {
  readonly resolve: (payload: Buffer) => void
  readonly reject: (error: Error) => void
}

/** A client connection making calls by id over `transport`. */
export const callConnection = (describe: string, open: (handlers: CallHandlers) => CallTransport): EchoConnection => {
  const pending = new Map<number, Waiter>()
  let nextId = 0
  let failure: Error | undefined

  const transport = open({
    reply: (id, payload) => {
      const waiter = pending.get(id)
      if (waiter === undefined) return
      pending.delete(id)
      waiter.resolve(payload)
    },
    fail: (error) => {
      failure ??= error
      for (const waiter of pending.values()) waiter.reject(error)
      pending.clear()
    }
  })

  const call = (payload: Uint8Array): Promise<Buffer> =>
    failure !== undefined
      ? Promise.reject(failure)
      : new Promise<Buffer>((resolve, reject) => {
        const id = nextId
        nextId = (nextId + 1) >>> 0
        pending.set(id, { resolve, reject })
        transport.send(id, payload)
      })

  const roundTrips = async (options: RoundTripOptions): Promise<Array<number>> => {
    const payload = Buffer.alloc(options.payload, 0x61)
    const latencies: Array<number> = []
    const deadline = performance.now() + options.durationMs
    while (latencies.length < options.count) {
      const started = performance.now()
      if (started >= deadline) break
      await call(payload)
      latencies.push((performance.now() - started) * 1000)
    }
    return latencies
  }

  const inflight = async (options: InflightOptions): Promise<InflightResult> => {
    const payload = Buffer.alloc(options.payload, 0x61)
    const start = performance.now()
    const deadline = start + options.durationMs
    let completed = 0
    const caller = async () => {
      while (performance.now() < deadline) {
        await call(payload)
        completed++
      }
    }
    await Promise.all(Array.from({ length: options.depth }, caller))
    return { completed, seconds: (performance.now() - start) / 1000 }
  }

  return { describe, roundTrips, inflight, close: transport.close }
}

/**
 * Calls over a byte stream with `u32 len ‖ u32 id ‖ payload` frames. Requests sent in the same turn
 * of the event loop (the callers woken by one read) are corked and leave in one write.
 */
export const streamTransport = (socket: Net.Socket) => (handlers: CallHandlers): CallTransport => {
  socket.setNoDelay(true)
  const reader = new CallReader(handlers.reply)
  socket.on("data", (chunk: Buffer) => {
    try {
      reader.push(chunk)
    } catch (error) {
      handlers.fail(error instanceof Error ? error : new Error(String(error)))
      socket.destroy()
    }
  })
  socket.on("error", handlers.fail)
  socket.on("close", () => handlers.fail(new Error("connection closed")))
  let corked = false
  const uncork = () => {
    corked = false
    socket.uncork()
  }
  return {
    send: (id, payload) => {
      if (!corked) {
        corked = true
        socket.cork()
        process.nextTick(uncork)
      }
      socket.write(encodeCall(id, payload))
    },
    close: () =>
      new Promise<void>((resolve) => {
        socket.once("close", () => resolve())
        socket.end()
        // A peer that never answers our FIN must not keep the benchmark waiting.
        setTimeout(() => {
          socket.destroy()
          resolve()
        }, 2000).unref()
      })
  }
}
