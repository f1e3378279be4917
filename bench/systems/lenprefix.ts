/**
 * The baselines' wire pattern, shared by raw TCP and TLS so that both do exactly the same work:
 * a one-byte mode, then either length-prefixed echo frames (`u32 length ‖ payload`) or a bulk
 * sink acknowledged with one byte once every announced byte has arrived.
 *
 * The echo server answers all complete frames of a read chunk with one write, and the clients
 * refill the pipeline with one write per read chunk: that is what a competent hand-written
 * protocol would do, so the library is compared against a fair opponent rather than a naive one.
 */
import type * as Net from "node:net"
import { performance } from "node:perf_hooks"
import type { BulkOptions, BulkResult, EchoConnection, InflightOptions, InflightResult, RoundTripOptions } from "./types.js"

export const MODE_ECHO = 0x45
export const MODE_BULK = 0x42
const ACK = 0x41

/** Counts complete frames across chunk boundaries without copying bodies. */
export class FrameCounter {
  private readonly header = Buffer.alloc(4)
  private headerFill = 0
  private bodyLeft = -1
  /** Offset just past the last complete frame of the chunk last pushed (0 if none completed in it). */
  lastBoundary = 0

  push(chunk: Uint8Array, from = 0): number {
    let frames = 0
    let i = from
    this.lastBoundary = 0
    while (i < chunk.length) {
      if (this.bodyLeft < 0) {
        const take = Math.min(4 - this.headerFill, chunk.length - i)
        this.header.set(chunk.subarray(i, i + take), this.headerFill)
        this.headerFill += take
        i += take
        if (this.headerFill === 4) {
          this.headerFill = 0
          this.bodyLeft = this.header.readUInt32BE(0)
          if (this.bodyLeft === 0) {
            frames++
            this.bodyLeft = -1
            this.lastBoundary = i
          }
        }
      } else {
        const take = Math.min(this.bodyLeft, chunk.length - i)
        i += take
        this.bodyLeft -= take
        if (this.bodyLeft === 0) {
          frames++
          this.bodyLeft = -1
          this.lastBoundary = i
        }
      }
    }
    return frames
  }
}

/** Server side of one accepted connection (already TLS-established for TLS). */
export const serveConnection = (socket: Net.Socket): void => {
  socket.setNoDelay(true)
  // Peers that hang up mid-handshake or mid-stream are expected under load; nothing to report.
  socket.on("error", () => socket.destroy())
  let mode = -1
  // Bulk header: mode byte then a u64 big-endian byte count.
  const header = Buffer.alloc(9)
  let headerFill = 0
  let expected = 0
  let received = 0
  const counter = new FrameCounter()
  let pending: Array<Buffer> = []

  const onEcho = (chunk: Buffer, from: number) => {
    const frames = counter.push(chunk, from)
    if (frames === 0) {
      pending.push(from === 0 ? chunk : chunk.subarray(from))
      return
    }
    const head = chunk.subarray(from, counter.lastBoundary)
    socket.write(pending.length === 0 ? head : Buffer.concat([...pending, head]))
    pending = counter.lastBoundary < chunk.length ? [chunk.subarray(counter.lastBoundary)] : []
  }

  socket.on("data", (chunk: Buffer) => {
    let from = 0
    if (mode < 0) {
      mode = chunk[0]!
      from = 1
      if (mode === MODE_BULK) header[headerFill++] = mode
    }
    if (mode === MODE_ECHO) return onEcho(chunk, from)
    if (mode !== MODE_BULK) return void socket.destroy()
    if (headerFill < 9) {
      const take = Math.min(9 - headerFill, chunk.length - from)
      chunk.copy(header, headerFill, from, from + take)
      headerFill += take
      from += take
      if (headerFill < 9) return
      expected = header.readUInt32BE(1) * 2 ** 32 + header.readUInt32BE(5)
    }
    received += chunk.length - from
    if (received >= expected) socket.write(Uint8Array.of(ACK))
  })
  socket.on("end", () => socket.end())
}

/** Echo client over an established socket. */
export const echoConnection = (socket: Net.Socket, describe: string): EchoConnection => {
  socket.setNoDelay(true)
  const counter = new FrameCounter()
  let onFrames: ((frames: number) => void) | undefined
  let onFailure: ((error: Error) => void) | undefined
  socket.on("data", (chunk: Buffer) => {
    const frames = counter.push(chunk)
    if (frames > 0) onFrames?.(frames)
  })
  socket.on("error", (error) => onFailure?.(error))
  socket.on("close", () => onFailure?.(new Error("connection closed")))
  socket.write(Uint8Array.of(MODE_ECHO))

  const frameOf = (payload: number) => {
    const frame = Buffer.alloc(4 + payload, 0x61)
    frame.writeUInt32BE(payload, 0)
    return frame
  }

  const roundTrips = (options: RoundTripOptions) =>
    new Promise<Array<number>>((resolve, reject) => {
      const frame = frameOf(options.payload)
      const latencies: Array<number> = []
      const deadline = performance.now() + options.durationMs
      let started = 0
      const sendOne = () => {
        started = performance.now()
        socket.write(frame)
      }
      onFailure = reject
      onFrames = () => {
        const now = performance.now()
        latencies.push((now - started) * 1000)
        if (latencies.length >= options.count || now >= deadline) {
          onFrames = undefined
          onFailure = undefined
          resolve(latencies)
        } else {
          sendOne()
        }
      }
      sendOne()
    })

  const inflight = (options: InflightOptions) =>
    new Promise<InflightResult>((resolve, reject) => {
      const frame = frameOf(options.payload)
      // One preallocated run of frames, so a refill of n requests is one subarray and one write.
      const batch = Buffer.concat(Array.from({ length: options.depth }, () => frame))
      const start = performance.now()
      const deadline = start + options.durationMs
      let outstanding = options.depth
      let completed = 0
      let stopping = false
      onFailure = reject
      onFrames = (frames) => {
        completed += frames
        outstanding -= frames
        if (!stopping && performance.now() >= deadline) stopping = true
        if (!stopping) {
          socket.write(batch.subarray(0, frames * frame.length))
          outstanding += frames
        } else if (outstanding === 0) {
          onFrames = undefined
          onFailure = undefined
          resolve({ completed, seconds: (performance.now() - start) / 1000 })
        }
      }
      socket.write(batch)
    })

  const close = () =>
    new Promise<void>((resolve) => {
      onFailure = undefined
      socket.once("close", () => resolve())
      socket.end()
      // A peer that never answers our FIN must not keep the benchmark waiting.
      setTimeout(() => {
        socket.destroy()
        resolve()
      }, 2000).unref()
    })

  return { roundTrips, inflight, close, describe }
}

/** Sends `options.bytes` one way over an established socket and waits for the server's ack. */
export const bulkOverSocket = (socket: Net.Socket, options: BulkOptions) =>
  new Promise<BulkResult>((resolve, reject) => {
    socket.setNoDelay(true)
    const piece = Buffer.alloc(options.chunk, 0x62)
    const start = performance.now()
    const header = Buffer.alloc(9)
    header[0] = MODE_BULK
    header.writeUInt32BE(Math.floor(options.bytes / 2 ** 32), 1)
    header.writeUInt32BE(options.bytes >>> 0, 5)
    socket.on("error", reject)
    socket.on("close", () => reject(new Error("connection closed before the acknowledgement")))
    socket.on("data", () => {
      const seconds = (performance.now() - start) / 1000
      socket.destroy()
      resolve({ bytes: options.bytes, seconds })
    })
    socket.write(header)
    let sent = 0
    const pump = () => {
      while (sent < options.bytes) {
        const n = Math.min(piece.length, options.bytes - sent)
        sent += n
        if (!socket.write(n === piece.length ? piece : piece.subarray(0, n))) {
          socket.once("drain", pump)
          return
        }
      }
    }
    pump()
  })

/** Runs `attempt` with `concurrency` loops until the deadline; counts outcomes. */
export const handshakeLoop = async (
  concurrency: number,
  durationMs: number,
  attempt: () => Promise<void>
): Promise<{ completed: number; failed: number; seconds: number; firstError?: string }> => {
  const start = performance.now()
  const deadline = start + durationMs
  let completed = 0
  let failed = 0
  let firstError: string | undefined
  const loop = async () => {
    while (performance.now() < deadline) {
      try {
        await attempt()
        completed++
      } catch (error) {
        failed++
        firstError ??= error instanceof Error ? error.message : String(error)
        // A refused or reset connection fails at once; back off so failures cannot spin the loop hot.
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  const seconds = (performance.now() - start) / 1000
  return firstError === undefined ? { completed, failed, seconds } : { completed, failed, seconds, firstError }
}

/** Listens on an ephemeral loopback port; `close` also destroys open connections so it cannot hang. */
export const listenTracked = (server: Net.Server, connectionEvent: "connection" | "secureConnection") =>
  new Promise<{ port: number; close: () => Promise<void> }>((resolve, reject) => {
    const open = new Set<Net.Socket>()
    server.on(connectionEvent, (socket: Net.Socket) => {
      open.add(socket)
      socket.once("close", () => open.delete(socket))
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resolve({
        port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            for (const socket of open) socket.destroy()
          })
      })
    })
  })
