/** Turns the samples of a run into the table of docs/performance.md: medians, spreads, ratios to anchors, targets. */
import type { RunLog } from "./scenarios.js"
import { type Spread, spread } from "./stats.js"

type Target =
  | { readonly kind: "ratioAtLeast"; readonly value: number; readonly label: string }
  | { readonly kind: "ratioAtMost"; readonly value: number; readonly label: string }
  | { readonly kind: "below"; readonly value: number; readonly label: string }
  | { readonly kind: "notAbove"; readonly value: number; readonly label: string }

interface RowSpec {
  readonly section: string
  readonly label: string
  readonly key: string
  readonly unit: string
  readonly digits: number
  readonly anchor?: { readonly key: string; readonly label: string }
  readonly target?: Target
}

export interface Row {
  readonly section: string
  readonly label: string
  readonly unit: string
  readonly value: Spread
  readonly anchorLabel: string | undefined
  readonly anchor: number | undefined
  readonly ratio: number | undefined
  readonly target: string | undefined
  /** undefined when there is no target or no data. */
  readonly reached: boolean | undefined
  readonly digits: number
}

const key = (figure: string, system: string, variant: string) => `${figure}|${system}|${variant}`

const atLeast = (value: number, label: string): Target => ({ kind: "ratioAtLeast", value, label })
const atMost = (value: number, label: string): Target => ({ kind: "ratioAtMost", value, label })

const specs = (): Array<RowSpec> => {
  const rows: Array<RowSpec> = []
  for (const where of ["2proc", "1proc"] as const) {
    const section = where === "2proc" ? "1. bulk one way, MB/s (client and server processes)" : "1b. bulk one way, MB/s (one process)"
    const k = (system: string, variant: string) => key("bulk_MBps", system, `${where}:${variant}`)
    const tlsAnchor = { key: k("tls", "stream"), label: "tls" }
    const rawAnchor = { key: k("raw", "stream"), label: "raw" }
    rows.push(
      { section, label: "raw node:net", key: k("raw", "stream"), unit: "MB/s", digits: 0 },
      { section, label: "node:tls 1.3 AES-256-GCM", key: k("tls", "stream"), unit: "MB/s", digits: 0, anchor: rawAnchor },
      { section, label: "cvg encrypted, sendStream", key: k("cvg", "stream"), unit: "MB/s", digits: 0, anchor: tlsAnchor, target: atLeast(1.2, ">= 1.2x tls") },
      { section, label: "cvg encrypted, send 16 MiB packets", key: k("cvg", "send"), unit: "MB/s", digits: 0, anchor: tlsAnchor, target: atLeast(1.2, ">= 1.2x tls") },
      { section, label: "cvg plaintext, sendStream", key: k("cvg-plain", "stream"), unit: "MB/s", digits: 0, anchor: rawAnchor, target: atLeast(0.8, ">= 0.8x raw") },
      { section, label: "cvg plaintext, send 16 MiB packets", key: k("cvg-plain", "send"), unit: "MB/s", digits: 0, anchor: rawAnchor, target: atLeast(0.8, ">= 0.8x raw") }
    )
  }
  for (const where of ["2proc", "1proc"] as const) {
    const suffix = where === "2proc" ? "" : ", one process"
    for (const pct of ["p50", "p99"] as const) {
      const section = `2. round trip 64 B, ${pct}, us${suffix}`
      const k = (system: string) => key(`rtt_${pct}_us`, system, where)
      // Issue 11: the peer for a round trip is a hand-written node:tls request/response by id.
      const rpcAnchor = { key: k("tls-rpc"), label: "tls-rpc" }
      const target = pct === "p50" ? atMost(1.25, "<= 1.25x tls-rpc") : undefined
      rows.push(
        { section, label: "raw echo", key: k("raw"), unit: "us", digits: 0 },
        { section, label: "tls echo", key: k("tls"), unit: "us", digits: 0, anchor: { key: k("raw"), label: "raw" } },
        { section, label: "tls-rpc (node:tls, calls by id)", key: k("tls-rpc"), unit: "us", digits: 0, anchor: { key: k("tls"), label: "tls" } },
        { section, label: "ws-tls (ws over TLS, calls by id)", key: k("ws-tls"), unit: "us", digits: 0, anchor: rpcAnchor },
        { section, label: "cvg encrypted", key: k("cvg"), unit: "us", digits: 0, anchor: rpcAnchor, ...(target === undefined ? {} : { target }) },
        { section, label: "cvg plaintext", key: k("cvg-plain"), unit: "us", digits: 0, anchor: rpcAnchor, ...(target === undefined ? {} : { target }) },
        { section, label: "cvg plaintext vs raw", key: k("cvg-plain"), unit: "us", digits: 0, anchor: { key: k("raw"), label: "raw" } },
        // The cost of typing: the same request through the typed layers, against cvg's raw request.
        { section, label: "cvg typed Api call", key: k("cvg-typed"), unit: "us", digits: 0, anchor: { key: k("cvg"), label: "cvg" } },
        { section, label: "@effect/rpc over cvg", key: k("rpc-cvg"), unit: "us", digits: 0, anchor: { key: k("cvg"), label: "cvg" } }
      )
    }
  }
  {
    const section = "3. 64 B requests, 256 in flight, req/s"
    const k = (system: string) => key("inflight_rps", system, "2proc")
    // Issue 11: the peer for requests in flight is ws over TLS with an id layer.
    const wsAnchor = { key: k("ws-tls"), label: "ws-tls" }
    rows.push(
      { section, label: "raw echo, pipelined", key: k("raw"), unit: "req/s", digits: 0 },
      { section, label: "tls echo, pipelined", key: k("tls"), unit: "req/s", digits: 0, anchor: { key: k("raw"), label: "raw" } },
      { section, label: "tls-rpc (node:tls, calls by id)", key: k("tls-rpc"), unit: "req/s", digits: 0, anchor: { key: k("tls"), label: "tls" } },
      { section, label: "ws-tls (ws over TLS, calls by id)", key: k("ws-tls"), unit: "req/s", digits: 0, anchor: { key: k("tls-rpc"), label: "tls-rpc" } },
      { section, label: "cvg encrypted", key: k("cvg"), unit: "req/s", digits: 0, anchor: wsAnchor, target: atLeast(0.5, ">= 0.5x ws-tls") },
      { section, label: "cvg plaintext", key: k("cvg-plain"), unit: "req/s", digits: 0, anchor: wsAnchor, target: atLeast(0.5, ">= 0.5x ws-tls") },
      { section, label: "cvg typed Api call", key: k("cvg-typed"), unit: "req/s", digits: 0, anchor: { key: k("cvg"), label: "cvg" } },
      { section, label: "@effect/rpc over cvg", key: k("rpc-cvg"), unit: "req/s", digits: 0, anchor: { key: k("cvg"), label: "cvg" } }
    )
  }
  {
    const section = "3b. CPU per request at 256 in flight, client + server process, us"
    const k = (system: string) => key("inflight_cpu_us_per_req", system, "client+server")
    const wsAnchor = { key: k("ws-tls"), label: "ws-tls" }
    const target = { kind: "notAbove", value: 8, label: "<= 8 us" } as const
    rows.push(
      { section, label: "raw echo, pipelined", key: k("raw"), unit: "us", digits: 2 },
      { section, label: "tls echo, pipelined", key: k("tls"), unit: "us", digits: 2 },
      { section, label: "tls-rpc (node:tls, calls by id)", key: k("tls-rpc"), unit: "us", digits: 2 },
      { section, label: "ws-tls (ws over TLS, calls by id)", key: k("ws-tls"), unit: "us", digits: 2 },
      { section, label: "cvg encrypted", key: k("cvg"), unit: "us", digits: 2, anchor: wsAnchor, target },
      { section, label: "cvg plaintext", key: k("cvg-plain"), unit: "us", digits: 2, anchor: wsAnchor, target },
      { section, label: "cvg typed Api call", key: k("cvg-typed"), unit: "us", digits: 2, anchor: { key: k("cvg"), label: "cvg" } },
      { section, label: "@effect/rpc over cvg", key: k("rpc-cvg"), unit: "us", digits: 2, anchor: { key: k("cvg"), label: "cvg" } }
    )
  }
  {
    const section = "4. handshakes per second"
    const limit = { key: key("p521_limit_handshakes_per_s", "node:crypto", "both sides"), label: "P-521 limit" }
    rows.push(
      { section, label: "P-521 agreements/s, one process (keygen+export+import+derive)", key: key("p521_agreements_per_s", "node:crypto", "one side"), unit: "/s", digits: 1 },
      { section, label: "P-521 limit: agreements/s / 2 (both sides on these cores)", key: limit.key, unit: "/s", digits: 1 },
      { section, label: "P-521 keygen, sequential", key: key("p521_keygen_ms", "node:crypto", "sequential"), unit: "ms", digits: 2 },
      { section, label: "P-521 derive, sequential", key: key("p521_derive_ms", "node:crypto", "sequential"), unit: "ms", digits: 2 },
      { section, label: "cvg encrypted", key: key("handshakes_per_s", "cvg", "P-521"), unit: "/s", digits: 1, anchor: limit, target: atLeast(0.8, ">= 0.8x limit") },
      { section, label: "cvg plaintext", key: key("handshakes_per_s", "cvg-plain", "P-521"), unit: "/s", digits: 1, anchor: limit, target: atLeast(0.8, ">= 0.8x limit") },
      {
        section,
        label: "cvg encrypted, 2 server processes (node:cluster)",
        key: key("handshakes_per_s", "cvg-cluster", "P-521"),
        unit: "/s",
        digits: 1,
        anchor: { key: key("handshakes_per_s", "cvg", "P-521"), label: "cvg 1 process" }
      },
      ...([
        ["cvg-id", "cvg encrypted, pinned server identity key"],
        ["cvg-pake", "cvg encrypted, password (CPace)"],
        ["cvg-id-pake", "cvg encrypted, pinned key and password"]
      ] as const).map(([system, label]) => ({
        section,
        label,
        key: key("handshakes_per_s", system, "P-521"),
        unit: "/s",
        digits: 1,
        anchor: { key: key("handshakes_per_s", "cvg", "P-521"), label: "cvg, neither" }
      })),
      { section, label: "tls X25519 (information)", key: key("handshakes_per_s", "tls", "X25519"), unit: "/s", digits: 1 },
      { section, label: "tls P-521 (information)", key: key("handshakes_per_s", "tls", "P-521"), unit: "/s", digits: 1, anchor: limit },
      // CPU per handshake, client + server process: far less sensitive than the rate to other load.
      { section, label: "cvg encrypted, CPU per handshake", key: key("handshake_cpu_ms", "cvg", "P-521"), unit: "ms", digits: 2 },
      { section, label: "cvg plaintext, CPU per handshake", key: key("handshake_cpu_ms", "cvg-plain", "P-521"), unit: "ms", digits: 2 },
      { section, label: "cvg pinned key, CPU per handshake", key: key("handshake_cpu_ms", "cvg-id", "P-521"), unit: "ms", digits: 2 },
      { section, label: "cvg CPace, CPU per handshake", key: key("handshake_cpu_ms", "cvg-pake", "P-521"), unit: "ms", digits: 2 },
      { section, label: "cvg pinned key and CPace, CPU per handshake", key: key("handshake_cpu_ms", "cvg-id-pake", "P-521"), unit: "ms", digits: 2 },
      { section, label: "tls X25519, CPU per handshake", key: key("handshake_cpu_ms", "tls", "X25519"), unit: "ms", digits: 2 },
      { section, label: "tls P-521, CPU per handshake", key: key("handshake_cpu_ms", "tls", "P-521"), unit: "ms", digits: 2 }
    )
  }
  {
    const section = "5. round trip p99 with 50 handshakes running, us"
    for (const system of ["cvg", "cvg-plain", "tls"] as const) {
      const name = system === "cvg" ? "cvg encrypted" : system === "cvg-plain" ? "cvg plaintext" : "tls (information)"
      const idle = key("contention_p99_us", system, "idle")
      rows.push(
        { section, label: `${name}, idle`, key: idle, unit: "us", digits: 0 },
        {
          section,
          label: `${name}, 50 handshakes`,
          key: key("contention_p99_us", system, "loaded"),
          unit: "us",
          digits: 0,
          anchor: { key: idle, label: "idle" },
          ...(system === "tls" ? {} : { target: { kind: "below", value: 5000, label: "< 5000 us" } as const })
        },
        { section, label: `${name}, handshakes/s during flood`, key: key("contention_handshakes_per_s", system, "loaded"), unit: "/s", digits: 1 }
      )
    }
  }
  {
    const section = "6. peak RSS while the memory stream passes, MB"
    for (const system of ["raw", "tls", "cvg", "cvg-plain"] as const) {
      for (const side of ["client", "server"] as const) {
        const target = system === "cvg" || system === "cvg-plain" ? { target: { kind: "below", value: 150, label: "< 150 MB" } as const } : {}
        rows.push(
          { section, label: `${system} ${side}`, key: key("peak_rss_MB", system, side), unit: "MB", digits: 0, ...target },
          { section, label: `${system} ${side}, RSS at startup`, key: key("startup_rss_MB", system, side), unit: "MB", digits: 0 }
        )
      }
    }
  }
  return rows
}

export const buildRows = (log: RunLog): Array<Row> => {
  const groups = new Map<string, Array<number>>()
  for (const s of log.samples) {
    const k = key(s.figure, s.system, s.variant)
    const list = groups.get(k) ?? []
    list.push(s.value)
    groups.set(k, list)
  }
  const rows: Array<Row> = []
  for (const spec of specs()) {
    const values = groups.get(spec.key)
    if (values === undefined) continue
    const value = spread(values)
    const anchorValues = spec.anchor === undefined ? undefined : groups.get(spec.anchor.key)
    const anchor = anchorValues === undefined ? undefined : spread(anchorValues).median
    const ratio = anchor === undefined ? undefined : value.median / anchor
    let reached: boolean | undefined
    const t = spec.target
    if (t !== undefined) {
      if (t.kind === "below") reached = value.median < t.value
      else if (t.kind === "notAbove") reached = value.median <= t.value
      else if (ratio !== undefined && Number.isFinite(ratio)) reached = t.kind === "ratioAtLeast" ? ratio >= t.value : ratio <= t.value
    }
    rows.push({
      section: spec.section,
      label: spec.label,
      unit: spec.unit,
      value,
      anchorLabel: spec.anchor?.label,
      anchor,
      ratio,
      target: t?.label,
      reached,
      digits: spec.digits
    })
  }
  return rows
}

const fmt = (n: number | undefined, digits: number) => (n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(digits))

export const renderTable = (rows: ReadonlyArray<Row>): string => {
  const header = ["figure", "median", "min-max", "n", "anchor", "ratio", "target", "reached"]
  const lines: Array<Array<string>> = []
  let section = ""
  for (const row of rows) {
    if (row.section !== section) {
      section = row.section
      lines.push([section])
    }
    lines.push([
      `  ${row.label}`,
      `${fmt(row.value.median, row.digits)} ${row.unit}`,
      `${fmt(row.value.min, row.digits)}-${fmt(row.value.max, row.digits)}`,
      String(row.value.n),
      row.anchorLabel === undefined ? "" : `${row.anchorLabel} ${fmt(row.anchor, row.digits)}`,
      row.ratio === undefined ? "" : `${fmt(row.ratio, 2)}x`,
      row.target ?? "",
      row.reached === undefined ? (row.target === undefined ? "" : "no data") : row.reached ? "yes" : "NO"
    ])
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.filter((l) => l.length > 1).map((l) => (l[i] ?? "").length)))
  const pad = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")
  const out = [pad(header), widths.map((w) => "-".repeat(w)).join("-|-")]
  for (const line of lines) out.push(line.length === 1 ? line[0]! : pad(line))
  return out.join("\n")
}
