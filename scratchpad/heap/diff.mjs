import fs from "node:fs"
const load = (f) => {
  const snap = JSON.parse(fs.readFileSync(f, "utf8"))
  const m = snap.snapshot.meta, nf = m.node_fields, nl = nf.length, types = m.node_types[0], strings = snap.strings, nodes = snap.nodes
  const iType = nf.indexOf("type"), iName = nf.indexOf("name"), iSize = nf.indexOf("self_size")
  const agg = new Map()
  for (let i = 0; i < nodes.length; i += nl) {
    const t = types[nodes[i + iType]]
    let name = strings[nodes[i + iName]]
    if (t.includes("string")) name = ""
    if (t === "code") name = ""
    const key = t + " " + name.slice(0, 70)
    const a = agg.get(key) ?? { n: 0, s: 0 }
    a.n++; a.s += nodes[i + iSize]
    agg.set(key, a)
  }
  return agg
}
const a = load(process.argv[2]), b = load(process.argv[3]), N = Number(process.argv[4])
const rows = []
let tot = 0
for (const [k, v] of b) { const o = a.get(k) ?? { n: 0, s: 0 }; rows.push([k, (v.s - o.s) / N, (v.n - o.n) / N]); tot += v.s - o.s }
console.log("per session total", (tot / N).toFixed(0))
for (const [k, s, n] of rows.sort((x, y) => y[1] - x[1]).slice(0, Number(process.argv[5] ?? 60))) console.log(s.toFixed(0).padStart(8), n.toFixed(2).padStart(8), k)
