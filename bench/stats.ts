/** Small statistics helpers; all inputs are plain arrays of finite numbers. */

export interface Spread {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
}

const sorted = (values: ReadonlyArray<number>): Array<number> => [...values].sort((a, b) => a - b)

/** Nearest-rank percentile (p in 0..100) over already sorted values. */
export const percentileSorted = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const rank = Math.min(values.length - 1, Math.max(0, Math.ceil((p / 100) * values.length) - 1))
  return values[rank]!
}

export const percentile = (values: ReadonlyArray<number>, p: number): number => percentileSorted(sorted(values), p)

export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const s = sorted(values)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

export const spread = (values: ReadonlyArray<number>): Spread => {
  const finite = values.filter(Number.isFinite)
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 }
  return { median: median(finite), min: Math.min(...finite), max: Math.max(...finite), n: finite.length }
}

export interface LatencySummary {
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly count: number
}

/** Latencies in microseconds. */
export const summarizeLatencies = (latencies: ReadonlyArray<number>): LatencySummary => {
  const s = sorted(latencies)
  return { p50: percentileSorted(s, 50), p99: percentileSorted(s, 99), max: s[s.length - 1] ?? Number.NaN, count: s.length }
}
