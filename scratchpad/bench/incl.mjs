// Inclusive time per function (each sample counted once per distinct function on its stack), source-mapped.
import fs from "node:fs"
import { SourceMapConsumer } from "source-map-js"
const [file, top = "40", filter = ""] = process.argv.slice(2)
const prof = JSON.parse(fs.readFileSync(file, "utf8"))
const byId = new Map(prof.nodes.map((n) => [n.id, n]))
const parent = new Map()
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const smCache = new Map()
const name = (cf) => {
  let loc = `${cf.url.split("/").pop()}:${cf.lineNumber + 1}`
  if (cf.url.endsWith(".cjs")) {
    const p = cf.url.replace("file://", "")
    if (!smCache.has(p)) smCache.set(p, new SourceMapConsumer(JSON.parse(fs.readFileSync(p + ".map", "utf8"))))
    const o = smCache.get(p).originalPositionFor({ line: cf.lineNumber + 1, column: cf.columnNumber })
    if (o.source) loc = `${o.source.replace(/^.*?(node_modules\/|src\/|bench\/)/, "$1")}:${o.line}`
  }
  return `${cf.functionName || "(anon)"} ${loc}`
}
const labels = new Map(prof.nodes.map((n) => [n.id, name(n.callFrame)]))
const incl = new Map()
let total = 0
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0
  let id = prof.samples[i]
  if (labels.get(id)?.startsWith("(idle)")) continue
  total += dt
  const seen = new Set()
  while (id !== undefined) {
    const l = labels.get(id)
    if (!seen.has(l)) { seen.add(l); incl.set(l, (incl.get(l) ?? 0) + dt) }
    id = parent.get(id)
  }
}
console.log(`busy ${(total / 1e3).toFixed(0)} ms`)
for (const [k, t] of [...incl].filter(([k]) => k.includes(filter)).sort((a, b) => b[1] - a[1]).slice(0, Number(top))) console.log(((100 * t) / total).toFixed(1).padStart(5) + "%", k)
