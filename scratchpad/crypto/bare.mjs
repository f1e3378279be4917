import * as Node from "node:crypto"
const key = Node.createSecretKey(Node.randomBytes(32)), nonce = Node.randomBytes(12), aad = Node.randomBytes(8)
const pt = Node.randomBytes(65536), n = 20000
let t = performance.now(), body, tag
for (let i = 0; i < n; i++) { const c = Node.createCipheriv("aes-256-gcm", key, nonce); c.setAAD(aad); body = c.update(pt); c.final(); tag = c.getAuthTag() }
console.log("bare encrypt us", ((performance.now() - t) * 1000 / n).toFixed(2))
t = performance.now()
for (let i = 0; i < n; i++) Buffer.concat([body, tag])
console.log("concat us", ((performance.now() - t) * 1000 / n).toFixed(2))
t = performance.now()
for (let i = 0; i < n; i++) { const d = Node.createDecipheriv("aes-256-gcm", key, nonce); d.setAuthTag(tag); d.setAAD(aad); d.update(body); d.final() }
console.log("bare decrypt us", ((performance.now() - t) * 1000 / n).toFixed(2))
