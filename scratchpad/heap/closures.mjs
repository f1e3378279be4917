import fs from "node:fs"
const snap = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const m = snap.snapshot.meta, nf = m.node_fields, nl = nf.length, types = m.node_types[0], S = snap.strings, nodes = snap.nodes
const iType = nf.indexOf("type"), iName = nf.indexOf("name")
const loc = snap.locations, lf = m.location_fields.length
const agg = new Map(), scriptNames = new Map()
for (let i = 0; i < loc.length; i += lf) {
  const node = loc[i] / nl
  if (types[nodes[node * nl + iType]] !== "closure") continue
  const key = loc[i + 1] + ":" + (loc[i + 2] + 1) + ":" + loc[i + 3]
  const a = agg.get(key) ?? { n: 0, names: new Set() }
  a.n++; a.names.add(S[nodes[node * nl + iName]])
  agg.set(key, a)
}
const min = Number(process.argv[3] ?? 400)
for (const [k, v] of [...agg].filter(([, v]) => v.n >= min).sort((a, b) => b[1].n - a[1].n)) console.log(String(v.n).padStart(6), k, [...v.names].slice(0, 3).join(","))
