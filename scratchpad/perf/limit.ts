import { measureP521Limit } from "../../bench/p521.js"
for (let i = 0; i < 8; i++) {
  const t = Date.now()
  const r = await Promise.race([measureP521Limit({ concurrency: 16, durationMs: 1000 }), new Promise<string>((res) => setTimeout(() => res("TIMEOUT"), 10000))])
  console.log(i, typeof r === "string" ? r : r.agreementsPerSecond.toFixed(0), Date.now() - t, "ms")
}
process.exit(0)
