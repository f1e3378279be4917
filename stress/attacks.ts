/**
 * The attacks of issue 8, each run by the attacker process against the server process.
 *
 * They go through the public API (`connect`, `ClientSession.session` over a socket we hold, so we
 * can pause, cork or count it) and the wire format (PROTOCOL.md §2, §3.1: frames and a replayed
 * CLIENT_HELLO, encoded with `src/wire/`), never through the library's internals, so that they keep
 * working while the library changes underneath. Every loop stops at `stop()`, at its byte budget
 * and at the process's lifetime, whichever comes first; a connection the server ends is counted
 * (by the error it ended with) and, where the attack says so, opened again.
 */
import { NodeSocket } from "@effect/platform-node"
import * as Socket from "@effect/platform/Socket"
import { Cause, Duration, Effect, Exit, Fiber, Option, Stream } from "effect"
import type { Scope } from "effect"
import * as NodeCryptoModule from "node:crypto"
import * as Net from "node:net"
import { ClientSession, connect, Crypto, NodeCrypto, Packet, PacketType } from "../src/index.js"
import type { Session, SessionOptions } from "../src/index.js"
import { encodeFrame, frameHeader } from "../src/wire/Frame.js"
import { ClientHello, encodeClientHello, MessageType, NONCE_LENGTH, PROTOCOL_VERSION } from "../src/wire/Messages.js"
import { count, errorKind, now } from "./legit.js"
import type { AttackOptions, AttackReport } from "./protocol.js"

export const ATTACK_NAMES = [
  "hello-50",
  "hello-200",
  "preauth-junk",
  "endless-stream",
  "chunk-abort",
  "chunk-open",
  "no-read",
  "stalled-handler",
  "open-transfers",
  "silent-tcp",
  "silent-sessions"
] as const
export type AttackName = (typeof ATTACK_NAMES)[number]

export interface AttackInfo {
  /** The items of issue 8 it reproduces. */
  readonly items: ReadonlyArray<number>
  readonly what: string
  /** An authenticated attack: the legitimate round-trip p99 target applies during it. */
  readonly authenticated: boolean
}

export const ATTACKS: Readonly<Record<AttackName, AttackInfo>> = {
  "hello-50": { items: [1], what: "one replayed ClientHello per new connection, 50/s", authenticated: false },
  "hello-200": { items: [1], what: "one replayed ClientHello per new connection, 200/s", authenticated: false },
  "preauth-junk": { items: [2], what: "16 connections: ClientHello, then 64 MiB of junk PACKET frames each", authenticated: false },
  "endless-stream": { items: [3], what: "sendStream of an endless stream into serve", authenticated: true },
  "chunk-abort": { items: [4], what: "send of a 64 MiB message, aborted right after it starts, 20/s", authenticated: true },
  "chunk-open": { items: [4], what: "32 connections x 64 sends of 64 MiB started, then left open", authenticated: true },
  "no-read": { items: [5], what: "requests as fast as possible, replies never read", authenticated: true },
  "stalled-handler": { items: [6], what: "1 MiB packets to a handler that stopped reading", authenticated: true },
  "open-transfers": { items: [7], what: "64 transfers x 16 MiB on one connection, left incomplete", authenticated: true },
  "silent-tcp": { items: [8], what: "connections that send nothing", authenticated: false },
  // One run serves both items: the sessions that lock others out are the idle sessions whose RSS is measured.
  "silent-sessions": { items: [8, 9], what: "sessions that handshake, then stay silent: lockout and RSS per idle session", authenticated: false }
}

/** `--only 1,4` selects by issue item as well as by name. */
export const attacksOfItem = (item: number): Array<AttackName> => ATTACK_NAMES.filter((name) => ATTACKS[name].items.includes(item))

const HOST = "127.0.0.1"
const MiB = 2 ** 20
/** The default largest frame body is 1 MiB + 64 (PROTOCOL.md §10): junk frames use exactly 1 MiB. */
const JUNK_BODY = MiB
/** Pause before opening a connection the server ended, so that a refusal is not a busy loop. */
const RECONNECT_PAUSE = Duration.millis(50)
/**
 * Handshakes the attacker runs at once. More would only time out against a server that does one
 * P-521 job at a time, and the setup would take longer, not shorter.
 */
const OPENING_CONCURRENCY = 4
/** How long a replayed hello's connection is held, unless the server closes it first. */
const HELLO_HOLD_MS = 2000

export interface RunningAttack {
  /** Resolves when the attack is in place; says what was set up. */
  readonly engaged: Promise<string>
  /** The attack has sent all it means to (its byte budget): holding from here on. */
  readonly spent: () => boolean
  readonly stop: () => Promise<AttackReport>
}

/** The attacker's shared state: counters, how connections ended, what is open, and the off switch. */
class Run {
  readonly counters: Record<string, number> = {}
  readonly ends: Record<string, number> = {}
  readonly sockets = new Set<Net.Socket>()
  readonly fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
  readonly timers: Array<ReturnType<typeof setInterval>> = []
  /** Admits `OPENING_CONCURRENCY` handshakes at a time. */
  readonly opening = Effect.unsafeMakeSemaphore(OPENING_CONCURRENCY)
  private stopped = false
  private readonly deadline: number
  /** Set by attacks with a byte budget once it is used up; the others are spent from the start. */
  spent = false

  constructor(readonly options: AttackOptions) {
    this.deadline = now() + options.lifetimeMs
  }

  get active(): boolean {
    return !this.stopped && now() < this.deadline
  }

  add(name: string, by = 1) {
    count(this.counters, name, by)
  }

  /** A socket that closed: what it wrote joins the attack's total. */
  forget(socket: Net.Socket) {
    if (!this.sockets.delete(socket)) return
    this.add("bytes written", socket.bytesWritten)
  }

  end(kind: string) {
    count(this.ends, kind)
  }

  fork(effect: Effect.Effect<unknown, unknown>) {
    this.fibers.push(Effect.runFork(effect))
  }

  /**
   * Stops the loops and reports. The sockets are left to the process's end (the orchestrator kills
   * the attacker right after): destroying a corked socket under thousands of pending sends makes
   * the library spin through them, which would hold up this very report.
   */
  async stop(): Promise<AttackReport> {
    this.stopped = true
    for (const timer of this.timers) clearInterval(timer)
    await Promise.race([
      Effect.runPromise(Fiber.interruptAll(this.fibers)),
      new Promise((resolve) => setTimeout(resolve, 1000))
    ])
    for (const socket of [...this.sockets]) this.forget(socket)
    return { attack: this.options.attack, counters: this.counters, ends: this.ends }
  }
}

// --- raw TCP --------------------------------------------------------------------------------

/** A TCP connection; `discard` reads and drops what arrives (raw attacks; a session reads its own). */
const rawConnect = (run: Run, port: number, discard: boolean): Promise<Net.Socket> =>
  new Promise((resolve, reject) => {
    const socket = Net.createConnection({ host: HOST, port, noDelay: true })
    run.sockets.add(socket)
    socket.once("connect", () => resolve(socket))
    socket.on("error", (error: NodeJS.ErrnoException) => {
      run.end(`socket ${error.code ?? error.message}`)
      reject(error)
    })
    if (discard) socket.on("data", (chunk: Buffer) => run.add("bytes received", chunk.length))
    socket.once("close", () => run.forget(socket))
  })

const closed = (socket: Net.Socket): Promise<void> =>
  new Promise((resolve) => (socket.destroyed ? resolve() : socket.once("close", () => resolve())))

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * One CLIENT_HELLO frame (PROTOCOL.md §3.1), encoded once with a real P-521 public key: the flood
 * replays these same 175 bytes, so the attacker does no elliptic-curve work per connection.
 */
const capturedHello = (): Uint8Array => {
  const ecdh = NodeCryptoModule.createECDH("secp521r1")
  const publicKey = new Uint8Array(ecdh.generateKeys())
  const nonce = new Uint8Array(NodeCryptoModule.randomBytes(NONCE_LENGTH))
  return encodeFrame(MessageType.CLIENT_HELLO, encodeClientHello(new ClientHello({ version: PROTOCOL_VERSION, policy: "required", nonce, publicKey })))
}

/** Item 1: a new connection per hello at `rate`/s; whatever the server sends is read and dropped. */
const helloFlood = (rate: number) => (run: Run): RunningAttack => {
  const hello = capturedHello()
  const open = new Set<Net.Socket>()
  const maxOpen = Math.ceil(rate * (HELLO_HOLD_MS / 1000) * 1.5) + 100
  const launch = () => {
    run.add("connections opened")
    const socket = Net.createConnection({ host: HOST, port: run.options.ports.echo, noDelay: true })
    open.add(socket)
    run.sockets.add(socket)
    let heldFull = false
    const timer = setTimeout(() => {
      heldFull = true
      socket.destroy()
    }, HELLO_HOLD_MS)
    socket.once("connect", () => {
      run.add("hellos sent")
      socket.write(hello)
    })
    socket.on("data", (chunk: Buffer) => run.add("bytes received", chunk.length))
    socket.on("error", (error: NodeJS.ErrnoException) => run.end(`socket ${error.code ?? error.message}`))
    socket.once("close", () => {
      clearTimeout(timer)
      open.delete(socket)
      run.forget(socket)
      if (run.active) run.end(heldFull ? "held 2 s, closed by us" : "closed by the server first")
    })
  }
  let credit = 0
  let last = now()
  run.timers.push(setInterval(() => {
    const t = now()
    credit += ((t - last) * rate) / 1000
    last = t
    if (!run.active) return
    while (credit >= 1) {
      credit--
      if (open.size >= maxOpen) run.add("hellos skipped (too many open)")
      else launch()
    }
  }, 5))
  run.spent = true
  return { engaged: Promise.resolve(`${rate} hellos/s, each connection held up to ${HELLO_HOLD_MS} ms`), spent: () => run.spent, stop: () => run.stop() }
}

/** Item 2: a hello, then junk PACKET frames of the largest default size, as fast as the server reads them. */
const preauthJunk = (run: Run): RunningAttack => {
  const connections = 16
  const perConnection = Math.min(64 * MiB, Math.floor(run.options.maxBytes / connections / MiB) * MiB)
  const hello = capturedHello()
  const junk = new Uint8Array(5 + JUNK_BODY)
  junk.set(frameHeader(MessageType.PACKET, JUNK_BODY), 0)
  let finished = 0
  const slot = async () => {
    let sent = 0
    while (run.active && sent < perConnection) {
      const socket = await rawConnect(run, run.options.ports.echo, true).catch(() => undefined)
      if (socket === undefined) {
        await sleep(50)
        continue
      }
      run.add("connections opened")
      const gone = closed(socket)
      socket.write(hello)
      while (run.active && sent < perConnection && !socket.destroyed) {
        sent += junk.length
        run.add("junk bytes sent", junk.length)
        if (!socket.write(junk)) await Promise.race([new Promise((resolve) => socket.once("drain", resolve)), gone])
      }
      if (sent >= perConnection && ++finished === connections) run.spent = true
      // Hold the connection open with its junk: what the server buffered stays buffered.
      await gone
      if (run.active) run.end("closed by the server")
    }
  }
  for (let i = 0; i < connections; i++) void slot()
  return {
    engaged: Promise.resolve(`${connections} connections x ${perConnection / MiB} MiB of ${JUNK_BODY / MiB} MiB frames`),
    spent: () => run.spent,
    stop: () => run.stop()
  }
}

/** Item 8: connections that open and say nothing; one the server closes is opened again. */
const silentTcp = (run: Run): RunningAttack => {
  const total = run.options.sessions
  let connected = 0
  let resolveEngaged: (() => void) | undefined
  const engaged = new Promise<void>((resolve) => (resolveEngaged = resolve))
  const slot = async () => {
    let first = true
    while (run.active) {
      const socket = await rawConnect(run, run.options.ports.echo, true).catch(() => undefined)
      if (socket !== undefined) {
        run.add("connections opened")
        if (first && ++connected === total) resolveEngaged?.()
        first = false
        await closed(socket)
        if (run.active) run.end("closed by the server")
      }
      await sleep(100)
    }
  }
  for (let i = 0; i < total; i++) void slot()
  run.spent = true
  return {
    engaged: Promise.race([engaged, sleep(10_000)]).then(() => `${connected} of ${total} silent connections open`),
    spent: () => run.spent,
    stop: () => run.stop()
  }
}

// --- authenticated sessions over a socket we hold ------------------------------------------

interface AttackSession {
  readonly session: Session
  /** The TCP socket under the session: the attacks pause, cork and count it. */
  readonly socket: Net.Socket
}

/**
 * A session of the public API (`ClientSession.session`) over a `net.Socket` opened here, so the
 * attack can stop reading it (`pause`), stop writing it (`cork`) and count its bytes.
 */
const openAttackSession = (run: Run, port: number, options: SessionOptions = {}) =>
  run.opening.withPermits(1)(Effect.gen(function*() {
    // Released with the session's scope, also when the handshake fails.
    const socket = yield* Effect.acquireRelease(Effect.tryPromise(() => rawConnect(run, port, false)), (s) => Effect.sync(() => s.destroy()))
    const platformSocket = yield* NodeSocket.fromDuplex(Effect.succeed(socket))
    const service = yield* NodeCrypto.make
    const session = yield* ClientSession.session({ password: run.options.password, ...options }).pipe(
      Effect.provideService(Socket.Socket, platformSocket),
      Effect.provideService(Crypto, service)
    )
    run.add("sessions opened")
    return { session, socket } satisfies AttackSession
  }))

/**
 * Runs `body` on a fresh session, again and again while the attack is active and `more()` says so:
 * a connection the server ends is opened again (a real attacker would), its end counted.
 */
const sessionLoop = (
  run: Run,
  port: number,
  options: SessionOptions,
  /** Runs in the session's scope: what it forks there ends with the session. */
  body: (s: AttackSession) => Effect.Effect<unknown, unknown, Scope.Scope>,
  more: () => boolean = () => true
) =>
  Effect.gen(function*() {
    while (run.active && more()) {
      const exit = yield* Effect.exit(Effect.scoped(Effect.flatMap(openAttackSession(run, port, options), (s) =>
        Effect.zipRight(body(s), Effect.flatMap(s.session.closed, (why) => Effect.fail(why))))))
      if (Exit.isFailure(exit) && run.active) run.end(Option.match(Cause.failureOption(exit.cause), { onNone: () => "defect or interrupt", onSome: errorKind }))
      yield* Effect.sleep(RECONNECT_PAUSE)
    }
  })

const bytes = (size: number) => new Uint8Array(size)
const packetOf = (session: Session, payload: Uint8Array) =>
  new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload }, true)

/** Item 3: one stream that never ends; past the byte budget it stays open, silent. */
const endlessStream = (run: Run): RunningAttack => {
  const piece = bytes(MiB)
  let sent = 0
  const data = Stream.repeatEffectOption(Effect.suspend(() => {
    if (!run.active) return Effect.fail(Option.none())
    if (sent >= run.options.maxBytes) {
      run.spent = true
      return Effect.never
    }
    sent += piece.length
    run.add("stream bytes sent", piece.length)
    return Effect.succeed(piece)
  }))
  run.fork(sessionLoop(run, run.options.ports.echo, {}, ({ session }) =>
    session.sendStream({ id: session.nextId(), type: PacketType.COMMAND }, data)))
  return { engaged: Promise.resolve(`1 MiB pieces, at most ${run.options.maxBytes / MiB} MiB`), spent: () => run.spent, stop: () => run.stop() }
}

/**
 * Item 4, first variant: a 64 MiB message started and aborted, 20 times a second on one connection.
 * Through the public API the send runs until the 1 MiB outgoing high-water mark before it yields,
 * so each start-then-abort carries about 1 MiB of CHUNK_DATA between its CHUNK_START and its
 * aborting CHUNK_END (counted in "bytes sent").
 */
const chunkAbort = (run: Run): RunningAttack => {
  const payload = bytes(64 * MiB)
  run.fork(sessionLoop(run, run.options.ports.echo, {}, ({ session, socket }) =>
    Effect.gen(function*() {
      while (run.active) {
        const before = socket.bytesWritten
        const fiber = yield* Effect.fork(session.send(packetOf(session, payload)))
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(fiber)
        run.add("starts aborted")
        yield* Effect.sleep(Duration.millis(50))
        run.add("bytes sent", socket.bytesWritten - before)
      }
    })))
  run.spent = true
  return { engaged: Promise.resolve("start-then-abort of 64 MiB messages, 20/s"), spent: () => run.spent, stop: () => run.stop() }
}

/**
 * Item 4, second variant: 32 connections, each starting 64 sends of 64 MiB in 16 KiB chunks; once
 * the first batch (every CHUNK_START, about 1 MiB of data for the first send and a chunk for each
 * other) is on the wire, the socket is corked, so the transfers stay open with little data.
 */
const STARTER_CHUNK = 16 * 1024
const chunkOpen = (run: Run): RunningAttack => {
  const connections = 32
  const starts = 64
  const payload = bytes(64 * MiB)
  const firstBatch = MiB + starts * STARTER_CHUNK
  let ready = 0
  let resolveEngaged: (() => void) | undefined
  const engaged = new Promise<void>((resolve) => (resolveEngaged = resolve))
  for (let i = 0; i < connections; i++) {
    let first = true
    run.fork(sessionLoop(run, run.options.ports.echo, { chunkSize: STARTER_CHUNK }, ({ session, socket }) =>
      Effect.gen(function*() {
        const start = socket.bytesWritten
        for (let s = 0; s < starts; s++) yield* Effect.forkScoped(session.send(packetOf(session, payload)))
        const until = now() + 100
        while (socket.bytesWritten - start < firstBatch && now() < until) yield* Effect.sleep(Duration.millis(1))
        socket.cork()
        run.add("starts left open", starts)
        run.add("bytes sent before cork", socket.bytesWritten - start)
        if (first && ++ready === connections) {
          run.spent = true
          resolveEngaged?.()
        }
        first = false
      })))
  }
  return {
    engaged: Promise.race([engaged, sleep(run.options.setupMaxMs)]).then(() => `${ready} of ${connections} connections x ${starts} starts open`),
    spent: () => run.spent,
    stop: () => run.stop()
  }
}

/** Item 5: requests as fast as the server takes them, on a socket that is never read. */
const noRead = (run: Run): RunningAttack => {
  const payload = bytes(64 * 1024)
  const budget = Math.min(run.options.maxBytes, 1000 * MiB)
  let sent = 0
  run.fork(sessionLoop(run, run.options.ports.echo, {}, ({ session, socket }) =>
    Effect.gen(function*() {
      socket.pause()
      while (run.active && sent < budget) {
        yield* session.send(packetOf(session, payload))
        sent += payload.length
        run.add("request bytes sent", payload.length)
      }
      if (sent >= budget) run.spent = true
    }), () => sent < budget))
  return { engaged: Promise.resolve(`64 KiB requests, at most ${budget / MiB} MiB, replies never read`), spent: () => run.spent, stop: () => run.stop() }
}

/** Item 6: 1 MiB packets to the server whose handler read one packet and stopped. */
const stalledHandler = (run: Run): RunningAttack => {
  const payload = bytes(MiB)
  let sent = 0
  run.fork(sessionLoop(run, run.options.ports.stall, {}, ({ session }) =>
    Effect.gen(function*() {
      while (run.active && sent < run.options.maxBytes) {
        yield* session.send(packetOf(session, payload))
        sent += payload.length
        run.add("packet bytes sent", payload.length)
      }
      if (sent >= run.options.maxBytes) run.spent = true
    }), () => sent < run.options.maxBytes))
  return { engaged: Promise.resolve(`1 MiB packets, at most ${run.options.maxBytes / MiB} MiB`), spent: () => run.spent, stop: () => run.stop() }
}

/**
 * Item 7: 64 sends of 16 MiB at once on one connection; once about three quarters of their bytes
 * are written (or the byte budget), the socket is corked, so every transfer stays incomplete.
 */
const openTransfers = (run: Run): RunningAttack => {
  const transfers = 64
  const size = 16 * MiB
  const payload = bytes(size)
  const corkAt = Math.min(Math.floor(transfers * size * 0.75), run.options.maxBytes)
  run.fork(sessionLoop(run, run.options.ports.echo, {}, ({ session, socket }) =>
    Effect.gen(function*() {
      const start = socket.bytesWritten
      for (let i = 0; i < transfers; i++) yield* Effect.forkScoped(session.send(packetOf(session, payload)))
      while (run.active && socket.bytesWritten - start < corkAt && !socket.destroyed) yield* Effect.sleep(Duration.millis(2))
      socket.cork()
      run.add("bytes sent before cork", socket.bytesWritten - start)
      run.spent = true
    })))
  return {
    engaged: Promise.resolve(`${transfers} x ${size / MiB} MiB, corked after ~${Math.round(corkAt / MiB)} MiB`),
    spent: () => run.spent,
    stop: () => run.stop()
  }
}

/** Items 8 and 9: `sessions` authenticated sessions, opened a few at a time, then left silent. */
const idleSessions = (run: Run): RunningAttack => {
  const total = run.options.sessions
  const open: Array<Session> = []
  const target = { port: run.options.ports.echo, password: run.options.password }
  const started = now()
  const setup = Effect.forEach(
    Array.from({ length: total }, (_, i) => i),
    () =>
      Effect.suspend(() => (run.active && now() - started < run.options.setupMaxMs ? Effect.either(connect(target)) : Effect.succeed(undefined))).pipe(
        Effect.map((opened) => {
          if (opened === undefined) return
          if (opened._tag === "Left") return run.end(`handshake: ${errorKind(opened.left)}`)
          open.push(opened.right)
          run.add("sessions opened")
          // Count the sessions the server ends while they sit idle.
          run.fork(Effect.flatMap(opened.right.closed, (why) => Effect.sync(() => run.active && run.end(`idle session ended: ${errorKind(why)}`))))
        })
      ),
    { concurrency: OPENING_CONCURRENCY, discard: true }
  )
  const engaged = Effect.runPromise(setup).then(() => `${open.length} of ${total} sessions open after ${((now() - started) / 1000).toFixed(1)} s`)
  run.spent = true
  return {
    engaged,
    spent: () => run.spent,
    stop: async () => {
      const report = await run.stop()
      await Promise.race([Effect.runPromise(Effect.forEach(open, (s) => s.close, { concurrency: 64, discard: true })), sleep(5000)])
      return report
    }
  }
}

const runners: Readonly<Record<AttackName, (run: Run) => RunningAttack>> = {
  "hello-50": helloFlood(50),
  "hello-200": helloFlood(200),
  "preauth-junk": preauthJunk,
  "endless-stream": endlessStream,
  "chunk-abort": chunkAbort,
  "chunk-open": chunkOpen,
  "no-read": noRead,
  "stalled-handler": stalledHandler,
  "open-transfers": openTransfers,
  "silent-tcp": silentTcp,
  "silent-sessions": idleSessions
}

export const startAttack = (options: AttackOptions): RunningAttack => runners[options.attack](new Run(options))
