/**
 * Scratch: retainer paths of closures created at one source position (script:line:col, as
 * closures.mjs prints it), e.g. to find who keeps a per-session closure alive.
 *   node --max-old-space-size=8000 scratchpad/heap/retainers.mjs SNAP script:line:col [paths] [depth]
 */
import fs from "node:fs"
const [, , file, where, pathsS, depthS] = process.argv
const snap = JSON.parse(fs.readFileSync(file, "utf8"))
const m = snap.snapshot.meta, nf = m.node_fields, nl = nf.length, types = m.node_types[0], S = snap.strings, nodes = snap.nodes
const ef = m.edge_fields, el = ef.length, etypes = m.edge_types[0], edges = snap.edges
const iType = nf.indexOf("type"), iName = nf.indexOf("name"), iEC = nf.indexOf("edge_count")
const eType = ef.indexOf("type"), eName = ef.indexOf("name_or_index"), eTo = ef.indexOf("to_node")
const N = nodes.length / nl
const firstEdge = new Uint32Array(N + 1)
for (let i = 0, e = 0; i < N; i++) { firstEdge[i] = e; e += nodes[i * nl + iEC] * el }
firstEdge[N] = edges.length
const rev = new Map()
for (let i = 0; i < N; i++) for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += el) {
  const t = etypes[edges[e + eType]]; if (t === "weak" || t === "shortcut") continue
  const to = edges[e + eTo] / nl
  if (!rev.has(to)) rev.set(to, [])
  rev.get(to).push([i, t === "element" || t === "hidden" ? `[${edges[e + eName]}]` : S[edges[e + eName]]])
}
const loc = new Map(); { const L = snap.locations, lf = m.location_fields.length; for (let i = 0; i < L.length; i += lf) loc.set(L[i] / nl, `${L[i + 1]}:${L[i + 2] + 1}:${L[i + 3]}`) }
const label = (i) => `${types[nodes[i * nl + iType]]}:${S[nodes[i * nl + iName]].slice(0, 40)}${loc.has(i) ? "@" + loc.get(i) : ""}`
// Shortest strong path from the root to every node (breadth first), to print where a node hangs.
const parent = new Int32Array(N).fill(-1), parentEdge = new Array(N)
{
  const queue = new Int32Array(N); let head = 0, tail = 0
  queue[tail++] = 0; parent[0] = 0
  while (head < tail) {
    const v = queue[head++]
    for (let e = firstEdge[v]; e < firstEdge[v + 1]; e += el) {
      const t = etypes[edges[e + eType]]; if (t === "weak" || t === "shortcut") continue
      const w = edges[e + eTo] / nl
      if (parent[w] !== -1) continue
      parent[w] = v; parentEdge[w] = t === "element" || t === "hidden" ? `[${edges[e + eName]}]` : S[edges[e + eName]]
      queue[tail++] = w
    }
  }
}
const targets = [...loc].filter(([, l]) => l === where).map(([n]) => n)
if (process.env.ROOTPATH) {
  for (const t of targets.slice(-Number(pathsS ?? 3))) {
    const path = []; let c = t
    while (c !== 0 && parent[c] >= 0 && path.length < 40) { path.push(`${label(c)} (.${parentEdge[c]})`); c = parent[c] }
    console.log(path.reverse().join("\n   > "))
  }
  process.exit(0)
}
console.log(targets.length, "closures at", where)
for (const t of targets.slice(-Number(pathsS ?? 3))) {
  let c = t; const path = [label(c)]; const seen = new Set([c])
  for (let d = 0; d < Number(depthS ?? 12); d++) {
    const r = (rev.get(c) ?? []).find(([from]) => !seen.has(from) && !(rev.get(from) ?? []).every(([f]) => seen.has(f)))
    if (r !== undefined) seen.add(r[0])
    if (r === undefined) break
    path.push(`.${r[1]} < ${label(r[0])}`); c = r[0]
  }
  console.log(path.join("\n   "))
}
