/** Prints the golden vectors of PROTOCOL.md §11: `npx tsx scratchpad/print-golden.ts`. */
import { Effect } from "effect"
import { goldenMarkdown } from "../test/support/golden.js"

Effect.runPromise(goldenMarkdown).then(
  (text) => process.stdout.write(text + "\n"),
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
