/**
 * `cvg bench [ARGS...]`: runs the repository's bench (bench/main.ts, what `npm run bench` runs) with
 * ARGS, passing its output and exit code through. The bench is not part of the published package:
 * from an installed package this says so and exits 1.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"
import { Effect } from "effect"
import { ChildExited, Unavailable } from "./errors.js"
import { packageInfo } from "./root.js"


const resolveTsx = (): string | undefined => {
  try {
    return createRequire(import.meta.url).resolve("tsx/cli")
  } catch {
    return undefined
  }
}

export const runBench = (args: ReadonlyArray<string>): Effect.Effect<void, Unavailable | ChildExited> =>
  Effect.suspend((): Effect.Effect<void, Unavailable | ChildExited> => {
    const root = packageInfo.root
    const main = join(root, "bench", "main.ts")
    const tsx = resolveTsx()
    if (!existsSync(main) || tsx === undefined) {
      return Effect.fail(
        new Unavailable({
          detail: "the bench is not shipped with the installed package: run it from a clone of cvg-core (npm ci, then npm run bench or npx cvg bench)"
        })
      )
    }
    return Effect.async<void, ChildExited>((resume) => {
      const child = spawn(process.execPath, [tsx, main, ...args], { cwd: root, stdio: "inherit" })
      child.on("error", () => resume(Effect.fail(new ChildExited({ command: "bench", code: 1 }))))
      child.on("close", (code, signal) => {
        if (code === 0) resume(Effect.void)
        else resume(Effect.fail(new ChildExited({ command: "bench", code: code ?? (signal === "SIGINT" ? 130 : 1) })))
      })
      return Effect.sync(() => {
        child.kill("SIGTERM")
      })
    })
  })

export const benchCommand = Command.make(
  "bench",
  { args: Args.text({ name: "ARGS" }).pipe(Args.withDescription("Passed to the bench as they are, e.g. --quick."), Args.repeated) },
  ({ args }) => runBench(args)
).pipe(
  Command.withDescription(
    "Run the repository's bench (npm run bench) with the given arguments; `cvg bench --help` lists them, `cvg bench --quick` takes under a minute. Only from a clone: the published package does not ship the bench."
  )
)
