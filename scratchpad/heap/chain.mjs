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
const owner = new Int32Array(N).fill(-1), oe = new Array(N)
for (let i = 0; i < N; i++) for (let e = firstEdge[i]; e < firstEdge[i] + nodes[i*nl+iEC]*el; e += el) {
  const t = etypes[edges[e + eType]]; if (t === "weak" || t === "shortcut") continue
  const to = edges[e + eTo] / nl
  if (owner[to] === -1) { owner[to] = i; oe[to] = (t === "element" || t === "hidden") ? "[]" : S[edges[e + eName]] }
}
const fileOf = (node) => { const sh = child(node, "shared"); const sc = sh < 0 ? -1 : child(sh, "script_or_debug_info"); return sc < 0 ? "?" : S[nodes[sc * nl + iName]].replace(/.*\/(src|esm)\//, "") }
const loc = new Map(); { const L = snap.locations, lf = m.location_fields.length; for (let i = 0; i < L.length; i += lf) loc.set(L[i] / nl, (L[i + 2] + 1) + ":" + L[i + 3]) }
const label = (i) => { const t = types[nodes[i * nl + iType]]; const n = S[nodes[i * nl + iName]].slice(0, 30); if (t === "closure") return `fn ${n}@${fileOf(i)}:${loc.get(i)}`; return `${t === "object" ? "" : t + " "}${n}` }
const [,, , target, depthS, minS] = process.argv
const depth = Number(depthS ?? 4)
const agg = new Map()
for (let i = 0; i < N; i++) {
  const t = types[nodes[i * nl + iType]]
  const lab = t === "closure" ? "fn@" + fileOf(i) : t + ":" + S[nodes[i * nl + iName]]
  if (lab !== target) continue
  const path = []; let c = i
  for (let d = 0; d < depth && owner[c] >= 0; d++) { path.push("." + oe[c]); c = owner[c]; path.push(label(c)); if (label(c).includes("/src/") || /@(session|transport|channel|server|wire|crypto)\//.test(label(c))) break }
  const key = path.join(" < ")
  const a = agg.get(key) ?? { n: 0, s: 0 }; a.n++; a.s += nodes[i * nl + iSize]; agg.set(key, a)
}
const min = Number(minS ?? 400)
for (const [k, v] of [...agg].filter(([, v]) => v.n >= min).sort((a, b) => b[1].n - a[1].n).slice(0, 60)) console.log(String(v.n).padStart(6), k)
