import fs from "node:fs"
const snap = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const m = snap.snapshot.meta, nf = m.node_fields, nl = nf.length, types = m.node_types[0], S = snap.strings, nodes = snap.nodes
const ef = m.edge_fields, el = ef.length, etypes = m.edge_types[0], edges = snap.edges
const iType = nf.indexOf("type"), iName = nf.indexOf("name"), iSize = nf.indexOf("self_size"), iEC = nf.indexOf("edge_count"), iId = nf.indexOf("id")
const N = nodes.length / nl
const firstEdge = new Uint32Array(N + 1)
for (let i = 0, e = 0; i < N; i++) { firstEdge[i] = e; e += nodes[i * nl + iEC] * el } 
firstEdge[N] = edges.length
const owner = new Int32Array(N).fill(-1), ownerEdge = new Array(N)
const eType = ef.indexOf("type"), eName = ef.indexOf("name_or_index"), eTo = ef.indexOf("to_node")
for (let i = 0; i < N; i++) for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += el) {
  const to = edges[e + eTo] / nl
  const t = etypes[edges[e + eType]]
  if (t === "weak") continue
  if (owner[to] === -1) { owner[to] = i; ownerEdge[to] = (t === "element" || t === "hidden") ? "#" + edges[e + eName] : S[edges[e + eName]] }
}
const name = (i) => types[nodes[i * nl + iType]] + ":" + S[nodes[i * nl + iName]].slice(0, 50)
const target = process.argv[3]
const agg = new Map()
for (let i = 0; i < N; i++) {
  if (name(i) !== target) continue
  const o = owner[i]
  let key = o < 0 ? "none" : name(o) + " ." + ownerEdge[i]
  if (process.argv[4] === "props" && o >= 0) {
    const ps = []
    for (let e = firstEdge[o]; e < firstEdge[o + 1]; e += el) if (etypes[edges[e + eType]] === "property") ps.push(S[edges[e + eName]])
    key += " {" + ps.slice(0, 12).join(",") + "}"
  }
  const a = agg.get(key) ?? { n: 0, s: 0 }
  a.n++; a.s += nodes[i * nl + iSize]
  agg.set(key, a)
}
for (const [k, v] of [...agg].sort((a, b) => b[1].s - a[1].s).slice(0, 25)) console.log(String(v.s).padStart(10), String(v.n).padStart(7), k)
