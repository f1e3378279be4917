/**
 * One cvg server on every core, with `node:cluster`: the primary process forks one worker per core
 * (or $WORKERS), and each worker runs the same `serve` on the same port. The primary accepts the TCP
 * connections and hands them to the workers in turn, so handshakes (P-521, the costly part) and
 * sessions spread over all cores.
 *
 * Each worker is a whole server with its own budgets: `maxConnections`, `memoryBudget` and the
 * handshake admission limits apply per worker, so the machine's totals are the per-worker values times
 * the number of workers. A worker that dies is replaced.
 *
 * Run: npx tsx examples/cluster.ts   (PORT, WORKERS, CVG_PASSWORD from the environment)
 * Stop: Ctrl-C or SIGTERM to the primary, which stops the workers (each closes its sessions).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import cluster from "node:cluster"
import { availableParallelism } from "node:os"
import { Packet, PacketType, serve } from "../src/index.js"

const port = Number(process.env["PORT"] ?? 5000)
const workers = Number(process.env["WORKERS"] ?? availableParallelism())
const password = process.env["CVG_PASSWORD"] ?? "correct horse battery staple"

if (cluster.isPrimary) {
  let stopping = false
  const fork = () => cluster.fork()
  for (let i = 0; i < workers; i++) fork()
  cluster.on("exit", (worker, code) => {
    if (stopping) return
    console.log(`[primary] worker ${worker.process.pid} exited (${code}); starting another`)
    fork()
  })
  const stop = () => {
    stopping = true
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill("SIGTERM")
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
  console.log(`[primary] ${process.pid}: ${workers} workers on port ${port}`)
} else {
  // Every request is answered with the worker's pid, so a client can see which worker it reached.
  const pid = new TextEncoder().encode(String(process.pid))
  NodeRuntime.runMain(
    serve(
      { port, password, onListen: (address) => Console.log(`[worker] ${process.pid} listening on ${address.port}`) },
      (session) => session.serve((packet) => Effect.succeed(new Packet({ id: packet.id, type: PacketType.RESPONSE, payload: pid })))
    )
  )
}
