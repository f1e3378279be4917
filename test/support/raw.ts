/**
 * Misbehaving TCP clients, on raw `node:net` sockets: they send what they like and leave as they like.
 */
import { Effect } from "effect"
import * as Net from "node:net"

export interface RawOutcome {
  /** The client's local port: what the server logs as the peer's port. */
  readonly localPort: number
  /** Bytes the server sent back before the connection ended. */
  readonly received: number
}

/**
 * Connects, writes `bytes`, then either destroys the socket at once (`"vanish"`) or waits for the
 * server to end the connection (`"wait"`).
 */
export const rawClient = (port: number, bytes: Uint8Array, then: "vanish" | "wait"): Effect.Effect<RawOutcome, Error> =>
  Effect.async<RawOutcome, Error>((resume) => {
    let received = 0
    let localPort = 0
    let settled = false
    const settle = (outcome: Effect.Effect<RawOutcome, Error>) => {
      if (settled) return
      settled = true
      resume(outcome)
    }
    const socket = Net.connect({ host: "127.0.0.1", port }, () => {
      localPort = socket.localPort ?? 0
      socket.write(bytes, () => {
        if (then === "vanish") {
          socket.destroy()
          settle(Effect.succeed({ localPort, received }))
        }
      })
    })
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length
    })
    // A reset from the server is as good an ending as a FIN for these clients.
    socket.on("error", () => {})
    socket.on("close", () => settle(Effect.succeed({ localPort, received })))
    return Effect.sync(() => {
      socket.destroy()
    })
  })

/** Node's handles of a kind (`TCPSocketWrap`, `TCPServerWrap`, `Timeout`), to check nothing is left open. */
export const activeResources = (kind: string): number =>
  process.getActiveResourcesInfo().filter((name) => name === kind).length
