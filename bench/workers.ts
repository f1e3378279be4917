/**
 * Worker processes as seen from the orchestrator: spawn, typed request/answer over IPC with a
 * deadline per request, and certain termination (every child is killed when main exits, however
 * it exits). Generic over the command set, so that `stress/` drives its own workers with it;
 * `child.ts` is the other end.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type { Reply } from "./child.js"
import type { Answers, Command } from "./protocol.js"

export interface WorkerLaunch {
  /** Script run by node: the esbuild bundle of worker.ts, or worker.ts itself under tsx. */
  readonly script: string
  readonly execArgv: ReadonlyArray<string>
  readonly env: Record<string, string>
  /** Extra node flags for profiling, with `{role}` replaced by the worker's role. */
  readonly profileArgv: ReadonlyArray<string>
}

const live = new Set<ChildProcess.ChildProcess>()
const killAll = () => {
  for (const child of live) child.kill("SIGKILL")
  live.clear()
}
process.on("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAll()
    process.exit(130)
  })
}

/** Lines a worker may print before the rest is only counted: library warnings can be floods. */
const MAX_FORWARDED_LINES = 20

/** Every command set has `exit`, which `stop` sends. */
export interface BaseCommand {
  readonly op: string
}

export class Worker<C extends BaseCommand = Command, A = Answers> {
  private readonly child: ChildProcess.ChildProcess
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>()
  private nextId = 1
  private exited = false
  private forwarded = 0
  readonly ready: Promise<void>

  /**
   * `maxForwardedLines`: how many lines of the worker's output to show before only counting them.
   * `consume`: sees each line first; a line it returns true for is neither shown nor counted (the
   * stress reads the server's `--trace-gc` lines this way).
   */
  constructor(
    readonly role: string,
    launch: WorkerLaunch,
    private readonly maxForwardedLines = MAX_FORWARDED_LINES,
    consume?: (line: string) => boolean
  ) {
    const profile = launch.profileArgv.map((arg) => arg.replaceAll("{role}", role.replace(/[^a-z0-9-]/gi, "_")))
    this.child = ChildProcess.fork(launch.script, [role], {
      execArgv: [...launch.execArgv, ...profile],
      env: { ...process.env, ...launch.env },
      stdio: ["ignore", "pipe", "pipe", "ipc"]
    })
    live.add(this.child)
    /** Per stream, a line the last chunk cut off, completed by the next one. */
    const forwardLines = () => {
      let partial = ""
      return (chunk: Buffer) => {
        const lines = (partial + chunk.toString("utf8")).split("\n")
        partial = lines.pop() ?? ""
        forward(lines)
      }
    }
    const forward = (lines: ReadonlyArray<string>) => {
      for (const line of lines) {
        if (line.trim() === "" || consume?.(line) === true) continue
        this.forwarded++
        if (this.forwarded <= this.maxForwardedLines) process.stderr.write(`  [${role}] ${line.slice(0, 400)}\n`)
        else if (this.forwarded === this.maxForwardedLines + 1) process.stderr.write(`  [${role}] (further output counted, not shown)\n`)
      }
    }
    this.child.stdout?.on("data", forwardLines())
    this.child.stderr?.on("data", forwardLines())
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${role}: worker did not start within 30 s`)), 30_000)
      this.child.on("message", (message: unknown) => {
        if (typeof message !== "object" || message === null) return
        if ("ready" in message) {
          clearTimeout(timer)
          resolve()
          return
        }
        const reply = message as Reply<unknown>
        const waiter = this.pending.get(reply.id)
        if (waiter === undefined) return
        this.pending.delete(reply.id)
        if (reply.ok) waiter.resolve(reply.value)
        else waiter.reject(new Error(`${role}: ${reply.error}`))
      })
      this.child.on("exit", (code, signal) => {
        clearTimeout(timer)
        this.exited = true
        live.delete(this.child)
        const error = new Error(`${role}: worker exited (code ${code}, signal ${signal})`)
        reject(error)
        for (const waiter of this.pending.values()) waiter.reject(error)
        this.pending.clear()
      })
    })
  }

  get forwardedLines(): number {
    return this.forwarded
  }

  /** The child's process id (for sampling its memory from /proc); undefined if it failed to spawn. */
  get pid(): number | undefined {
    return this.child.pid
  }

  get alive(): boolean {
    return !this.exited
  }

  call<K extends C["op"] & keyof A>(command: Extract<C, { readonly op: K }>, timeoutMs: number): Promise<A[K]> {
    // The worker answers each op with its own Answers entry (protocol.ts); IPC loses the link.
    return this.request(command, timeoutMs) as Promise<A[K]>
  }

  private request(command: BaseCommand, timeoutMs: number): Promise<unknown> {
    if (this.exited) return Promise.reject(new Error(`${this.role}: worker is gone`))
    const id = this.nextId++
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.role}: ${command.op} timed out after ${Math.round(timeoutMs / 1000)} s`))
      }, timeoutMs)
      this.pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer)
          resolve(value)
        },
        reject: (error) => {
          clearTimeout(timer)
          reject(error)
        }
      })
      this.child.send({ id, command })
    })
  }

  /** Asks the worker to exit (so profiles get written), then kills it if it does not. */
  async stop(): Promise<void> {
    if (this.exited) return
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()))
    this.request({ op: "exit" }, 5000).catch(() => undefined)
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000)
    await gone
    clearTimeout(timer)
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL")
  }
}

/**
 * Bundles the worker entry (`source`, a .ts file) with the esbuild that tsx already ships, so
 * workers run as plain `node`: tsx's loader thread adds about 100 MB of RSS to every process,
 * which would swamp the memory figures, and startup is faster. Falls back to tsx when esbuild is
 * not there.
 */
export const prepareLaunch = (options: {
  readonly source: string
  readonly buildDir: string
  readonly bundle: boolean
  readonly profileDir: string | undefined
  readonly env?: Record<string, string> | undefined
}): { launch: WorkerLaunch; how: string } => {
  const env = options.env ?? {}
  const profileArgv = options.profileDir === undefined
    ? []
    : ["--cpu-prof", `--cpu-prof-dir=${options.profileDir}`, "--cpu-prof-name={role}.${pid}.cpuprofile"]
  const source = options.source
  const esbuild = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "node_modules", ".bin", "esbuild")
  if (options.bundle && Fs.existsSync(esbuild)) {
    Fs.mkdirSync(options.buildDir, { recursive: true })
    const out = Path.join(options.buildDir, `${Path.basename(source, ".ts")}.cjs`)
    const result = ChildProcess.spawnSync(
      esbuild,
      [source, "--bundle", "--platform=node", "--format=cjs", "--target=node20", "--sourcemap", `--outfile=${out}`, "--log-level=warning"],
      { encoding: "utf8", timeout: 60_000 }
    )
    if (result.status === 0) {
      return { launch: { script: out, execArgv: [], env, profileArgv }, how: `node on an esbuild bundle (${Path.relative(process.cwd(), out)})` }
    }
    process.stderr.write(`esbuild failed, falling back to tsx: ${result.stderr}\n`)
  }
  return { launch: { script: source, execArgv: ["--import", "tsx"], env, profileArgv }, how: "node --import tsx (unbundled)" }
}
