// Summarise .cpuprofile files: self time by function (mapped through the bundle's source map).
import fs from "node:fs"
import path from "node:path"
import { SourceMapConsumer } from "source-map-js"
const [file, top = "25"] = process.argv.slice(2)
const prof = JSON.parse(fs.readFileSync(file, "utf8"))
const maps = new Map()
const mapper = (url) => {
  if (!url.endsWith(".cjs")) return undefined
  const p = url.replace("file://", "")
  if (!maps.has(p)) maps.set(p, fs.existsSync(p + ".map") ? new SourceMapConsumer(JSON.parse(fs.readFileSync(p + ".map", "utf8"))) : null)
  return maps.get(p)
}
const dt = new Map()
for (let i = 0; i < prof.samples.length; i++) dt.set(prof.samples[i], (dt.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0))
let total = 0
const self = new Map()
const byFile = new Map()
for (const n of prof.nodes) {
  const t = dt.get(n.id) ?? 0
  total += t
  const cf = n.callFrame
  let loc = `${path.basename(cf.url || "(native)")}:${cf.lineNumber + 1}`
  let src = cf.url || "(native)"
  const m = mapper(cf.url)
  if (m) {
    const o = m.originalPositionFor({ line: cf.lineNumber + 1, column: cf.columnNumber })
    if (o.source) { src = o.source.replace(/^.*?(node_modules\/|src\/|bench\/)/, "$1"); loc = `${src}:${o.line}` }
  }
  const key = `${cf.functionName || "(anonymous)"} ${loc}`
  self.set(key, (self.get(key) ?? 0) + t)
  const fkey = src.startsWith("node_modules/") ? src.split("/").slice(0, src.includes("@") ? 3 : 2).join("/") : src
  byFile.set(fkey, (byFile.get(fkey) ?? 0) + t)
}
const pct = (t) => ((100 * t) / total).toFixed(1).padStart(5) + "%"
console.log(`total ${(total / 1e3).toFixed(0)} ms`)
for (const [k, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) console.log(pct(t), k)
console.log("--- by file/package")
for (const [k, t] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(pct(t), k)
