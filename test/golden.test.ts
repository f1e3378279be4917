/**
 * Golden transcripts (issue 3, "The golden transcript test passes"; PROTOCOL.md §11): the code must
 * still produce exactly the bytes published in PROTOCOL.md, and those bytes must follow from the
 * published keys by the rules of PROTOCOL.md §3–§5 alone (checked here with `node:crypto`
 * directly, not through the library, and `@noble/curves` for CPace's ristretto255 group, which
 * `node:crypto` lacks), the record tags of the plaintext transcript included.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeCrypto from "node:crypto"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { ristretto255_hasher } from "@noble/curves/ed25519.js"
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

/**
 * `type ‖ body` of every frame in one direction: opened when sealed, tag checked and removed when
 * tagged. The hello is neither (no keys exist yet); the rest of the handshake is under the handshake
 * keys, the session under the traffic keys, each from sequence 0 (PROTOCOL.md §4.2–4.4).
 * `handshakeFrames` counts this direction's handshake messages after the hello.
 */
const messages = (parsed: Parsed, direction: "C->S" | "S->C", sealed: boolean, handshakeFrames: number) => {
  const prefix = direction === "C->S" ? "c2s" : "s2c"
  return parsed.frames.filter((f) => f.direction === direction).map((f, i) => {
    if (i === 0) return { type: f.bytes[4]!, body: f.bytes.subarray(5) }
    const inHandshake = i <= handshakeFrames
    const [k, iv, sequence] = inHandshake
      ? [key(parsed, `${prefix}_handshake_key`), key(parsed, `${prefix}_handshake_iv`), i - 1]
      : [key(parsed, `${prefix}_key_0`), key(parsed, `${prefix}_iv_0`), i - 1 - handshakeFrames]
    if (!sealed) return { type: f.bytes[4]!, body: verifyTagged(f.bytes, k, iv, sequence) }
    expect(f.bytes[4]).toBe(0x17)
    const inner = open(f.bytes, k, iv, sequence)
    return { type: inner[0]!, body: inner.subarray(1) }
  })
}

const sha512 = (...parts: ReadonlyArray<Uint8Array>) => {
  const hash = NodeCrypto.createHash("sha512")
  for (const part of parts) hash.update(part)
  return new Uint8Array(hash.digest())
}
/** The draft's prepend_len (LEB128 length) and lv_cat, written out again from draft-irtf-cfrg-cpace. */
const prependLen = (data: Uint8Array) => {
  const length: Array<number> = []
  let n = data.length
  do {
    length.push(n < 128 ? n : (n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  } while (n > 0)
  return Buffer.concat([Buffer.from(length), data])
}
const lvCat = (...parts: ReadonlyArray<Uint8Array>) => Buffer.concat(parts.map(prependLen))
const littleEndian = (bytes: Uint8Array) => {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!)
  return n
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
        expect(hex(clientHello!.bytes.subarray(5 + 6 + 32, 5 + 6 + 32 + 133))).toBe(hex(clientEcdh.getPublicKey()))
        expect(hex(serverHello!.bytes.subarray(5 + 6 + 32, 5 + 6 + 32 + 133))).toBe(hex(serverEcdh.getPublicKey()))
        expect(hex(clientEcdh.computeSecret(serverEcdh.getPublicKey()))).toBe(hex(shared))
        const prk = hmac(h1, shared)
        expect(hex(prk)).toBe(hex(key(parsed, "prk")))
        for (const [name, label] of [
          ["c2s_handshake_secret", "c2s handshake"],
          ["s2c_handshake_secret", "s2c handshake"],
          ["derived", "derived"]
        ] as const) {
          expect(hex(expand(prk, label, 32)), name).toBe(hex(key(parsed, name)))
        }

        // §5 CPace (draft-irtf-cfrg-cpace, CPACE-RISTR255-SHA512): the group work with @noble/curves'
        // ristretto255, every hash with node:crypto. The generator from the password, CI and sid (the
        // client's nonce); the shares from the published scalars; K and ISK from them.
        const clientBody = clientHello!.bytes.subarray(5)
        const serverBody = serverHello!.bytes.subarray(5)
        const sid = clientBody.subarray(6, 6 + 32)
        expect(hex(sid)).toBe(hex(key(parsed, "cpace_sid")))
        const ci = lvCat(Buffer.from("cvg4 CPACE-RISTR255-SHA512"), Buffer.from("client"), Buffer.from("server"))
        const dsi = Buffer.from("CPaceRistretto255")
        const password = Buffer.from(scenario.password)
        const zpad = new Uint8Array(Math.max(0, 128 - 1 - prependLen(password).length - prependLen(dsi).length))
        const generator = ristretto255_hasher.deriveToCurve!(sha512(lvCat(dsi, password, zpad, ci, sid)))
        expect(hex(generator.toBytes())).toBe(hex(key(parsed, "cpace_generator")))
        const scalar = (name: string) => {
          const bytes = Uint8Array.from(key(parsed, name))
          bytes[31] = bytes[31]! & 0x0f
          return littleEndian(bytes)
        }
        const ya = generator.multiply(scalar("cpace_ya_random"))
        const yb = generator.multiply(scalar("cpace_yb_random"))
        // Each share is the last 32 bytes of its hello; the rest of the hello is its associated data.
        expect(hex(clientBody.subarray(171))).toBe(hex(ya.toBytes()))
        expect(hex(serverBody.subarray(171))).toBe(hex(yb.toBytes()))
        expect(hex(ya.toBytes())).toBe(hex(key(parsed, "cpace_ya")))
        expect(hex(yb.toBytes())).toBe(hex(key(parsed, "cpace_yb")))
        const k = yb.multiply(scalar("cpace_ya_random")).toBytes()
        expect(hex(k)).toBe(hex(ya.multiply(scalar("cpace_yb_random")).toBytes()))
        expect(hex(k)).toBe(hex(key(parsed, "cpace_k")))
        const transcript = Buffer.concat([lvCat(ya.toBytes(), clientBody.subarray(0, 171)), lvCat(yb.toBytes(), serverBody.subarray(0, 171))])
        const isk = sha512(lvCat(Buffer.from("CPaceRistretto255_ISK"), sid, k), transcript)
        expect(hex(isk)).toBe(hex(key(parsed, "cpace_isk")))

        // §4.2, second stage: ISK into the master secret.
        const master = hmac(key(parsed, "derived"), isk)
        expect(hex(master)).toBe(hex(key(parsed, "master")))
        for (const [name, label] of [
          ["c2s_secret_0", "c2s traffic"],
          ["s2c_secret_0", "s2c traffic"],
          ["server_finished_key", "s finished"],
          ["client_finished_key", "c finished"]
        ] as const) {
          expect(hex(expand(master, label, 32)), name).toBe(hex(key(parsed, name)))
        }
        // §4.3
        for (const dir of ["c2s", "s2c"] as const) {
          for (const [secret, k, iv] of [[`${dir}_secret_0`, `${dir}_key_0`, `${dir}_iv_0`], [`${dir}_handshake_secret`, `${dir}_handshake_key`, `${dir}_handshake_iv`]]) {
            expect(hex(expand(key(parsed, secret!), "key", 32))).toBe(hex(key(parsed, k!)))
            expect(hex(expand(key(parsed, secret!), "iv", 12))).toBe(hex(key(parsed, iv!)))
          }
        }

        // §3.1, §3.2: the capability bits (§4.1): the client holds a password and, when it pins a key,
        // requires one; the server requires a password and, in scenario A, proves a key.
        const identity = scenario.identity
        expect(clientHello!.bytes[5 + 5]).toBe(0x01 | (identity ? 0x02 : 0))
        expect(serverHello!.bytes[5 + 5]).toBe(0x01 | (identity ? 0x02 : 0))

        // Wire order of PROTOCOL.md §3 and §7.1, then the contents of each message. SERVER_IDENTITY
        // (§3.7) comes between the ServerHello and SERVER_FINISHED when the server has a key.
        const fromServer = identity ? ["S->C", "S->C", "S->C"] : ["S->C", "S->C"]
        expect(parsed.frames.map((f) => f.direction)).toEqual(["C->S", ...fromServer, "C->S", "S->C", "C->S", "S->C", "C->S", "C->S", "S->C"])
        const toServer = messages(parsed, "C->S", sealed, 1)
        const allToClient = messages(parsed, "S->C", sealed, identity ? 3 : 2)
        expect(allToClient.map((m) => m.type)).toEqual(identity ? [0x02, 0x08, 0x03, 0x05, 0x16, 0x21] : [0x02, 0x03, 0x05, 0x16, 0x21])
        const identityMessage = identity ? allToClient[1] : undefined
        const toClient = identity ? [allToClient[0]!, ...allToClient.slice(2)] : allToClient
        expect(toServer.map((m) => m.type)).toEqual([0x01, 0x04, 0x18, 0x1b, 0x21])

        // §3.7: the identity key is the published one, and its signature over the context string and H1
        // verifies with node:crypto's Ed25519 alone.
        if (identityMessage !== undefined) {
          const seed = key(parsed, "identity_private")
          const privateKey = NodeCrypto.createPrivateKey({
            key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]),
            format: "der",
            type: "pkcs8"
          })
          const publicKey = NodeCrypto.createPublicKey(privateKey)
          const rawPublic = publicKey.export({ format: "der", type: "spki" }).subarray(-32)
          expect(hex(rawPublic)).toBe(hex(key(parsed, "identity_public")))
          expect(hex(identityMessage.body)).toBe(hex(key(parsed, "identity_public")) + hex(key(parsed, "identity_signature")))
          const signed = Buffer.concat([Buffer.from("cvg-core v4 server identity\u0000"), h1])
          expect(NodeCrypto.verify(null, signed, publicKey, key(parsed, "identity_signature"))).toBe(true)
          // Ed25519 is deterministic: the published private key makes exactly the published signature.
          expect(hex(NodeCrypto.sign(null, signed, privateKey))).toBe(hex(key(parsed, "identity_signature")))
        }
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
        const identityPart = identityMessage === undefined ? [] : [plain(identityMessage)]
        const hi = sha(clientHello!.bytes, serverHello!.bytes, ...identityPart)
        expect(hex(hi)).toBe(hex(key(parsed, "transcript_hash_hi")))
        expect(hex(toClient[1]!.body)).toBe(hex(key(parsed, "server_finished_mac")))
        expect(hex(toClient[1]!.body)).toBe(hex(hmac(key(parsed, "server_finished_key"), hi)))
        expect(hex(toServer[1]!.body)).toBe(hex(key(parsed, "client_finished_mac")))
        // §3.5: SERVER_ACCEPT is empty; the password was proven by the finished MACs.
        expect(toClient[2]!.body.length).toBe(0)
        const h2 = sha(clientHello!.bytes, serverHello!.bytes, ...identityPart, plain(toClient[1]!))
        expect(hex(h2)).toBe(hex(key(parsed, "transcript_hash_h2")))
        expect(hex(hmac(key(parsed, "client_finished_key"), h2))).toBe(hex(key(parsed, "client_finished_mac")))
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
