// Does retaining freshly allocated ArrayBuffers (A) set off more full collections than copying each
// one into reused slabs (B)? 1 GiB "received" in 64 KiB decrypted pieces, held up to 80 MiB per
// "connection", then dropped. Run with: node --trace-gc scratchpad/gc/retain-vs-pool.mjs A|B
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto"
const mode = process.argv[2] ?? "A"
const key = randomBytes(32), iv = randomBytes(12)
const plain = randomBytes(64 * 1024)
const sealed = createCipheriv("aes-256-gcm", key, iv).update(plain)
// Some live heap, like the server's.
const ballast = Array.from({ length: 150000 }, (_, i) => ({ i, s: "x" + i, a: [i, i + 1] }))
const CONN = 80 * 1024 * 1024
const free = [] // B: slabs not in use
let held = [], heldBytes = 0, total = 0
const t0 = performance.now()
while (total < 1024 * 1024 * 1024) {
  const d = createDecipheriv("aes-256-gcm", key, iv)
  const out = d.update(sealed) // a fresh buffer per piece, as node:crypto gives
  if (mode === "A") held.push(out)
  else {
    const slab = free.pop() ?? Buffer.allocUnsafeSlow(64 * 1024)
    slab.set(out)
    held.push(slab)
  }
  heldBytes += out.length
  total += out.length
  if (heldBytes >= CONN) {
    if (mode === "B") free.push(...held)
    held = []
    heldBytes = 0
  }
}
console.log(mode, "ms", Math.round(performance.now() - t0), "ballast", ballast.length)
