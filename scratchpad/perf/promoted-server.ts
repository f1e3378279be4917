/**
 * Scratch: a server that samples its allocations from the start (node:inspector, HeapProfiler
 * sampling), keeping objects that a full collection has freed (`includeObjectsCollectedByMajorGC`:
 * they were promoted, then died) and optionally those minor GCs freed. On SIGUSR2 it prints the
 * sampled bytes by allocating function. Driven by promoted-clients.ts.
 */
import { Effect } from "effect"
import * as Inspector from "node:inspector"
import { serve } from "../../src/index.js"

const major = process.env.MAJOR !== "0"
const session = new Inspector.Session()
session.connect()
const post = <T>(method: string, params?: object) =>
  new Promise<T>((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res as T))))

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number }
  selfSize: number
  children: Array<Node>
}

const report = async () => {
  const { profile } = await post<{ profile: { head: Node } }>("HeapProfiler.getSamplingProfile")
  const bySite = new Map<string, number>()
  const walk = (node: Node, stack: Array<string>) => {
    const f = node.callFrame
    const name = `${f.functionName || "(anon)"} ${f.url.split("/").slice(-2).join("/")}:${f.lineNumber}`
    const here = [...stack, name]
    if (node.selfSize > 0) {
      // The allocating function plus its two callers.
      const key = here.slice(-3).reverse().join(" < ")
      bySite.set(key, (bySite.get(key) ?? 0) + node.selfSize)
    }
    for (const child of node.children) walk(child, here)
  }
  walk(profile.head, [])
  const total = [...bySite.values()].reduce((a, b) => a + b, 0)
  const top = [...bySite.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40)
  process.stdout.write(JSON.stringify({ total, top }) + "\n")
}

await post("HeapProfiler.enable")
await post("HeapProfiler.startSampling", { samplingInterval: 1024, includeObjectsCollectedByMajorGC: major, includeObjectsCollectedByMinorGC: false })
process.on("SIGUSR2", () => void report())
Effect.runFork(serve({ port: 0, ...(process.env.NOPW ? {} : { password: "pw" }), onListen: (a) => Effect.sync(() => console.log(JSON.stringify({ port: a.port }))) }, (s) => s.serve((p) => Effect.succeed(p))))
