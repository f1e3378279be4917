import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

// CI asks for a JSON report next to the usual output, so that .ci/run can print "N passed, N failed".
const jsonReport = process.env["VITEST_JSON_REPORT"]

const source = (path: string) => fileURLToPath(new URL(path, import.meta.url))

export default defineConfig({
  resolve: {
    // The README snippets import "cvg-core" by name. The package's `exports` point at the build in
    // dist/, which the suite must not depend on (scripts/smoke.mjs tests the build); tsconfig.json's
    // `paths` does the same for the type-check.
    alias: [
      { find: /^cvg-core$/, replacement: source("./src/index.ts") },
      { find: /^cvg-core\/testing$/, replacement: source("./src/testing.ts") },
      { find: /^cvg-core\/rpc$/, replacement: source("./src/rpc.ts") }
    ]
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: jsonReport === undefined ? ["default"] : ["default", "json"],
    ...(jsonReport === undefined ? {} : { outputFile: { json: jsonReport } })
  }
})
