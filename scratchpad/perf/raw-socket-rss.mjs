// Scratch: RSS and heap per idle connection of a bare node:net server holding 1 000 sockets. `node --expose-gc scratchpad/perf/raw-socket-rss.mjs`
import * as net from "node:net"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
const N = 1000
const rssKB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1])
const keep = []
const server = net.createServer((s) => keep.push(s)).listen(0, "127.0.0.1", async () => {
  global.gc?.(); const before = rssKB(); const hb = process.memoryUsage().heapUsed
  const child = spawn("node", ["-e", `const net=require("net");const a=[];for(let i=0;i<${N};i++)a.push(net.connect(${server.address().port},"127.0.0.1"));setInterval(()=>{},1000)`], { stdio: "ignore" })
  await new Promise((r) => setTimeout(r, 2000))
  global.gc?.(); const after = rssKB()
  console.log(`raw net: ${keep.length} sockets, RSS ${((after - before) * 1.024 / N).toFixed(1)} KB each, heap ${((process.memoryUsage().heapUsed - hb) / N / 1024).toFixed(1)} KB`)
  child.kill(); process.exit(0)
})
