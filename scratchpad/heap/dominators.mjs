/**
 * Scratch: retained sizes from a heap snapshot's dominator tree (Cooper–Harvey–Kennedy over the
 * strong edges, from the synthetic root).
 *   node --max-old-space-size=8000 scratchpad/heap/dominators.mjs SNAP N [min] [childrenOf]
 * Prints, for every kind of node (closures by script:line:col) seen at least `min` times, its count
 * per session (/N) and its average retained size: the kinds with a count near 1 per session and a
 * large retained size are what holds a session's memory. With `childrenOf` (a key as printed), the
 * kinds that node's dominator children are, with their retained sizes per session.
 */
import fs from "node:fs"
const [, , file, perS, minS, childrenOf] = process.argv
const per = Number(perS ?? 1), min = Number(minS ?? per)
const snap = JSON.parse(fs.readFileSync(file, "utf8"))
const m = snap.snapshot.meta, nf = m.node_fields, nl = nf.length, types = m.node_types[0], S = snap.strings, nodes = snap.nodes
const ef = m.edge_fields, el = ef.length, etypes = m.edge_types[0], edges = snap.edges
const iType = nf.indexOf("type"), iName = nf.indexOf("name"), iEC = nf.indexOf("edge_count"), iSize = nf.indexOf("self_size")
const eType = ef.indexOf("type"), eName = ef.indexOf("name_or_index"), eTo = ef.indexOf("to_node")
const N = nodes.length / nl
const firstEdge = new Uint32Array(N + 1)
for (let i = 0, e = 0; i < N; i++) { firstEdge[i] = e; e += nodes[i * nl + iEC] * el }
firstEdge[N] = edges.length
const strong = (e) => { const t = etypes[edges[e + eType]]; return t !== "weak" && t !== "shortcut" }
// Reverse post-order by iterative DFS from node 0.
const order = new Int32Array(N).fill(-1), rpo = new Int32Array(N)
let count = 0
{
  const stack = new Int32Array(N), cursor = new Uint32Array(N), seen = new Uint8Array(N)
  let sp = 0; stack[sp++] = 0; seen[0] = 1; cursor[0] = firstEdge[0]
  const post = []
  while (sp > 0) {
    const v = stack[sp - 1]
    let pushed = false
    while (cursor[v] < firstEdge[v + 1]) {
      const e = cursor[v]; cursor[v] += el
      if (!strong(e)) continue
      const w = edges[e + eTo] / nl
      if (!seen[w]) { seen[w] = 1; cursor[w] = firstEdge[w]; stack[sp++] = w; pushed = true; break }
    }
    if (!pushed) { sp--; post.push(v) }
  }
  for (let i = post.length - 1; i >= 0; i--) { order[post[i]] = count; rpo[count++] = post[i] }
}
// Predecessors (strong edges among reachable nodes), CSR.
const predCount = new Uint32Array(N + 1)
for (let v = 0; v < N; v++) if (order[v] >= 0) for (let e = firstEdge[v]; e < firstEdge[v + 1]; e += el) if (strong(e)) { const w = edges[e + eTo] / nl; if (order[w] >= 0) predCount[w + 1]++ }
for (let i = 0; i < N; i++) predCount[i + 1] += predCount[i]
const preds = new Int32Array(predCount[N]), fill = predCount.slice()
for (let v = 0; v < N; v++) if (order[v] >= 0) for (let e = firstEdge[v]; e < firstEdge[v + 1]; e += el) if (strong(e)) { const w = edges[e + eTo] / nl; if (order[w] >= 0) preds[fill[w]++] = v }
const idom = new Int32Array(N).fill(-1)
idom[0] = 0
const intersect = (a, b) => { while (a !== b) { while (order[a] > order[b]) a = idom[a]; while (order[b] > order[a]) b = idom[b] } return a }
for (let changed = true; changed;) {
  changed = false
  for (let k = 1; k < count; k++) {
    const v = rpo[k]
    let d = -1
    for (let p = predCount[v]; p < predCount[v + 1]; p++) { const u = preds[p]; if (idom[u] < 0) continue; d = d < 0 ? u : intersect(u, d) }
    if (d >= 0 && idom[v] !== d) { idom[v] = d; changed = true }
  }
}
const retained = new Float64Array(N)
for (let k = count - 1; k >= 0; k--) { const v = rpo[k]; retained[v] += nodes[v * nl + iSize]; if (v !== 0) retained[idom[v]] += retained[v] }
// Labels: closures by their source position, other nodes by type and name.
const loc = new Map(); { const L = snap.locations, lf = m.location_fields.length; for (let i = 0; i < L.length; i += lf) loc.set(L[i] / nl, `${L[i + 1]}:${L[i + 2] + 1}:${L[i + 3]}`) }
const label = (i) => {
  const t = types[nodes[i * nl + iType]]
  if (t === "closure") return `fn ${S[nodes[i * nl + iName]].slice(0, 30)}@${loc.get(i)}`
  if (t.includes("string") || t === "code" || t === "number") return t
  return `${t}:${S[nodes[i * nl + iName]].slice(0, 50)}`
}
const agg = new Map()
for (let k = 0; k < count; k++) {
  const v = rpo[k], key = label(v)
  const a = agg.get(key) ?? { n: 0, r: 0, s: 0 }; a.n++; a.r += retained[v]; a.s += nodes[v * nl + iSize]; agg.set(key, a)
}
if (childrenOf === undefined) {
  console.log("count/N  retained/N  avg-retained  self/N  kind")
  for (const [k, a] of [...agg].filter(([, a]) => a.n >= min).sort((x, y) => y[1].r - x[1].r).slice(0, 80)) {
    console.log((a.n / per).toFixed(2).padStart(8), (a.r / per).toFixed(0).padStart(10), (a.r / a.n).toFixed(0).padStart(12), (a.s / per).toFixed(0).padStart(7), k)
  }
} else {
  const kids = new Map()
  for (let k = 1; k < count; k++) {
    const v = rpo[k]
    if (label(idom[v]) !== childrenOf) continue
    const key = label(v)
    const a = kids.get(key) ?? { n: 0, r: 0 }; a.n++; a.r += retained[v]; kids.set(key, a)
  }
  for (const [k, a] of [...kids].sort((x, y) => y[1].r - x[1].r).slice(0, 60)) console.log((a.n / per).toFixed(2).padStart(8), (a.r / per).toFixed(0).padStart(10), k)
}
// TREE=key: the dominator subtree of one instance of `key`, to depth TREE_DEPTH.
if (process.env.TREE) {
  const kids = new Map()
  for (let k = 1; k < count; k++) { const v = rpo[k]; const d = idom[v]; if (!kids.has(d)) kids.set(d, []); kids.get(d).push(v) }
  // The instance with the median retained size (TREE_PICK=max: the largest), so that one server-wide
  // object does not stand in for the per-session ones.
  const all = []
  for (let k = 0; k < count; k++) { const v = rpo[k]; if (label(v) === process.env.TREE) all.push(v) }
  all.sort((a, b) => retained[a] - retained[b])
  const best = process.env.TREE_PICK === "max" ? all[all.length - 1] : all[all.length >> 1]
  const depth = Number(process.env.TREE_DEPTH ?? 4), minR = Number(process.env.TREE_MIN ?? 200)
  const edgeName = (from, to) => { for (let e = firstEdge[from]; e < firstEdge[from + 1]; e += el) if (edges[e + eTo] / nl === to) { const t = etypes[edges[e + eType]]; return t === "element" || t === "hidden" ? `[${edges[e + eName]}]` : S[edges[e + eName]] } return "~" }
  const walk = (v, d, indent) => {
    console.log(`${indent}${retained[v].toFixed(0).padStart(7)} ${nodes[v * nl + iSize].toString().padStart(5)} ${edgeName(idom[v], v)}: ${label(v)}`)
    if (d >= depth) return
    for (const c of (kids.get(v) ?? []).sort((a, b) => retained[b] - retained[a])) if (retained[c] >= minR) walk(c, d + 1, indent + "  ")
  }
  walk(best, 0, "")
}
