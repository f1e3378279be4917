/**
 * The identity files (README "Server identity"): the known-hosts file of trust on first use, and
 * identity keys saved to and loaded from files and the environment.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createPrivateKey, generateKeyPairSync } from "node:crypto"
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach } from "vitest"
import { generateIdentityKey } from "../src/identity/IdentityKey.js"
import { identityKeyFromEnv, loadIdentityKey, saveIdentityKey } from "../src/identity/KeyFile.js"
import { makeKnownHosts } from "../src/identity/KnownHosts.js"

const dirs: Array<string> = []
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "cvg-identity-"))
  dirs.push(dir)
  return dir
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const fp = (digit: string) => `sha256:${digit.repeat(64)}`
const posix = process.platform !== "win32"

describe("known hosts", () => {
  it.effect("knows nothing before the file exists, then remembers, appends and creates the file private", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "known_hosts")
      const hosts = makeKnownHosts(path)
      expect(yield* hosts.lookup("example.org:4000")).toBeUndefined()
      yield* hosts.remember("Example.org:4000", fp("a"))
      yield* hosts.remember("example.org:4000", fp("a"))
      yield* hosts.remember("[::1]:4000", fp("b"))
      expect(yield* hosts.lookup("EXAMPLE.ORG:4000")).toBe(fp("a"))
      expect(yield* hosts.lookup("[::1]:4000")).toBe(fp("b"))
      expect(yield* hosts.lookup("example.org:4001")).toBeUndefined()
      expect(readFileSync(path, "utf8")).toBe(`example.org:4000 ${fp("a")}\n[::1]:4000 ${fp("b")}\n`)
      if (posix) expect(statSync(path).mode & 0o777).toBe(0o600)
    }))

  it.effect("never replaces a known key: Exists", () =>
    Effect.gen(function*() {
      const hosts = makeKnownHosts(join(tempDir(), "known_hosts"))
      yield* hosts.remember("h:1", fp("a"))
      const error = yield* Effect.flip(hosts.remember("h:1", fp("b")))
      expect(error._tag).toBe("IdentityKeyError")
      expect(error.reason).toBe("Exists")
      expect(yield* hosts.lookup("h:1")).toBe(fp("a"))
    }))

  it.effect("keeps comments and a hand-written last line without a newline", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "known_hosts")
      writeFileSync(path, `# servers\n\nh:1 ${fp("c")}`, { mode: 0o600 })
      const hosts = makeKnownHosts(path)
      yield* hosts.remember("h:2", fp("d"))
      expect(readFileSync(path, "utf8")).toBe(`# servers\n\nh:1 ${fp("c")}\nh:2 ${fp("d")}\n`)
      expect(yield* hosts.lookup("h:1")).toBe(fp("c"))
    }))

  it.effect("refuses malformed lines, naming the line, and a peer listed with two keys", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const cases: Array<[string, RegExp]> = [
        [`h:1 ${fp("a")} extra\n`, /line 1/],
        [`h:1 sha256:ABC\n`, /line 1: expected sha256/],
        [`\nnot-a-peer ${fp("a")}\n`, /line 2: expected host:port/],
        [`h:1 ${fp("a")}\nh:1 ${fp("b")}\n`, /two different keys/]
      ]
      for (const [i, [text, detail]] of cases.entries()) {
        const path = join(dir, `hosts${i}`)
        writeFileSync(path, text, { mode: 0o600 })
        const error = yield* Effect.flip(makeKnownHosts(path).lookup("h:1"))
        expect(error.reason).toBe("Format")
        expect(error.detail).toMatch(detail)
      }
      const bad = yield* Effect.flip(makeKnownHosts(join(dir, "x")).remember("h:1", "md5:00"))
      expect(bad.reason).toBe("Format")
      const badPeer = yield* Effect.flip(makeKnownHosts(join(dir, "x")).lookup("no port"))
      expect(badPeer.reason).toBe("Format")
    }))

  it.effect.skipIf(!posix)("refuses a file other users may write: Permissions", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "known_hosts")
      writeFileSync(path, `h:1 ${fp("a")}\n`)
      chmodSync(path, 0o666)
      const error = yield* Effect.flip(makeKnownHosts(path).lookup("h:1"))
      expect(error.reason).toBe("Permissions")
      expect(error.message).toMatch(/mode 666/)
    }))

  it.effect("a directory in its place is Format, not a crash", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(makeKnownHosts(tempDir()).lookup("h:1"))
      expect(error.reason).toBe("Format")
    }))
})

describe("identity key files", () => {
  it.effect("a saved key loads back with the same fingerprint, from the file and from the environment", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "server.key")
      const key = yield* generateIdentityKey
      yield* saveIdentityKey(key, path)
      if (posix) expect(statSync(path).mode & 0o777).toBe(0o600)
      const loaded = yield* loadIdentityKey(path)
      expect(loaded.fingerprint).toBe(key.fingerprint)
      expect(loaded.publicKey).toEqual(key.publicKey)
      const pem = readFileSync(path, "utf8")
      const der = createPrivateKey(pem).export({ format: "der", type: "pkcs8" }).toString("base64")
      for (const value of [pem, der]) {
        process.env["CVG_TEST_IDENTITY"] = value
        expect((yield* identityKeyFromEnv("CVG_TEST_IDENTITY")).fingerprint).toBe(key.fingerprint)
      }
      delete process.env["CVG_TEST_IDENTITY"]
    }))

  it.effect("never overwrites a file: Exists", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "server.key")
      writeFileSync(path, "precious")
      const error = yield* Effect.flip(saveIdentityKey(yield* generateIdentityKey, path))
      expect(error.reason).toBe("Exists")
      expect(readFileSync(path, "utf8")).toBe("precious")
    }))

  it.effect.skipIf(!posix)("refuses a key file others may read: Permissions", () =>
    Effect.gen(function*() {
      const path = join(tempDir(), "server.key")
      yield* saveIdentityKey(yield* generateIdentityKey, path)
      chmodSync(path, 0o640)
      const error = yield* Effect.flip(loadIdentityKey(path))
      expect(error.reason).toBe("Permissions")
      expect(error.message).toMatch(/mode 640/)
    }))

  it.effect("missing, malformed and wrong-type keys are typed, and never quote the key", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      expect((yield* Effect.flip(loadIdentityKey(join(dir, "absent")))).reason).toBe("NotFound")
      const garbage = join(dir, "garbage")
      writeFileSync(garbage, "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n", { mode: 0o600 })
      const format = yield* Effect.flip(loadIdentityKey(garbage))
      expect(format.reason).toBe("Format")
      expect(format.message).not.toMatch(/not base64 at all/)
      const p256 = join(dir, "p256")
      const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" })
      writeFileSync(p256, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 })
      const wrongType = yield* Effect.flip(loadIdentityKey(p256))
      expect(wrongType.reason).toBe("Format")
      expect(wrongType.detail).toMatch(/ed25519/)
      expect((yield* Effect.flip(identityKeyFromEnv("CVG_TEST_UNSET_VARIABLE"))).reason).toBe("NotFound")
      expect((yield* Effect.flip(loadIdentityKey(dir))).reason).toBe("Format")
      // Any other file system failure is Io: here ENOTDIR, a path through a regular file.
      const io = yield* Effect.flip(loadIdentityKey(join(garbage, "key")))
      expect(io.reason).toBe("Io")
      expect(io.detail).toMatch(/ENOTDIR/)
    }))
})
