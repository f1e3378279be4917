/**
 * Misbehaving TCP clients, on raw `node:net` sockets: they send what they like and leave as they like.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
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

/**
 * A man in the middle over loopback TCP: listens on a free port and relays each connection to
 * `targetPort`, passing every chunk through `toServer` / `toClient` first (the same transforms as
 * `MemorySocket`'s, e.g. `frameRelay`; `undefined` drops the chunk). Returns the port to connect to.
 */
export const tcpRelay = (
  targetPort: number,
  transforms: {
    readonly toServer?: ((chunk: Uint8Array) => Uint8Array | undefined) | undefined
    readonly toClient?: ((chunk: Uint8Array) => Uint8Array | undefined) | undefined
  }
): Effect.Effect<number, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Net.Server; readonly sockets: Set<Net.Socket>; readonly port: number }, Error>((resume) => {
      const sockets = new Set<Net.Socket>()
      const pipe = (from: Net.Socket, to: Net.Socket, transform: ((chunk: Uint8Array) => Uint8Array | undefined) | undefined) => {
        from.on("data", (chunk: Buffer) => {
          const out = transform === undefined ? chunk : transform(new Uint8Array(chunk))
          if (out !== undefined && out.length > 0) to.write(out)
        })
        from.on("end", () => to.end())
        from.on("error", () => to.destroy())
        from.on("close", () => to.destroy())
      }
      const server = Net.createServer((client) => {
        const upstream = Net.connect({ host: "127.0.0.1", port: targetPort })
        sockets.add(client).add(upstream)
        client.on("close", () => sockets.delete(client))
        upstream.on("close", () => sockets.delete(upstream))
        pipe(client, upstream, transforms.toServer)
        pipe(upstream, client, transforms.toClient)
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed({ server, sockets, port: typeof address === "object" && address !== null ? address.port : 0 }))
      })
      server.on("error", (error) => resume(Effect.fail(error)))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ port }) => port))
