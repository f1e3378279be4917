import { defineConfig } from "vitest/config"

// CI asks for a JSON report next to the usual output, so that .ci/run can print "N passed, N failed".
const jsonReport = process.env["VITEST_JSON_REPORT"]

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: jsonReport === undefined ? ["default"] : ["default", "json"],
    ...(jsonReport === undefined ? {} : { outputFile: { json: jsonReport } })
  }
})
