/**
 * The progress bar of `cvg send` and `cvg receive`: bytes, percentage, rate and ETA on one line of
 * stderr, redrawn in place with `\r` at most 10 times a second. It is drawn only when stderr is a
 * terminal; piped or redirected, the commands print nothing.
 */
import { Effect } from "effect"

export interface Progress {
  /** Counts bytes done; redraws when the last drawing is at least 100 ms old. */
  readonly add: (bytes: number) => Effect.Effect<void>
  /** Draws the final state and ends the line. */
  readonly finish: Effect.Effect<void>
  /** Ends the line where it is, when the transfer failed. */
  readonly abandon: Effect.Effect<void>
}

const REDRAW_MS = 100

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"]

/** `1536` → `1.5 KiB`. */
export const formatBytes = (bytes: number): string => {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`
}

/** Seconds as `m:ss` (or `h:mm:ss`). */
export const formatDuration = (seconds: number): string => {
  if (!Number.isFinite(seconds)) return "--:--"
  const total = Math.max(0, Math.round(seconds))
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = String(total % 60).padStart(2, "0")
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`
}

/**
 * One line: `label  45.0 MiB / 100.0 MiB  45% [#####.....]  120.3 MiB/s  ETA 0:01`, fitted to
 * `columns` (the bar shrinks first, then goes).
 */
export const renderLine = (label: string, done: number, total: number, elapsedMs: number, columns: number): string => {
  const seconds = elapsedMs / 1000
  const rate = seconds > 0 ? done / seconds : 0
  const fraction = total > 0 ? Math.min(1, done / total) : 1
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4)
  const eta = done >= total ? `in ${formatDuration(seconds)}` : `ETA ${rate > 0 ? formatDuration((total - done) / rate) : "--:--"}`
  // Fixed widths, so that the bar keeps its length and nothing jumps from one drawing to the next.
  const left = `${label}  ${formatBytes(done).padStart(10)} / ${formatBytes(total)} ${percent}`
  const right = `${`${formatBytes(rate)}/s`.padStart(12)}  ${eta.padEnd(12)}`
  const room = columns - 1 - left.length - right.length - 6
  if (room < 5) return `${left}  ${right}`.slice(0, Math.max(0, columns - 1))
  const width = Math.min(30, room)
  const filled = Math.round(fraction * width)
  return `${left} [${"#".repeat(filled)}${".".repeat(width - filled)}]  ${right}`
}

/** A progress bar on stderr when it is a terminal, else a silent counter. */
export const makeProgress = (label: string, total: number, enabled: boolean): Effect.Effect<Progress> =>
  Effect.sync(() => {
    if (!enabled) return { add: () => Effect.void, finish: Effect.void, abandon: Effect.void }
    const stderr = process.stderr
    const started = Date.now()
    let done = 0
    let drawn = Number.NEGATIVE_INFINITY
    let ended = false
    // A terminal whose size is unknown (a pty nobody sized) reports 0 columns.
    const columns = () => stderr.columns > 0 ? stderr.columns : 80
    const draw = (now: number) => {
      drawn = now
      // `\r` back to the start, the line, then erase whatever a longer earlier line left.
      stderr.write(`\r${renderLine(label, done, total, now - started, columns())}\u001b[K`)
    }
    draw(started)
    return {
      add: (bytes: number) =>
        Effect.sync(() => {
          done += bytes
          const now = Date.now()
          if (!ended && now - drawn >= REDRAW_MS) draw(now)
        }),
      finish: Effect.sync(() => {
        if (ended) return
        ended = true
        draw(Date.now())
        stderr.write("\n")
      }),
      abandon: Effect.sync(() => {
        if (ended) return
        ended = true
        stderr.write("\n")
      })
    }
  })
