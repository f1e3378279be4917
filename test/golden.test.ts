/**
 * Golden transcripts (issue 3, "The golden transcript test passes"; PROTOCOL.md §11): the code must
 * still produce exactly the bytes published in PROTOCOL.md, and those bytes must follow from the
 * published keys by the rules of PROTOCOL.md §4 and §5 alone (checked here with `node:crypto`
 * directly, not through the library), the record tags of the plaintext transcript included.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeCrypto from "node:crypto"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { fencedBlock, GOLDEN_SCENARIOS, goldenTranscript, renderBlock } from "./support/golden.js"
import { fromHex } from "./support/wire.js"

const protocol = readFileSync(fileURLToPath(new URL("../PROTOCOL.md", import.meta.url)), "utf8")

interface Parsed {
  readonly frames: ReadonlyArray<{ readonly direction: string; readonly bytes: Uint8Array }>
  readonly keys: ReadonlyMap<string, Uint8Array>
}

const parseBlock = (block: string): Parsed => {
  const frames: Array<{ direction: string; bytes: Uint8Array }> = []
  const keys = new Map<string, Uint8Array>()
  for (const line of block.split("\n")) {
    const [first, second, third] = line.trim().split(/\s+/)
    if (first === "C->S" || first === "S->C") frames.push({ direction: first, bytes: fromHex(second ?? "") })
    else if (first === "key" && second !== undefined && third !== undefined) keys.set(second, fromHex(third))
    else if (line.trim() !== "") throw new Error(`unexpected line in golden block: ${line}`)
  }
  return { frames, keys }
}

const key = (parsed: Parsed, name: string): Uint8Array => {
  const value = parsed.keys.get(name)
  if (value === undefined) throw new Error(`golden block lacks key ${name}`)
  return value
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")
const hmac = (k: Uint8Array, data: Uint8Array) => new Uint8Array(NodeCrypto.createHmac("sha256", k).update(data).digest())
const expand = (prk: Uint8Array, label: string, length: number) =>
  hmac(prk, Buffer.concat([Buffer.from(`cvg1 ${label}`), Buffer.of(1)])).subarray(0, length)

/** Opens a sealed frame by PROTOCOL.md §4.4: nonce = iv xor sequence, aad = the 5-byte header. */
const open = (frame: Uint8Array, k: Uint8Array, iv: Uint8Array, sequence: number): Uint8Array => {
  const nonce = Uint8Array.from(iv)
  const seq = Buffer.alloc(8)
  seq.writeBigUInt64BE(BigInt(sequence))
  for (let i = 0; i < 8; i++) nonce[4 + i]! ^= seq[i]!
  const body = frame.subarray(5)
  const decipher = NodeCrypto.createDecipheriv("aes-256-gcm", k, nonce, { authTagLength: 16 })
  decipher.setAAD(frame.subarray(0, 5))
  decipher.setAuthTag(body.subarray(body.length - 16))
  return new Uint8Array(Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]))
}

/**
 * Checks a plaintext-mode record by PROTOCOL.md §4.4: the last 16 bytes are the AES-GCM tag of an
 * empty plaintext with `length ‖ type ‖ body` as associated data (AES-GMAC); returns the body.
 */
const verifyTagged = (frame: Uint8Array, k: Uint8Array, iv: Uint8Array, sequence: number): Uint8Array => {
  const nonce = Uint8Array.from(iv)
  const seq = Buffer.alloc(8)
  seq.writeBigUInt64BE(BigInt(sequence))
  for (let i = 0; i < 8; i++) nonce[4 + i]! ^= seq[i]!
  expect(new DataView(frame.buffer, frame.byteOffset).getUint32(0)).toBe(frame.length - 5)
  const decipher = NodeCrypto.createDecipheriv("aes-256-gcm", k, nonce, { authTagLength: 16 })
  decipher.setAAD(frame.subarray(0, frame.length - 16))
  decipher.setAuthTag(frame.subarray(frame.length - 16))
  // Throws when the tag does not verify.
  decipher.final()
  return frame.subarray(5, frame.length - 16)
}

/** `type ‖ body` of every frame in one direction: opened when sealed, tag checked and removed otherwise. */
const messages = (parsed: Parsed, direction: "C->S" | "S->C", sealed: boolean) => {
  const prefix = direction === "C->S" ? "c2s" : "s2c"
  let sequence = 0
  return parsed.frames.filter((f) => f.direction === direction).map((f, i) => {
    // The hello is the first frame each way and is never sealed nor tagged: no keys exist yet.
    if (i === 0) return { type: f.bytes[4]!, body: f.bytes.subarray(5) }
    if (!sealed) {
      const body = verifyTagged(f.bytes, key(parsed, `${prefix}_key_0`), key(parsed, `${prefix}_iv_0`), sequence++)
      return { type: f.bytes[4]!, body }
    }
    expect(f.bytes[4]).toBe(0x17)
    const inner = open(f.bytes, key(parsed, `${prefix}_key_0`), key(parsed, `${prefix}_iv_0`), sequence++)
    return { type: inner[0]!, body: inner.subarray(1) }
  })
}

describe("golden transcripts (PROTOCOL.md §11)", () => {
  for (const scenario of GOLDEN_SCENARIOS) {
    it.live(`scenario ${scenario.name}: the code produces exactly the published bytes`, () =>
      Effect.gen(function*() {
        const published = fencedBlock(protocol, `golden-${scenario.name}`)
        expect(published, `PROTOCOL.md has no \`\`\`golden-${scenario.name} block`).toBeDefined()
        const generated = fencedBlock(renderBlock(yield* goldenTranscript(scenario)), `golden-${scenario.name}`)
        expect(generated).toBe(published)
      }))

    it.live(`scenario ${scenario.name}: the published frames follow from the published keys`, () =>
      Effect.sync(() => {
        const block = fencedBlock(protocol, `golden-${scenario.name}`)
        if (block === undefined) throw new Error(`PROTOCOL.md has no golden-${scenario.name} block`)
        const parsed = parseBlock(block)
        const sealed = scenario.policy !== "disabled"

        // §4.2: prk and everything expanded from it.
        const shared = key(parsed, "shared_secret")
        const [clientHello, serverHello] = [parsed.frames[0], parsed.frames[1]]
        expect(clientHello?.direction).toBe("C->S")
        expect(serverHello?.direction).toBe("S->C")
        const h1 = new Uint8Array(NodeCrypto.createHash("sha256").update(clientHello!.bytes).update(serverHello!.bytes).digest())
        expect(hex(h1)).toBe(hex(key(parsed, "transcript_hash_h1")))
        // §4.2: ECDH from the published private scalars and the public keys in the hellos.
        const clientEcdh = NodeCrypto.createECDH("secp521r1")
        clientEcdh.setPrivateKey(key(parsed, "client_private"))
        const serverEcdh = NodeCrypto.createECDH("secp521r1")
        serverEcdh.setPrivateKey(key(parsed, "server_private"))
        expect(hex(clientHello!.bytes.subarray(5 + 5 + 32))).toBe(hex(clientEcdh.getPublicKey()))
        expect(hex(serverHello!.bytes.subarray(5 + 6 + 32))).toBe(hex(serverEcdh.getPublicKey()))
        expect(hex(clientEcdh.computeSecret(serverEcdh.getPublicKey()))).toBe(hex(shared))
        const prk = hmac(h1, shared)
        expect(hex(prk)).toBe(hex(key(parsed, "prk")))
        for (const [name, label] of [
          ["c2s_secret_0", "c2s traffic"],
          ["s2c_secret_0", "s2c traffic"],
          ["server_finished_key", "s finished"],
          ["client_finished_key", "c finished"],
          ["auth_key", "auth"]
        ] as const) {
          expect(hex(expand(prk, label, 32)), name).toBe(hex(key(parsed, name)))
        }
        // §4.3
        for (const dir of ["c2s", "s2c"] as const) {
          expect(hex(expand(key(parsed, `${dir}_secret_0`), "key", 32))).toBe(hex(key(parsed, `${dir}_key_0`)))
          expect(hex(expand(key(parsed, `${dir}_secret_0`), "iv", 12))).toBe(hex(key(parsed, `${dir}_iv_0`)))
        }

        // Wire order of PROTOCOL.md §3 and §7.1, then the contents of each message.
        expect(parsed.frames.map((f) => f.direction)).toEqual(["C->S", "S->C", "S->C", "C->S", "S->C", "C->S", "S->C", "C->S", "C->S", "S->C"])
        const toServer = messages(parsed, "C->S", sealed)
        const toClient = messages(parsed, "S->C", sealed)
        expect(toServer.map((m) => m.type)).toEqual([0x01, 0x04, 0x18, 0x1b, 0x21])
        expect(toClient.map((m) => m.type)).toEqual([0x02, 0x03, 0x05, 0x16, 0x21])
        expect(hex(toClient[1]!.body)).toBe(hex(key(parsed, "server_finished_mac")))
        expect(hex(toClient[1]!.body)).toBe(hex(hmac(key(parsed, "server_finished_key"), h1)))
        expect(hex(toServer[1]!.body)).toBe(hex(key(parsed, "client_finished_mac")) + hex(key(parsed, "client_proof")))
        expect(hex(toClient[2]!.body)).toBe(hex(key(parsed, "server_proof")))
        // §5: the proofs from the password and the transcript hashes.
        const pwKey = hmac(key(parsed, "auth_key"), Buffer.from(scenario.password))
        expect(hex(pwKey)).toBe(hex(key(parsed, "pw_key")))
        // §4.2: the transcript holds the plaintext form of each handshake message, sealed or not.
        const plain = (m: { readonly type: number; readonly body: Uint8Array }) => {
          const header = Buffer.alloc(5)
          header.writeUInt32BE(m.body.length)
          header[4] = m.type
          return Buffer.concat([header, m.body])
        }
        const sha = (...parts: ReadonlyArray<Uint8Array>) => {
          const hash = NodeCrypto.createHash("sha256")
          for (const part of parts) hash.update(part)
          return new Uint8Array(hash.digest())
        }
        const h2 = sha(clientHello!.bytes, serverHello!.bytes, plain(toClient[1]!))
        const h3 = sha(clientHello!.bytes, serverHello!.bytes, plain(toClient[1]!), plain(toServer[1]!))
        expect(hex(h2)).toBe(hex(key(parsed, "transcript_hash_h2")))
        expect(hex(h3)).toBe(hex(key(parsed, "transcript_hash_h3")))
        expect(hex(hmac(key(parsed, "client_finished_key"), h2))).toBe(hex(key(parsed, "client_finished_mac")))
        expect(hex(hmac(pwKey, Buffer.concat([Buffer.from("cvg1 client proof"), h2])))).toBe(hex(key(parsed, "client_proof")))
        expect(hex(hmac(pwKey, Buffer.concat([Buffer.from("cvg1 server proof"), h3])))).toBe(hex(key(parsed, "server_proof")))
        // §8: the packet and the reply.
        expect(hex(toServer[2]!.body)).toBe("00000001c0" + Buffer.from("hello").toString("hex"))
        expect(hex(toClient[3]!.body)).toBe("00000001c1" + Buffer.from("world").toString("hex"))
        // §7.3: one BATCH holding the two PACKETs, `type ‖ length: u16 ‖ body` each.
        const batch = toServer[3]!.body
        const items: Array<string> = []
        for (let at = 0; at < batch.length;) {
          const length = (batch[at + 1]! << 8) | batch[at + 2]!
          items.push(`${batch[at]!.toString(16)}:${hex(batch.subarray(at + 3, at + 3 + length))}`)
          at += 3 + length
        }
        expect(items).toEqual([
          "10:00000002c0" + Buffer.from("one").toString("hex"),
          "10:00000003c0" + Buffer.from("two").toString("hex")
        ])
        expect(toServer[4]!.body.length).toBe(0)
        expect(toClient[4]!.body.length).toBe(0)
        // The password itself is nowhere on the wire.
        const wire = Buffer.concat(parsed.frames.map((f) => f.bytes))
        expect(wire.indexOf(Buffer.from(scenario.password))).toBe(-1)
      }))
  }
})
