import fs from "node:fs"
const snap = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const m = snap.snapshot.meta, nf = m.node_fields, nl = nf.length, types = m.node_types[0], S = snap.strings, nodes = snap.nodes
const ef = m.edge_fields, el = ef.length, etypes = m.edge_types[0], edges = snap.edges
const iType = nf.indexOf("type"), iName = nf.indexOf("name"), iEC = nf.indexOf("edge_count")
const N = nodes.length / nl
const firstEdge = new Uint32Array(N + 1)
for (let i = 0, e = 0; i < N; i++) { firstEdge[i] = e; e += nodes[i * nl + iEC] * el }
const eType = ef.indexOf("type"), eName = ef.indexOf("name_or_index"), eTo = ef.indexOf("to_node")
const show = (i, d) => { for (let e = firstEdge[i]; e < firstEdge[i] + nodes[i*nl+iEC]*el; e += el) { const t = etypes[edges[e + eType]]; const n = (t === "element" || t === "hidden") ? edges[e+eName] : S[edges[e + eName]]; const to = edges[e+eTo]/nl; console.log(" ".repeat(d), t, n, "->", types[nodes[to*nl+iType]], S[nodes[to*nl+iName]].slice(0,80)) } }
const loc = snap.locations, lf = m.location_fields.length
for (let i = 0; i < loc.length; i += lf) { if (loc[i+1] === Number(process.argv[3])) { const node = loc[i]/nl; console.log("closure", S[nodes[node*nl+iName]]); show(node, 1); 
  for (let e = firstEdge[node]; e < firstEdge[node] + nodes[node*nl+iEC]*el; e += el) if (S[edges[e+eName]] === "shared") show(edges[e+eTo]/nl, 3)
  break } }
