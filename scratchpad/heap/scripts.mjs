import fs from "node:fs"
const snap = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const m = snap.snapshot.meta, nf = m.node_fields, nl = nf.length, types = m.node_types[0], S = snap.strings, nodes = snap.nodes
const ef = m.edge_fields, el = ef.length, etypes = m.edge_types[0], edges = snap.edges
const iType = nf.indexOf("type"), iName = nf.indexOf("name"), iEC = nf.indexOf("edge_count")
const N = nodes.length / nl
const firstEdge = new Uint32Array(N + 1)
for (let i = 0, e = 0; i < N; i++) { firstEdge[i] = e; e += nodes[i * nl + iEC] * el }
firstEdge[N] = edges.length
const eType = ef.indexOf("type"), eName = ef.indexOf("name_or_index"), eTo = ef.indexOf("to_node")
const child = (i, nm) => { for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += el) { const t = etypes[edges[e + eType]]; const n = (t === "element" || t === "hidden") ? null : S[edges[e + eName]]; if (n === nm) return edges[e + eTo] / nl } return -1 }
const loc = snap.locations, lf = m.location_fields.length
const want = new Set(process.argv.slice(3).map(Number)), seen = new Map()
for (let i = 0; i < loc.length; i += lf) {
  const sid = loc[i + 1]; if (!want.has(sid) || seen.has(sid)) continue
  const node = loc[i] / nl
  const sh = child(node, "shared"); if (sh < 0) continue
  const sc = child(sh, "script_or_debug_info"); if (sc < 0) continue
  const nmNode = child(sc, "name")
  seen.set(sid, S[nodes[sc * nl + iName]])
}
for (const [k, v] of seen) console.log(k, v)
