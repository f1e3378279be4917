/**
 * A stress worker process: the server under attack, the legitimate client or the attacker, on
 * command from main.ts over IPC (`bench/child.ts`). Each attack gets fresh processes.
 */
import * as V8 from "node:v8"
import { runChild } from "../bench/child.js"
import { startAttack, type RunningAttack } from "./attacks.js"
import { startLegit } from "./legit.js"
import type { Answers, Command, LegitSamples } from "./protocol.js"
import { startServer, stopServers } from "./server.js"
import { now } from "./legit.js"

const LIFETIME_MS = Number(process.env["STRESS_WORKER_LIFETIME_MS"] ?? 15 * 60 * 1000)

let legit: { readonly pause: (paused: boolean) => void; readonly stop: () => Promise<LegitSamples> } | undefined
let attack: RunningAttack | undefined

const shutdown = (code: number) => {
  void Promise.race([stopServers(), new Promise((resolve) => setTimeout(resolve, 2000))]).finally(() => process.exit(code))
}

const run = async (command: Command): Promise<Answers[keyof Answers]> => {
  switch (command.op) {
    case "startServer":
      return startServer(command.password)
    case "legitStart": {
      const started = await startLegit(command.options)
      legit = started
      return "error" in started && started.error !== undefined ? { error: started.error } : {}
    }
    case "legitPause": {
      legit?.pause(command.paused)
      return null
    }
    case "legitStop": {
      if (legit === undefined) throw new Error("legitimate client not started")
      return legit.stop()
    }
    case "attackStart": {
      attack = startAttack(command.options)
      const setup = await attack.engaged
      return { engagedAt: now(), setup }
    }
    case "attackStatus":
      return { spent: attack?.spent() ?? false }
    case "attackStop": {
      if (attack === undefined) throw new Error("attack not started")
      return attack.stop()
    }
    case "memory": {
      // The young generation first: a collection would change it.
      const youngCommitted = V8.getHeapSpaceStatistics()
        .filter((space) => space.space_name === "new_space" || space.space_name === "new_large_object_space")
        .reduce((sum, space) => sum + space.space_size, 0)
      const collect = (globalThis as { gc?: () => void }).gc
      if (command.collect) {
        if (collect === undefined) throw new Error("the server runs without --expose-gc")
        collect()
      }
      const usage = process.memoryUsage()
      return { youngCommitted, heapAndExternal: usage.heapUsed + usage.external }
    }
    case "exit":
      setImmediate(() => shutdown(0))
      return null
  }
}

runChild<Command>({ entry: "stress/worker.ts", run, shutdown, lifetimeMs: LIFETIME_MS })
