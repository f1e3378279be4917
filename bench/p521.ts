/**
 * The P-521 limit for handshakes (docs/performance.md): what one key agreement costs through the
 * WebCrypto calls the library's Crypto layer used before its worker threads, at the same concurrency
 * as the handshake run; kept as it was so that the limit stays the one issue 11's target was set
 * against.
 */
import * as NodeCrypto from "node:crypto"
import { performance } from "node:perf_hooks"
import type { P521LimitOptions, P521LimitResult } from "./protocol.js"

const subtle = NodeCrypto.webcrypto.subtle
const P521 = { name: "ECDH", namedCurve: "P-521" } as const
/** 66-byte shared secret, as the library derives. */
const SECRET_BITS = 66 * 8

export const measureP521Limit = async (options: P521LimitOptions): Promise<P521LimitResult> => {
  const peer = await subtle.generateKey(P521, false, ["deriveBits"])
  const peerRaw = new Uint8Array(await subtle.exportKey("raw", peer.publicKey))

  // One side of a handshake: a fresh key pair, our public key exported, the peer's imported, one derive.
  const agreement = async () => {
    const pair = await subtle.generateKey(P521, false, ["deriveBits"])
    await subtle.exportKey("raw", pair.publicKey)
    const imported = await subtle.importKey("raw", peerRaw, P521, true, [])
    await subtle.deriveBits({ name: "ECDH", public: imported }, pair.privateKey, SECRET_BITS)
  }

  const sequentialMs = async (n: number, step: () => Promise<unknown>) => {
    const start = performance.now()
    for (let i = 0; i < n; i++) await step()
    return (performance.now() - start) / n
  }
  const keygenMs = await sequentialMs(10, () => subtle.generateKey(P521, false, ["deriveBits"]))
  const own = await subtle.generateKey(P521, false, ["deriveBits"])
  const imported = await subtle.importKey("raw", peerRaw, P521, true, [])
  const deriveMs = await sequentialMs(10, () => subtle.deriveBits({ name: "ECDH", public: imported }, own.privateKey, SECRET_BITS))

  const start = performance.now()
  const deadline = start + options.durationMs
  let completed = 0
  const loop = async () => {
    while (performance.now() < deadline) {
      await agreement()
      completed++
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, loop))
  const seconds = (performance.now() - start) / 1000
  return { agreementsPerSecond: completed / seconds, completed, seconds, keygenMs, deriveMs }
}
