/**
 * examples/cluster.ts: a server on two worker processes behind one port, reached through the public
 * `connect` over real TCP. Connections spread over both workers, and the primary stops them all.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { once } from "node:events"
import { freePort } from "./support/tcp.js"
import { join } from "node:path"
import { connect, Packet, PacketType } from "../src/index.js"
import { bounded, str } from "./support/sessions.js"

const root = join(import.meta.dirname, "..")

describe("examples/cluster.ts", () => {
  it.live("two workers share one port: connections reach both, and SIGTERM to the primary stops them", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const primary = spawn(process.execPath, ["--import", "tsx", join(root, "examples", "cluster.ts")], {
        cwd: root,
        env: { ...process.env, PORT: String(port), WORKERS: "2", CVG_PASSWORD: "pw" },
        stdio: ["ignore", "pipe", "inherit"]
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => primary.kill("SIGKILL")))
      let output = ""
      primary.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString()
      })
      // Both workers listening.
      while ((output.match(/listening/g) ?? []).length < 2) yield* Effect.sleep("50 millis")
      const pids = new Set<string>()
      for (let i = 0; i < 12 && pids.size < 2; i++) {
        const session = yield* connect({ port, password: "pw" })
        const answer = yield* session.request(new Packet({ id: 1, type: PacketType.COMMAND, payload: new Uint8Array(0) }))
        pids.add(str(answer.payload))
        yield* session.close
      }
      expect(pids.size).toBe(2)
      primary.kill("SIGTERM")
      const [code] = yield* Effect.promise(() => once(primary, "exit"))
      expect(code).toBe(0)
    }).pipe(Effect.scoped, bounded("the cluster", "60 seconds")), 90_000)
})
