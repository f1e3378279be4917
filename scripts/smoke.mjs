#!/usr/bin/env node
/**
 * The consumer smoke test, the last step of `npm test`: the package as a user gets it.
 *
 * It packs the library (`npm pack`, whose `prepack` builds dist/), installs the tarball and the peers
 * at the versions README.md's Install section names into a fresh project in the OS temp directory,
 * and checks, one line each:
 *   (a) a plain `node` ESM script imports connect, serve and Packet and runs an encrypted,
 *       password-authenticated round trip over loopback;
 *   (b) a strict NodeNext TypeScript consumer, and every README snippet (test/support/readme/),
 *       type-check against the shipped .d.ts alone (no file of the repository is read);
 *   (c) what `require("cvg-core")` from CommonJS does on this Node.js, which README.md explains;
 *   (d) the `cvg` bin runs from the installed package (dist/, no src/ and no tsx there): `--help`,
 *       and `bench`, which says the package does not ship the bench.
 *
 * The install is offline: the temporary project gets a lock file cut from this repository's
 * package-lock.json, so `npm ci --offline` finds every tarball in the npm cache that `npm ci` filled.
 */
import { spawnSync } from "node:child_process"
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..")
// @effect/rpc is an optional peer (only cvg-core/rpc needs it); installed here so that (b) checks that subpath.
const PEERS = ["effect", "@effect/platform", "@effect/platform-node", "@effect/rpc"]
const TIME_LIMIT_MS = 60_000

/** Runs a command; returns its result, never throws. */
const run = (command, args, cwd) => {
  const result = spawnSync(command, args, { cwd, encoding: "utf8", timeout: TIME_LIMIT_MS, shell: process.platform === "win32" })
  return { status: result.status, stdout: result.stdout ?? "", stderr: result.stderr ?? "", error: result.error }
}

/** Runs a command that must succeed; stops the smoke test with its output otherwise. */
const must = (what, command, args, cwd) => {
  const result = run(command, args, cwd)
  if (result.status !== 0) fail(`${what}: \`${command} ${args.join(" ")}\` exited ${result.status ?? result.error}`, result.stdout + result.stderr)
  return result.stdout
}

let failures = 0
const fail = (line, detail = "") => {
  console.log(line)
  if (detail !== "") console.log(detail.trimEnd().replace(/^/gm, "    "))
  throw new SmokeFailure(line)
}
class SmokeFailure extends Error {}

/** One check: prints `smoke (x) what: ok` or the reason it failed, and goes on with the next. */
const check = (label, body) => {
  try {
    const note = body()
    console.log(`smoke ${label}: ok${note ? ` (${note})` : ""}`)
  } catch (error) {
    failures++
    if (!(error instanceof SmokeFailure)) console.log(`smoke ${label}: FAILED\n    ${String(error?.stack ?? error)}`)
  }
}

/** The peer versions README.md's Install section names, which must be the ones this repository locks. */
const readmePeerVersions = (lock) => {
  const readme = readFileSync(join(repo, "README.md"), "utf8")
  const section = /^## Install\n([\s\S]*?)^## /m.exec(readme)?.[1]
  if (section === undefined) fail("smoke: README.md has no \"## Install\" section")
  const versions = {}
  for (const name of [...PEERS, "@types/node"]) {
    const escaped = name.replace(/[/.]/g, "\\$&")
    const named = new RegExp(`\`${escaped}@(\\d+\\.\\d+\\.\\d+)\``).exec(section)?.[1]
    const locked = lock.packages[`node_modules/${name}`]?.version
    if (named === undefined) fail(`smoke: README.md's Install section names no tested version for ${name} (\`${name}@x.y.z\`)`)
    if (named !== locked) fail(`smoke: README.md names ${name}@${named}, package-lock.json has ${locked}`)
    versions[name] = named
  }
  return versions
}

/**
 * A package-lock.json for the consumer: the root's dependencies and everything they need, copied
 * from this repository's lock (versions and integrity), so that nothing has to be resolved online.
 */
const consumerLock = (lock, dependencies, tarball) => {
  const packages = {
    "": { name: "cvg-core-consumer", dependencies },
    "node_modules/cvg-core": {
      version: tarball.version,
      resolved: `file:${tarball.filename}`,
      integrity: tarball.integrity,
      license: lock.packages[""].license,
      dependencies: lock.packages[""].dependencies,
      peerDependencies: lock.packages[""].peerDependencies,
      bin: lock.packages[""].bin
    }
  }
  const locate = (from, name) => {
    for (let base = from; ; base = base.replace(/\/?node_modules\/(@[^/]+\/)?[^/]+$/, "")) {
      const path = `${base === "" ? "" : `${base}/`}node_modules/${name}`
      if (lock.packages[path] !== undefined) return path
      if (base === "") return undefined
    }
  }
  const queue = [
    ...Object.keys(dependencies).filter((name) => name !== "cvg-core").map((name) => ["", name, false]),
    // cvg-core's own dependencies (msgpackr, and @effect/cli for the bin), found where the root has them.
    ...Object.keys(lock.packages[""].dependencies ?? {}).map((name) => ["node_modules/cvg-core", name, false])
  ]
  while (queue.length > 0) {
    const [from, name, optional] = queue.shift()
    const path = locate(from, name)
    if (path === undefined) {
      if (optional) continue
      fail(`smoke: ${name} (needed by ${from || "the consumer"}) is not in package-lock.json`)
    }
    if (packages[path] !== undefined) continue
    const { dev: _dev, devOptional: _devOptional, ...entry } = lock.packages[path]
    packages[path] = entry
    const optionalPeers = entry.peerDependenciesMeta ?? {}
    for (const dep of Object.keys(entry.dependencies ?? {})) queue.push([path, dep, false])
    for (const dep of Object.keys(entry.optionalDependencies ?? {})) queue.push([path, dep, true])
    for (const dep of Object.keys(entry.peerDependencies ?? {})) queue.push([path, dep, optionalPeers[dep]?.optional === true])
  }
  return { name: "cvg-core-consumer", lockfileVersion: 3, requires: true, packages }
}

// --- the consumer's files ----------------------------------------------------------------------

/** An encrypted, password-authenticated echo over loopback; `imports` brings connect, serve, Packet, PacketType, Effect... */
const roundTrip = (imports) => `${imports}

const program = Effect.scoped(Effect.gen(function* () {
  const listening = yield* Deferred.make()
  const server = yield* Effect.forkScoped(serve(
    { port: 0, password: "smoke", onListen: (address) => Deferred.succeed(listening, address.port) },
    (session) => session.serve((packet) =>
      Effect.succeed(new Packet({ id: packet.id, type: PacketType.RESPONSE, payload: packet.payload })))
  ))
  const port = yield* Effect.raceFirst(Deferred.await(listening), Fiber.join(server))
  const session = yield* connect({ port, password: "smoke" })
  const payload = new TextEncoder().encode("ping")
  const reply = yield* session.request(new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload }), { expect: PacketType.RESPONSE })
  yield* session.close
  return { text: new TextDecoder().decode(reply.payload), info: session.info }
}))

Effect.runPromise(Effect.timeoutFail(program, { duration: "20 seconds", onTimeout: () => new Error("timed out") })).then(
  ({ text, info }) => {
    if (text !== "ping" || info.encrypted !== true || info.passwordAuthenticated !== true) {
      console.error("unexpected round trip", JSON.stringify({ text, encrypted: info.encrypted, passwordAuthenticated: info.passwordAuthenticated }))
      process.exit(1)
    }
    console.log(info.suite)
  },
  (error) => {
    console.error(String(error))
    process.exit(1)
  }
)
`

const ESM_ROUND_TRIP = roundTrip(`import { Deferred, Effect, Fiber } from "effect"
import { connect, Packet, PacketType, serve } from "cvg-core"`)

/** CommonJS: loading an ES module with `require` is what is tested; a failure prints its code and message. */
const CJS_ROUND_TRIP = roundTrip(`const { Deferred, Effect, Fiber } = require("effect")
let cvg
try {
  cvg = require("cvg-core")
} catch (error) {
  console.log("require failed: " + error.code + ": " + String(error.message).split("\\n")[0])
  process.exit(0)
}
const { connect, Packet, PacketType, serve } = cvg`)

const TS_CONSUMER = `
import type * as Socket from "@effect/platform/Socket"
import type { RpcClient, RpcSerialization, RpcServer } from "@effect/rpc"
import { Effect, type Layer, type Scope } from "effect"
import { type Crypto, connect, connectScoped, type ConnectError, type InvalidArgument, ListenFailed, Packet, PacketType, type RequestError, serve, type ServeError, type Session, SessionSocket, type UnexpectedPacket } from "cvg-core"
import { layerClientProtocol, layerServerProtocol } from "cvg-core/rpc"
import { DeterministicCrypto, MemorySocket } from "cvg-core/testing"

const echo = (session: Session) =>
  session.serve((packet) => Effect.succeed(new Packet({ id: packet.id, type: PacketType.RESPONSE, payload: packet.payload })))

export const server: Effect.Effect<never, ServeError> = serve({ port: 0, password: "pw" }, echo).pipe(
  Effect.tapError((error) => error instanceof ListenFailed ? Effect.logError(error.code, error.host, error.port) : Effect.void)
)

export const client: Effect.Effect<Packet, ConnectError | RequestError | UnexpectedPacket> = Effect.gen(function*() {
  const session = yield* connect({ port: 5000, password: "pw", encryption: "required" })
  return yield* session.request(new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload: new Uint8Array(1) }))
}).pipe(Effect.tapErrorTag("ConnectFailed", (error) => Effect.logError(\`\${error.host}:\${error.port} \${error.code}\`)))

export const pair = MemorySocket.makePair({ clientToServer: { split: true } })
export const crypto: Layer.Layer<Crypto> = DeterministicCrypto.layer("seed")

export const rpcClient: Layer.Layer<RpcClient.Protocol, ConnectError, RpcSerialization.RpcSerialization> =
  layerClientProtocol({ port: 5000, password: "pw", packetType: PacketType.PACKET })
export const rpcServer: Layer.Layer<RpcServer.Protocol, ListenFailed | InvalidArgument, RpcSerialization.RpcSerialization> =
  layerServerProtocol({ port: 0, password: "pw" })
export const socket: Effect.Effect<Socket.Socket, ConnectError, Scope.Scope> =
  SessionSocket.reconnecting(connectScoped({ port: 5000, password: "pw" }))
`

// --- the run ------------------------------------------------------------------------------------

const started = Date.now()
const work = mkdtempSync(join(tmpdir(), "cvg-core-smoke-"))
const app = join(work, "app")
try {
  const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8"))
  const versions = readmePeerVersions(lock)

  const [tarball] = JSON.parse(must("pack", "npm", ["pack", "--json", "--pack-destination", work], repo))
  const shipped = tarball.files.map((file) => file.path)
  const strays = shipped.filter((path) => !/^(dist\/|bin\/cvg\.mjs$|docs\/[^/]+\.md$|README\.md$|PROTOCOL\.md$|LICENSE$|package\.json$)/.test(path))
  if (strays.length > 0) fail(`smoke: the tarball ships files outside dist/ and the docs: ${strays.join(", ")}`)

  mkdirSync(app)
  cpSync(join(work, tarball.filename), join(app, tarball.filename))
  const dependencies = { "cvg-core": `file:${tarball.filename}`, ...versions }
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "cvg-core-consumer", private: true, type: "module", dependencies }, null, 2))
  writeFileSync(join(app, "package-lock.json"), JSON.stringify(consumerLock(lock, dependencies, tarball), null, 2))
  must("install", "npm", ["ci", "--offline", "--no-audit", "--no-fund", "--ignore-scripts"], app)
  console.log(`smoke: packed ${tarball.filename} (${shipped.length} files), installed with ${Object.entries(versions).map(([n, v]) => `${n}@${v}`).join(" ")} in ${work}`)

  check("(a) plain node ESM round trip (encrypted, password, loopback)", () => {
    writeFileSync(join(app, "round-trip.mjs"), ESM_ROUND_TRIP)
    return must("(a)", process.execPath, ["round-trip.mjs"], app).trim()
  })

  check("(b) strict NodeNext TypeScript consumer and the README snippets type-check against the shipped .d.ts", () => {
    writeFileSync(join(app, "consumer.ts"), TS_CONSUMER)
    const snippets = join(repo, "test", "support", "readme")
    // Under their own names, in a folder of their own: a snippet may import another (`./greeter.js`).
    cpSync(snippets, join(app, "readme"), { recursive: true })
    writeFileSync(join(app, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        lib: ["ES2022"],
        types: ["node"],
        strict: true,
        erasableSyntaxOnly: true,
        verbatimModuleSyntax: true,
        noEmit: true
      },
      include: ["*.ts", "readme/*.ts"]
    }, null, 2))
    const tsc = join(repo, "node_modules", "typescript", "bin", "tsc")
    const result = run(process.execPath, [tsc, "-p", "tsconfig.json", "--listFiles", "--pretty", "false"], app)
    const lines = result.stdout.split("\n")
    const listed = lines.filter((line) => line.startsWith("/"))
    // `skipLibCheck` is off so that cvg-core's own declarations are checked; the Effect platform
    // packages' declarations have errors of their own without DOM and ws types (every consumer
    // sets `skipLibCheck` for those), so only diagnostics in the consumer's files and in cvg-core count.
    const diagnostics = lines.filter((line) => /^\S.*\(\d+,\d+\): error TS/.test(line))
    const ours = diagnostics.filter((line) => !line.startsWith("node_modules/") || line.startsWith("node_modules/cvg-core/"))
    if (ours.length > 0 || (result.status !== 0 && diagnostics.length === 0)) {
      fail("smoke (b): the consumer does not type-check", (ours.length > 0 ? ours.join("\n") : result.stdout) + result.stderr)
    }
    const foreign = diagnostics.length - ours.length
    const typescriptDir = join(repo, "node_modules", "typescript")
    const fromRepo = listed.filter((file) =>
      !relative(repo, file).startsWith("..") && !file.startsWith(typescriptDir + sep) && !file.includes("/node_modules/@typescript/")
    )
    if (fromRepo.length > 0) fail("smoke (b): the consumer's type-check read files of the repository", fromRepo.join("\n"))
    const declarations = listed.filter((file) => file.includes("/node_modules/cvg-core/")).length
    if (declarations === 0) fail("smoke (b): the consumer's type-check read no declaration of cvg-core")
    return `${declarations} cvg-core declaration files, ${readdirSync(snippets).length} README snippets` +
      (foreign > 0 ? `; ${foreign} errors inside other packages' declarations ignored` : "")
  })

  check("(c) CommonJS require(\"cvg-core\")", () => {
    writeFileSync(join(app, "round-trip.cjs"), CJS_ROUND_TRIP)
    const result = run(process.execPath, ["round-trip.cjs"], app)
    const out = result.stdout.trim()
    if (result.status !== 0) fail(`smoke (c) CommonJS require("cvg-core"): the round trip failed`, result.stdout + result.stderr)
    const warning = result.stderr.includes("ExperimentalWarning") ? ", with an ExperimentalWarning" : ""
    return out.startsWith("require failed")
      ? `Node.js ${process.version}: ${out}`
      : `Node.js ${process.version} loads it with require(esm)${warning}; round trip ${out}`
  })

  check("(d) the cvg bin from the installed package", () => {
    const cvg = join(app, "node_modules", ".bin", "cvg")
    const help = run(cvg, ["--help"], app)
    if (help.status !== 0 || !help.stdout.includes("- send ")) fail("smoke (d): `cvg --help` failed", help.stdout + help.stderr)
    const bench = run(cvg, ["bench", "--quick"], app)
    const expected = "cvg: the bench is not shipped with the installed package"
    if (bench.status !== 1 || !bench.stderr.startsWith(expected) || bench.stderr.trim().includes("\n")) {
      fail(`smoke (d): \`cvg bench\` should exit 1 with one line "${expected}..."`, `exit ${bench.status}\n${bench.stdout}${bench.stderr}`)
    }
    return `cvg ${must("(d)", cvg, ["--version"], app).trim()} runs dist/cli/main.js`
  })
} catch (error) {
  failures++
  if (!(error instanceof SmokeFailure)) console.log(`smoke: FAILED\n    ${String(error?.stack ?? error)}`)
} finally {
  // CVG_SMOKE_KEEP=1 leaves the consumer project in place, to look into a failure.
  if (process.env["CVG_SMOKE_KEEP"] === undefined) rmSync(work, { recursive: true, force: true })
}
console.log(`smoke: ${failures === 0 ? "all checks passed" : `${failures} failed`} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
process.exit(failures === 0 ? 0 : 1)
