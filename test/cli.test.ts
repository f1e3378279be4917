/**
 * The `cvg` command line, driven as a user drives it: subprocesses of bin/cvg.mjs (the package's bin,
 * which runs src/cli/ in a clone) over loopback, and `npx cvg` once. Every subprocess is bounded by a
 * timeout and killed when its test ends; nothing here depends on how fast the machine is.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { createReadStream } from "node:fs"
import { chmod, mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import { freePort } from "./support/tcp.js"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Chunk, Effect, Option, Stream } from "effect"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { splitLines } from "../src/cli/connect.js"
import { EXIT_CODES, ExitCode } from "../src/cli/errors.js"
import { renderLine } from "../src/cli/progress.js"
import { unsafeName } from "../src/cli/transfer.js"

const root = join(import.meta.dirname, "..")
const bin = join(root, "bin", "cvg.mjs")

/** How long any one subprocess may run before it is killed and its test fails. */
const LIMIT_MS = 45_000

let work = ""
const live = new Set<ChildProcess>()

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "cvg-cli-test-"))
  await writeFile(join(work, "password"), "open sesame\n")
  await writeFile(join(work, "wrong-password"), "open barley\n")
})
afterEach(() => {
  for (const child of live) child.kill("SIGKILL")
  live.clear()
})
afterAll(async () => {
  await rm(work, { recursive: true, force: true })
})

interface Result {
  readonly code: number | null
  readonly stdout: Buffer
  readonly stderr: string
}

/** Runs `command args` to its end, with `input` on stdin, killed after LIMIT_MS. */
const runProcess = (command: string, args: ReadonlyArray<string>, options: { input?: string; env?: NodeJS.ProcessEnv } = {}) =>
  new Promise<Result>((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, env: { ...process.env, ...options.env }, stdio: ["pipe", "pipe", "pipe"] })
    live.add(child)
    const stdout: Array<Buffer> = []
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${command} ${args.join(" ")}: still running after ${LIMIT_MS} ms; stderr: ${stderr}`))
    }, LIMIT_MS)
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(timer)
      live.delete(child)
      resolve({ code, stdout: Buffer.concat(stdout), stderr })
    })
    child.stdin.on("error", () => undefined)
    child.stdin.end(options.input ?? "")
  })

const cvg = (args: ReadonlyArray<string>, options: { input?: string; env?: NodeJS.ProcessEnv } = {}) =>
  runProcess(process.execPath, [bin, ...args], options)

interface Server {
  readonly port: number
  readonly child: ChildProcess
  readonly stderr: () => string
  readonly stdout: () => string
  readonly exited: Promise<number | null>
}

/** Starts a listening command (`serve`, `receive`) on port 0 and waits for the line naming its port. */
const startServer = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}) =>
  new Promise<Server>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args, "--port", "0"], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    live.add(child)
    let stderr = ""
    let stdout = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    const exited = new Promise<number | null>((done) => child.on("close", (code) => done(code)))
    const timer = setTimeout(() => reject(new Error(`cvg ${args.join(" ")} did not listen within ${LIMIT_MS} ms: ${stderr}`)), LIMIT_MS)
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
      const match = /^cvg: listening on 127\.0\.0\.1:(\d+)$/m.exec(stderr)
      if (match !== null) {
        clearTimeout(timer)
        resolve({ port: Number(match[1]), child, stderr: () => stderr, stdout: () => stdout, exited })
      }
    })
    void exited.then((code) => reject(new Error(`cvg ${args.join(" ")} exited with ${code} before listening: ${stderr}`)))
  })

const lines = (text: string) => text.split("\n").filter((line) => line !== "")

const sha256File = (path: string) =>
  new Promise<string>((resolve, reject) => {
    const hash = createHash("sha256")
    createReadStream(path).on("data", (chunk) => hash.update(chunk)).on("error", reject).on("end", () => resolve(hash.digest("hex")))
  })

/** Writes `bytes` random bytes to `path` and returns their SHA-256. */
const randomFile = async (path: string, bytes: number) => {
  const hash = createHash("sha256")
  const file = await open(path, "w")
  try {
    for (let left = bytes; left > 0; left -= 1 << 20) {
      const chunk = randomBytes(Math.min(left, 1 << 20))
      hash.update(chunk)
      await file.write(chunk)
    }
  } finally {
    await file.close()
  }
  return hash.digest("hex")
}

/** Quotes an argument for /bin/sh. */
const shellQuote = (arg: string) => `'${arg.replace(/'/g, `'\\''`)}'`

/**
 * Runs a command with a pseudo-terminal as its stdin, stdout and stderr, the way a person's shell
 * does: util-linux `script` (in every Debian), or else Python's `pty` module.
 */
const runInTerminal = (argv: ReadonlyArray<string>, env: NodeJS.ProcessEnv) => {
  const hasScript = spawnSync("script", ["--version"], { stdio: "ignore" }).status === 0
  return hasScript
    ? runProcess("script", ["-qfec", argv.map(shellQuote).join(" "), "/dev/null"], { env })
    : runProcess("python3", ["-c", "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)", ...argv], { env })
}

describe("cvg: help and refusals", () => {
  it("--help names every command, how to give a password, and the exit codes", async () => {
    const help = await cvg(["--help"])
    expect(help.code).toBe(0)
    const text = help.stdout.toString()
    for (const command of ["serve", "connect", "send", "receive", "keygen", "bench"]) expect(text).toContain(`- ${command} `)
    expect(text).toContain("--password-file PATH")
    expect(text).toContain("--password-env NAME")
    expect(text).toContain("--password is refused")
    for (const [code, meaning] of EXIT_CODES) expect(text).toContain(`${code.padStart(3)}  ${meaning}`)
    // Piped, the help has no terminal colours.
    expect(text).not.toContain("\u001b[")
  })

  it("--password is refused with exit 2 and one line, before anything connects", async () => {
    for (const args of [["connect", "127.0.0.1:9", "--password", "hunter2"], ["serve", "--port", "0", "--password=hunter2"]]) {
      const result = await cvg(args)
      expect(result.code).toBe(ExitCode.usage)
      expect(lines(result.stderr)).toEqual([
        "cvg: --password is refused: a password on the command line is visible to other users and kept in shell history; use --password-file PATH or --password-env NAME"
      ])
      expect(result.stderr).not.toContain("hunter2")
    }
  })

  it("a usage error is one line and exit 2", async () => {
    const missing = await cvg(["send", "only-a-file"])
    expect(missing.code).toBe(ExitCode.usage)
    expect(lines(missing.stderr)).toEqual(["cvg: Missing argument <HOST:PORT> (see cvg --help)"])
  })

  it("keygen writes a private key file once and prints its fingerprint; --show prints it again", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cvg-keygen-"))
    try {
      const file = join(dir, "server.key")
      const made = await cvg(["keygen", file])
      expect(made.code).toBe(0)
      expect(made.stderr).toBe("")
      const fingerprint = made.stdout.toString().trim()
      expect(fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/)
      expect((await stat(file)).mode & 0o777).toBe(0o600)
      const shown = await cvg(["keygen", "--show", file])
      expect(shown.stdout.toString().trim()).toBe(fingerprint)
      const again = await cvg(["keygen", file])
      expect(again.code).toBe(ExitCode.file)
      expect(lines(again.stderr)).toEqual([expect.stringMatching(/^cvg: identity key error: Exists: .*server\.key: create: EEXIST$/)])
      await chmod(file, 0o644)
      const exposed = await cvg(["keygen", "--show", file])
      expect(exposed.code).toBe(ExitCode.file)
      expect(lines(exposed.stderr)).toEqual([expect.stringMatching(/Permissions: .*mode 644 lets other users read the private key/)])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("npx cvg runs the bin from a clone, without a build", async () => {
    const manifest: unknown = JSON.parse(await readFile(join(root, "package.json"), "utf8"))
    const version = typeof manifest === "object" && manifest !== null && "version" in manifest ? String(manifest.version) : ""
    const result = await runProcess("npx", ["--no-install", "cvg", "--version"])
    expect(result.stderr).toBe("")
    expect(result.stdout.toString().trim()).toBe(version)
    expect(result.code).toBe(0)
  })

  it("bench passes its arguments to the repository's bench, --help included", async () => {
    const result = await cvg(["bench", "--help"])
    expect(result.code).toBe(0)
    expect(result.stdout.toString()).toMatch(/^usage: npm run bench -- \[options\]\n +--quick /)
  })

  it("README.md's exit code table is the one --help prints", async () => {
    const readme = await readFile(join(root, "README.md"), "utf8")
    const table = /^### Exit codes\n([\s\S]*?)\n## /m.exec(readme)?.[1] ?? ""
    const rows = lines(table).filter((line) => /^\| `\w+` \|/.test(line)).map((line) => {
      const [, code = "", meaning = ""] = line.split("|").map((cell) => cell.trim())
      return [code.replace(/`/g, ""), meaning] as const
    })
    expect(rows).toEqual(EXIT_CODES.map(([code, meaning]) => [code, meaning]))
  })
})

describe("cvg serve and cvg connect", () => {
  it("connect pipes lines through an echo server; a wrong password exits 4 with one line", async () => {
    const server = await startServer(["serve", "--password-file", join(work, "password")])
    const address = `127.0.0.1:${server.port}`
    const input = "hello, cvg\nsecond line\n\nno newline at the end"
    const echoed = await cvg(["connect", address, "--password-env", "CVG_TEST_PASSWORD"], {
      input,
      env: { CVG_TEST_PASSWORD: "open sesame" }
    })
    expect(echoed.stderr).toBe("")
    expect(echoed.stdout.toString()).toBe(input)
    expect(echoed.code).toBe(0)

    const wrong = await cvg(["connect", address, "--password-file", join(work, "wrong-password")], { input: "hello\n" })
    expect(wrong.code).toBe(ExitCode.auth)
    // CPace (PROTOCOL.md §5): the client finds a wrong password itself, from SERVER_FINISHED.
    expect(lines(wrong.stderr)).toEqual(["cvg: authentication failed: WrongPassword"])
    expect(wrong.stdout.length).toBe(0)

    const none = await cvg(["connect", address], { input: "hello\n" })
    expect(none.code).toBe(ExitCode.auth)
    expect(lines(none.stderr)).toEqual(["cvg: authentication failed: MissingPassword"])

    // The server logged each refused connection as one line, and stops on SIGTERM.
    server.child.kill("SIGTERM")
    expect(await server.exited).toBe(ExitCode.interrupted)
    expect(lines(server.stderr()).filter((line) => line.includes("WrongPassword"))).toHaveLength(1)
    expect(lines(server.stderr()).every((line) => line.startsWith("cvg: "))).toBe(true)
  })

  it("serve --identity proves a key from cvg keygen: --server-key pins it, --known-hosts learns it, a wrong pin exits 4", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cvg-identity-"))
    try {
      const key = join(dir, "server.key")
      const fingerprint = (await cvg(["keygen", key])).stdout.toString().trim()
      const server = await startServer(["serve", "--identity", key])
      const address = `127.0.0.1:${server.port}`
      const pinned = await cvg(["connect", address, "--server-key", fingerprint], { input: "pinned\n" })
      expect(pinned.stderr).toBe("")
      expect(pinned.stdout.toString()).toBe("pinned\n")
      const known = join(dir, "known_hosts")
      const learned = await cvg(["connect", address, "--known-hosts", known], { input: "learned\n" })
      expect(learned.code).toBe(0)
      expect(await readFile(known, "utf8")).toBe(`${address} ${fingerprint}\n`)
      const other = `sha256:${"0".repeat(64)}`
      const wrong = await cvg(["connect", address, "--server-key", other], { input: "never sent\n" })
      expect(wrong.code).toBe(ExitCode.auth)
      expect(lines(wrong.stderr)).toEqual([`cvg: server key mismatch (pinned): expected ${other}, got ${fingerprint}`])
      expect(wrong.stdout.length).toBe(0)
      const malformed = await cvg(["connect", address, "--server-key", "md5:00"], { input: "" })
      expect(malformed.code).toBe(ExitCode.usage)
      server.child.kill("SIGTERM")
      expect(await server.exited).toBe(ExitCode.interrupted)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("connect into a reader that goes away (| head -1) stops quietly with exit 0", async () => {
    const server = await startServer(["serve"])
    const input = Array.from({ length: 20_000 }, (_, i) => `line ${i}`).join("\n") + "\n"
    // pipefail: the pipeline's status is cvg's, not head's.
    const piped = await runProcess("bash", ["-c", `set -o pipefail; "${process.execPath}" "${bin}" connect 127.0.0.1:${server.port} | head -1`], { input })
    expect(piped.stdout.toString()).toBe("line 0\n")
    expect(piped.stderr).toBe("")
    expect(piped.code).toBe(0)
  })

  it("serve --exec runs a command per line; a failing command fails the request with exit 8 and one line", async () => {
    const server = await startServer(["serve", "--exec", "tr a-z A-Z"])
    const address = `127.0.0.1:${server.port}`
    const upper = await cvg(["connect", address], { input: "shout\nthis\n" })
    expect(upper.stderr).toBe("")
    expect(upper.stdout.toString()).toBe("SHOUT\nTHIS\n")
    expect(upper.code).toBe(0)

    const failing = await startServer(["serve", "--exec", "exit 3"])
    const failed = await cvg(["connect", `127.0.0.1:${failing.port}`], { input: "anything\n" })
    expect(failed.code).toBe(ExitCode.refused)
    expect(lines(failed.stderr)).toEqual(["cvg: the peer could not answer: Failure: the command exited with code 3"])
  })

  it("serve --stdout prints what a client sends, in order, and answers with nothing", async () => {
    const server = await startServer(["serve", "--stdout"])
    const input = Array.from({ length: 200 }, (_, i) => `line ${i}\n`).join("")
    const result = await cvg(["connect", `127.0.0.1:${server.port}`], { input })
    expect(result.code).toBe(0)
    expect(result.stdout.length).toBe(0)
    server.child.kill("SIGTERM")
    expect(await server.exited).toBe(ExitCode.interrupted)
    expect(server.stdout()).toBe(input)
  })

  it("cannot connect: exit 3 and one line naming the address", async () => {
    const port = await freePort()
    const result = await cvg(["connect", `127.0.0.1:${port}`])
    expect(result.code).toBe(ExitCode.unreachable)
    expect(lines(result.stderr)).toEqual([`cvg: cannot connect to 127.0.0.1:${port}: ECONNREFUSED (nothing is listening there)`])
  })
})

describe("cvg send and cvg receive", () => {
  it("a 100 MiB file arrives with the same SHA-256, and neither side prints anything when piped", async () => {
    const source = join(work, "hundred.bin")
    const digest = await randomFile(source, 100 * 1024 * 1024)
    const out = join(work, "received")
    const receiver = await startServer(["receive", "--out", out, "--password-env", "CVG_TEST_PASSWORD"], { CVG_TEST_PASSWORD: "pw" })
    const sent = await cvg(["send", source, `127.0.0.1:${receiver.port}`, "--password-env", "CVG_TEST_PASSWORD"], {
      env: { CVG_TEST_PASSWORD: "pw" }
    })
    expect(sent.stderr).toBe("")
    expect(sent.stdout.length).toBe(0)
    expect(sent.code).toBe(0)
    // The receiver exits by itself after its one file, having printed only where it listens.
    expect(await receiver.exited).toBe(0)
    expect(lines(receiver.stderr())).toEqual([`cvg: listening on 127.0.0.1:${receiver.port}`])
    expect(await readdir(out)).toEqual(["hundred.bin"])
    expect(await sha256File(join(out, "hundred.bin"))).toBe(digest)
  })

  it("a file already in the folder is not overwritten: the sender exits 8, the receiver 9, one line each", async () => {
    const out = join(work, "existing")
    const source = join(work, "small.txt")
    await writeFile(source, "new content\n")
    await rm(out, { recursive: true, force: true })
    await mkdir(out)
    await writeFile(join(out, "small.txt"), "old content\n")
    const receiver = await startServer(["receive", "--out", out])
    const sent = await cvg(["send", source, `127.0.0.1:${receiver.port}`])
    expect(sent.code).toBe(ExitCode.refused)
    expect(lines(sent.stderr)).toEqual(["cvg: the peer could not answer: Failure: small.txt already exists at the receiver"])
    expect(await receiver.exited).toBe(ExitCode.file)
    expect(lines(receiver.stderr()).slice(1)).toEqual([`cvg: ${join(out, "small.txt")}: already exists: not overwritten`])
    expect(await readFile(join(out, "small.txt"), "utf8")).toBe("old content\n")
    expect(await readdir(out)).toEqual(["small.txt"])
  })

  it("on a terminal, send draws a progress bar (bytes, percentage, rate, ETA) redrawn with \\r", async () => {
    const source = join(work, "eight.bin")
    const digest = await randomFile(source, 8 * 1024 * 1024)
    const out = join(work, "tty")
    const receiver = await startServer(["receive", "--out", out])
    const sent = await runInTerminal([process.execPath, bin, "send", source, `127.0.0.1:${receiver.port}`], { COLUMNS: "100" })
    expect(sent.code).toBe(0)
    const screen = sent.stdout.toString()
    const drawings = screen.split("\r").map((part) => part.replace(/\u001b\[K/g, "").trim()).filter((part) => part.startsWith("send "))
    // At least the first drawing and the last: a redraw in place.
    expect(drawings.length).toBeGreaterThanOrEqual(2)
    expect(drawings[0]).toMatch(/^send eight\.bin +0 B \/ 8\.0 MiB +0% \[\.+\] +[\d.]+ (B|KiB|MiB|GiB)\/s +ETA --:--$/)
    expect(drawings.at(-1)).toMatch(/^send eight\.bin +8\.0 MiB \/ 8\.0 MiB 100% \[#+\] +[\d.]+ (B|KiB|MiB|GiB)\/s +in \d+:\d\d$/)
    expect(await receiver.exited).toBe(0)
    expect(await sha256File(join(out, "eight.bin"))).toBe(digest)
  })
})

describe("cvg pieces", () => {
  it("names from the sender are plain names or refused", () => {
    for (const name of ["../etc/passwd", "a/b", "..", ".", "", "a\\b", "x\u0000y", "é".repeat(200)]) {
      expect(Option.isSome(unsafeName(name))).toBe(true)
    }
    for (const name of ["file.bin", ".hidden", "..double-dot-prefix", "名前.txt"]) expect(unsafeName(name)).toEqual(Option.none())
  })

  it("connect's lines keep their newline, are cut at the limit, and the rest comes last", async () => {
    const chunks = ["ab\ncd", "ef\n\n", "ghijklmn", "o"].map((text) => new TextEncoder().encode(text))
    const out = await Effect.runPromise(Stream.runCollect(splitLines<never>(4)(Stream.fromIterable(chunks))))
    expect(Chunk.toReadonlyArray(out).map((bytes) => new TextDecoder().decode(bytes))).toEqual(["ab\n", "cdef", "\n", "\n", "ghij", "klmn", "o"])
  })

  it("the progress line fits its width and keeps its layout", () => {
    const start = renderLine("send f", 0, 100 * 1024 * 1024, 0, 100)
    const middle = renderLine("send f", 40 * 1024 * 1024, 100 * 1024 * 1024, 2000, 100)
    expect(middle).toMatch(/40\.0 MiB \/ 100\.0 MiB  40% \[#+\.+\] +20\.0 MiB\/s +ETA 0:03/)
    expect(start.length).toBe(middle.length)
    expect(renderLine("send f", 1, 2, 1000, 30).length).toBeLessThanOrEqual(29)
  })
})
