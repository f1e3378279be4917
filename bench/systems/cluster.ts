/**
 * `cvg-cluster`: the server of `examples/cluster.ts`, two worker processes behind one port
 * (node:cluster), for the handshake figure only: handshakes/s with 2 server processes against `cvg`'s 1.
 * The cluster runs as a child of the bench's server process (started through tsx, as the example is
 * TypeScript), so that process's CPU figure does not include it; the rate is what is compared.
 */
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"
import { join } from "node:path"
import { connect } from "../../src/index.js"
import { notMeasured } from "./idlayer.js"
import { handshakeLoop } from "./lenprefix.js"
import type { BenchServer, BenchSystem } from "./types.js"

const PASSWORD = "bench"
const WORKERS = 2

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** Starts the cluster and resolves once every worker has said it listens. */
const startCluster = async (): Promise<BenchServer> => {
  const port = await freePort()
  const root = process.cwd()
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", join(root, "examples", "cluster.ts")], {
    cwd: root,
    env: { ...process.env, PORT: String(port), WORKERS: String(WORKERS), CVG_PASSWORD: PASSWORD },
    stdio: ["ignore", "pipe", "inherit"]
  })
  await new Promise<void>((resolve, reject) => {
    let output = ""
    const timer = setTimeout(() => reject(new Error(`the cluster did not start: ${output}`)), 60_000)
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      if ((output.match(/listening/g) ?? []).length >= WORKERS) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once("exit", (code) => reject(new Error(`the cluster exited with ${code}: ${output}`)))
  })
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve())
        child.kill("SIGTERM")
        setTimeout(() => child.kill("SIGKILL"), 5_000).unref()
      })
  }
}

export const cvgCluster: BenchSystem = {
  name: "cvg-cluster",
  startServer: startCluster,
  openEcho: notMeasured("the echo"),
  bulk: notMeasured("bulk"),
  handshakes: (target, options) =>
    handshakeLoop(options.concurrency, options.durationMs, () =>
      Effect.runPromise(
        Effect.flatMap(
          connect({ host: target.host, port: target.port, encryption: "required", password: PASSWORD }),
          (session) => session.close
        )
      ))
}
