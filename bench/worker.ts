/**
 * A benchmark worker process: hosts servers and/or runs client scenarios on command from main.ts
 * over IPC. The same program plays every role so that the one-process case is simply a worker
 * that was asked to start a server and then to connect to it.
 *
 * It never outlives the orchestrator: it exits when the IPC channel closes and after a hard
 * lifetime cap, whichever comes first.
 */
import { measureP521Limit } from "./p521.js"
import { runChild } from "./child.js"
import type { Answers, Command, Usage } from "./protocol.js"
import { summarizeLatencies } from "./stats.js"
import { cvg, cvgPlain } from "./systems/cvg.js"
import { raw } from "./systems/raw.js"
import { tls } from "./systems/tls.js"
import { tlsRpc } from "./systems/tls-rpc.js"
import { cvgCluster } from "./systems/cluster.js"
import { cvgId, cvgIdPake, cvgPake } from "./systems/identity.js"
import { cvgTyped, rpcCvg } from "./systems/typed.js"
import type { BenchServer, BenchSystem, EchoConnection, SystemName } from "./systems/types.js"
import { wsTls } from "./systems/ws-tls.js"

const LIFETIME_MS = Number(process.env["BENCH_WORKER_LIFETIME_MS"] ?? 60 * 60 * 1000)

const systems: Record<SystemName, BenchSystem> = {
  raw,
  tls,
  "tls-rpc": tlsRpc,
  "ws-tls": wsTls,
  cvg,
  "cvg-plain": cvgPlain,
  "cvg-typed": cvgTyped,
  "rpc-cvg": rpcCvg,
  "cvg-cluster": cvgCluster,
  "cvg-id": cvgId,
  "cvg-pake": cvgPake,
  "cvg-id-pake": cvgIdPake
}
const servers = new Map<SystemName, BenchServer>()
const connections = new Map<number, EchoConnection>()
let nextHandle = 1

const startupRss = process.memoryUsage.rss()
let sampledPeakRss = startupRss
// Sampling complements getrusage's maxRSS; only memory workers pay for it (it shows up in profiles).
if ((process.argv[2] ?? "").startsWith("mem-")) {
  setInterval(() => {
    sampledPeakRss = Math.max(sampledPeakRss, process.memoryUsage.rss())
  }, 20).unref()
}

const usage = (): Usage => ({
  maxRss: process.resourceUsage().maxRSS * 1024,
  sampledPeakRss: Math.max(sampledPeakRss, process.memoryUsage.rss()),
  rss: process.memoryUsage.rss(),
  startupRss
})

const connection = (handle: number): EchoConnection => {
  const conn = connections.get(handle)
  if (conn === undefined) throw new Error(`no connection ${handle}`)
  return conn
}

const shutdown = async (code: number) => {
  for (const conn of connections.values()) await conn.close().catch(() => undefined)
  for (const server of servers.values()) await server.close().catch(() => undefined)
  // process.exit (not a signal) so that --cpu-prof gets to write its profile.
  process.exit(code)
}

const run = async (command: Command): Promise<Answers[keyof Answers]> => {
  switch (command.op) {
    case "startServer": {
      const server = await systems[command.system].startServer()
      servers.set(command.system, server)
      return { port: server.port }
    }
    case "stopServer": {
      await servers.get(command.system)?.close()
      servers.delete(command.system)
      return null
    }
    case "openEcho": {
      const conn = await systems[command.system].openEcho(command.target)
      const handle = nextHandle++
      connections.set(handle, conn)
      return { handle, describe: conn.describe }
    }
    case "roundTrips":
      return summarizeLatencies(await connection(command.handle).roundTrips(command.options))
    case "inflight":
      return connection(command.handle).inflight(command.options)
    case "closeEcho": {
      const conn = connection(command.handle)
      connections.delete(command.handle)
      await conn.close()
      return null
    }
    case "bulk":
      return systems[command.system].bulk(command.target, command.options)
    case "handshakes":
      return systems[command.system].handshakes(command.target, command.options)
    case "p521Limit":
      return measureP521Limit(command.options)
    case "usage":
      return usage()
    case "cpu": {
      const { user, system } = process.cpuUsage()
      return { userUs: user, systemUs: system }
    }
    case "exit":
      setImmediate(() => void shutdown(0))
      return null
  }
}

runChild<Command>({ entry: "bench/worker.ts", run, shutdown: (code) => void shutdown(code), lifetimeMs: LIFETIME_MS })
