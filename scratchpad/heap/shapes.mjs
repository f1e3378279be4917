/**
 * Scratch: objects by class name and property names (their first few), counted per session, to tell
 * which object literals and closure contexts a session keeps.
 *   node --max-old-space-size=8000 scratchpad/heap/shapes.mjs BASE_SNAP SNAP N [min] [type]
 * `type` is "object" (default) or "context" (closure contexts: their variables).
 */
import fs from "node:fs"
const [, , baseFile, file, perS, minS, kind] = process.argv
const count = (f) => {
  const snap = JSON.parse(fs.readFileSync(f, "utf8"))
  const m = snap.snapshot.meta, nf = m.node_fields, nl = nf.length, types = m.node_types[0], S = snap.strings, nodes = snap.nodes
  const ef = m.edge_fields, el = ef.length, etypes = m.edge_types[0], edges = snap.edges
  const iType = nf.indexOf("type"), iName = nf.indexOf("name"), iEC = nf.indexOf("edge_count"), iSize = nf.indexOf("self_size")
  const eType = ef.indexOf("type"), eName = ef.indexOf("name_or_index")
  const agg = new Map()
  for (let i = 0, e = 0; i < nodes.length; i += nl) {
    const ec = nodes[i + iEC]
    const t = types[nodes[i + iType]], name = S[nodes[i + iName]]
    const want = kind === "context" ? name === "system / Context" : t === "object" && !name.startsWith("system /")
    if (want) {
      const props = []
      for (let k = e; k < e + ec * el; k += el) {
        const et = etypes[edges[k + eType]]
        if (et === "property" || et === "context") props.push(S[edges[k + eName]])
      }
      const key = `${name} {${props.filter((p) => p !== "__proto__" && p !== "map").slice(0, 8).join(",")}}`
      const a = agg.get(key) ?? { n: 0, s: 0 }; a.n++; a.s += nodes[i + iSize]; agg.set(key, a)
    }
    e += ec * el
  }
  return agg
}
const a = count(baseFile), b = count(file), per = Number(perS)
const rows = []
for (const [k, v] of b) { const o = a.get(k) ?? { n: 0, s: 0 }; const n = (v.n - o.n) / per; if (n >= Number(minS ?? 0.9)) rows.push([n, (v.s - o.s) / per, k]) }
for (const [n, s, k] of rows.sort((x, y) => y[1] - x[1]).slice(0, 80)) console.log(n.toFixed(2).padStart(6), s.toFixed(0).padStart(6), k.slice(0, 160))
