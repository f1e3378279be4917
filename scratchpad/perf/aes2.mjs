import * as c from "node:crypto"
const key = c.createSecretKey(c.randomBytes(32)); const iv = c.randomBytes(12)
for (const size of [16384, 65536, 262144, 1048576]) {
  const pt = c.randomBytes(size); const N = Math.ceil(256 * 1048576 / size); const t = performance.now()
  for (let i = 0; i < N; i++) { const ci = c.createCipheriv("aes-256-gcm", key, iv); ci.update(pt); ci.final(); ci.getAuthTag() }
  const dt = performance.now() - t; console.log(size, (256 / (dt / 1000)).toFixed(0), "MiB/s")
}
