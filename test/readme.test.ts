/**
 * README.md's ```ts snippets compile: each is kept verbatim in its own file under
 * test/support/readme/, which `tsc --noEmit` type-checks against src/ (tsconfig.json's `paths`) and
 * scripts/smoke.mjs against the built, packed and installed package. This test keeps those copies
 * honest, and runs the in-memory one.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { roundTrip } from "./support/readme/testing.js"
import { bounded } from "./support/sessions.js"

const root = join(import.meta.dirname, "..")
const snippetDir = join(import.meta.dirname, "support", "readme")

const readmeBlocks = (): ReadonlyArray<string> => {
  const readme = readFileSync(join(root, "README.md"), "utf8")
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => match[1] ?? "")
}

const snippetFiles = (): ReadonlyArray<{ readonly name: string; readonly text: string }> =>
  readdirSync(snippetDir)
    .filter((name) => name.endsWith(".ts"))
    .map((name) => ({ name, text: readFileSync(join(snippetDir, name), "utf8") }))

describe("README", () => {
  it("has ts snippets", () => {
    expect(readmeBlocks().length).toBeGreaterThan(0)
  })

  it("every ts snippet is kept verbatim in a type-checked file, one file per snippet", () => {
    const blocks = readmeBlocks()
    const files = snippetFiles()
    const missing = blocks.filter((block) => !files.some((file) => file.text.includes(block)))
    expect(missing, "README snippets without a copy under test/support/readme/ (copy them there verbatim)").toEqual([])
    const stale = files.filter((file) => !blocks.some((block) => file.text.includes(block))).map((file) => file.name)
    expect(stale, "files under test/support/readme/ that no longer match a README snippet").toEqual([])
    expect(files.length).toBe(blocks.length)
  })

  it.live("the in-memory testing snippet runs as written", () =>
    Effect.gen(function*() {
      const answer = yield* roundTrip.pipe(bounded("README testing snippet"))
      expect(answer.id).toBe(1)
      expect(Array.from(answer.payload)).toEqual([0, 0, 0])
    }))
})
