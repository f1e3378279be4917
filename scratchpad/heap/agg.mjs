import fs from "node:fs"
const snap = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const m = snap.snapshot.meta
const nf = m.node_fields, nl = nf.length
const types = m.node_types[0]
const strings = snap.strings
const nodes = snap.nodes
const iType = nf.indexOf("type"), iName = nf.indexOf("name"), iSize = nf.indexOf("self_size")
const agg = new Map()
let total = 0
for (let i = 0; i < nodes.length; i += nl) {
  const t = types[nodes[i + iType]]
  let name = strings[nodes[i + iName]]
  if (t === "string" || t === "concatenated string" || t === "sliced string") name = "(string)"
  if (t === "code") name = "(code)"
  const key = t + " " + name.slice(0, 60)
  const s = nodes[i + iSize]
  total += s
  const a = agg.get(key) ?? { n: 0, s: 0 }
  a.n++; a.s += s
  agg.set(key, a)
}
const N = Number(process.argv[3] ?? 1)
console.log("total", (total / 1024 / 1024).toFixed(1), "MB")
for (const [k, v] of [...agg].sort((a, b) => b[1].s - a[1].s).slice(0, Number(process.argv[4] ?? 60)))
  console.log((v.s / N).toFixed(0).padStart(8), (v.n / N).toFixed(2).padStart(8), k)
