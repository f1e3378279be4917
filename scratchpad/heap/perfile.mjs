import fs from "node:fs"
const snap = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const m = snap.snapshot.meta, nf = m.node_fields, nl = nf.length, types = m.node_types[0], S = snap.strings, nodes = snap.nodes
const ef = m.edge_fields, el = ef.length, etypes = m.edge_types[0], edges = snap.edges
const iType = nf.indexOf("type"), iName = nf.indexOf("name"), iEC = nf.indexOf("edge_count"), iSize = nf.indexOf("self_size")
const N = nodes.length / nl
const firstEdge = new Uint32Array(N + 1)
for (let i = 0, e = 0; i < N; i++) { firstEdge[i] = e; e += nodes[i * nl + iEC] * el }
const eType = ef.indexOf("type"), eName = ef.indexOf("name_or_index"), eTo = ef.indexOf("to_node")
const child = (i, nm) => { for (let e = firstEdge[i]; e < firstEdge[i] + nodes[i*nl+iEC]*el; e += el) { const t = etypes[edges[e + eType]]; if (t === "element" || t === "hidden") continue; if (S[edges[e + eName]] === nm) return edges[e + eTo] / nl } return -1 }
const loc = snap.locations, lf = m.location_fields.length
const agg = new Map(), ctxSeen = new Set()
for (let i = 0; i < loc.length; i += lf) {
  const node = loc[i] / nl
  if (types[nodes[node * nl + iType]] !== "closure") continue
  const sh = child(node, "shared"); const sc = sh < 0 ? -1 : child(sh, "script_or_debug_info")
  const file = sc < 0 ? "?" : S[nodes[sc * nl + iName]].replace("file:///work/main/", "")
  const a = agg.get(file) ?? { n: 0, s: 0, c: 0 }
  a.n++; a.s += nodes[node * nl + iSize]
  const ctx = child(node, "context")
  if (ctx >= 0 && !ctxSeen.has(ctx)) { ctxSeen.add(ctx); a.c += nodes[ctx * nl + iSize] }
  agg.set(file, a)
}
const D = Number(process.argv[3])
for (const [k, v] of [...agg].sort((a, b) => b[1].n - a[1].n).slice(0, 40)) console.log((v.n / D).toFixed(1).padStart(7), (v.s / D).toFixed(0).padStart(7), (v.c / D).toFixed(0).padStart(7), k)
