/**
 * Command-line flags for the programs in bench/ and stress/: `--name value`, `--name=value` and
 * boolean `--name`, sizes (`256M`, `1G`) and durations (`5s`, `800ms`). Every parser reports a bad
 * value through `fail`, which prints the program's usage and exits.
 */

export type Fail = (message: string) => never

export const parseBytes = (text: string, fail: Fail): number => {
  const m = /^(\d+(?:\.\d+)?)\s*(k|m|g|kib|mib|gib|kb|mb|gb)?$/i.exec(text.trim())
  if (m === null) return fail(`not a size: ${text}`)
  const unit = (m[2] ?? "").toLowerCase()
  const scale = unit.startsWith("k") ? 2 ** 10 : unit.startsWith("m") ? 2 ** 20 : unit.startsWith("g") ? 2 ** 30 : 1
  const bytes = Math.round(Number(m[1]) * scale)
  return bytes > 0 ? bytes : fail(`size must be positive: ${text}`)
}

export const parseDuration = (text: string, fail: Fail): number => {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s)?$/.exec(text.trim())
  if (m === null) return fail(`not a duration: ${text}`)
  const ms = m[2] === "ms" ? Number(m[1]) : Number(m[1]) * 1000
  return ms >= 100 ? ms : fail(`duration must be at least 100ms: ${text}`)
}

/** The chosen names, in the canonical order of `allowed`, so that tables always read the same way. */
export const parseList = <T extends string>(text: string, allowed: ReadonlyArray<T>, what: string, fail: Fail): Array<T> => {
  const items = text.split(",").map((s) => s.trim()).filter((s) => s !== "")
  const known = new Set<string>(allowed)
  for (const item of items) if (!known.has(item)) fail(`unknown ${what}: ${item}`)
  return allowed.filter((name) => items.includes(name))
}

export interface Flags {
  readonly has: (name: string) => boolean
  readonly text: (name: string) => string | undefined
  /** An integer flag of at least `min` (default 1), or `fallback` when absent. */
  readonly int: (name: string, fallback: number, min?: number) => number
}

/** Splits argv into flags; `booleans` take no value; anything not in `known` (or `help`) fails. */
export const parseFlags = (
  argv: ReadonlyArray<string>,
  options: { readonly booleans: ReadonlyArray<string>; readonly known: ReadonlyArray<string>; readonly usage: string },
  fail: Fail
): Flags => {
  const flags = new Map<string, string | true>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith("--")) fail(`unexpected argument: ${arg}`)
    const [name, inline] = arg.slice(2).split("=", 2) as [string, string | undefined]
    if (options.booleans.includes(name) || name === "help") flags.set(name, true)
    else if (inline !== undefined) flags.set(name, inline)
    else {
      const next = argv[i + 1]
      if (next === undefined) fail(`--${name} needs a value`)
      else flags.set(name, next)
      i++
    }
  }
  for (const name of flags.keys()) if (name !== "help" && !options.known.includes(name)) fail(`unknown option --${name}`)
  if (flags.has("help")) {
    process.stdout.write(`${options.usage}\n`)
    process.exit(0)
  }
  const text = (name: string): string | undefined => {
    const v = flags.get(name)
    return typeof v === "string" ? v : undefined
  }
  return {
    has: (name) => flags.has(name),
    text,
    int: (name, fallback, min = 1) => {
      const v = text(name)
      if (v === undefined) return fallback
      const n = Number(v)
      return Number.isInteger(n) && n >= min ? n : fail(`--${name} must be an integer of at least ${min}`)
    }
  }
}
