/**
 * cvg-core through its public API only (`serve`, `connect`, `Session`), in both encryption modes.
 *
 * Every connection starts with one request naming what it will do ("echo", "stream:<bytes>",
 * "send:<bytes>"), so one server serves every scenario. Packets on the hot path are built with
 * validation disabled (the constructor's second argument): the library's own decoder does the
 * same, and the benchmark measures the protocol, not `Schema`.
 */
import { Effect, Stream } from "effect"
import { performance } from "node:perf_hooks"
import { connect, Packet, PacketType, serve } from "../../src/index.js"
import type { Session } from "../../src/index.js"
import { startDaemon } from "./daemon.js"
import { handshakeLoop } from "./lenprefix.js"
import type { BenchServer, BenchSystem, BulkOptions, BulkResult, EchoConnection, SystemName, Target } from "./types.js"

type Policy = "required" | "disabled"

const EMPTY = new Uint8Array(0)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

const packet = (id: number, type: PacketType, payload: Uint8Array) => new Packet({ id, type, payload }, true)

/** What one server connection does, chosen by the client's first request. */
const handleSession = (session: Session) =>
  Effect.gen(function*() {
    const first = yield* session.respond({}, (p) => Effect.succeed(packet(p.id, PacketType.RESPONSE, EMPTY)))
    const [mode = "", size = "0"] = decoder.decode(first.payload).split(":")
    const total = Number(size)
    if (mode === "echo") {
      return yield* session.serve((p) => Effect.succeed(packet(p.id, PacketType.RESPONSE, p.payload)))
    }
    let received = 0
    if (mode === "stream") {
      while (received < total) {
        const incoming = yield* session.receiveStream()
        yield* Stream.runForEach(incoming.data, (chunk) =>
          Effect.sync(() => {
            received += chunk.length
          }))
      }
    } else if (mode === "send") {
      while (received < total) received += (yield* session.receive()).payload.length
    }
    yield* session.send(packet(0, PacketType.SUCCESS, EMPTY))
    // Wait for the client's CLOSE so that the ack is not cut off by our own close.
    yield* session.closed
  }).pipe(
    // Handshake-only clients hang up before their first request: that is the expected end.
    Effect.catchAll(() => Effect.void)
  )

const startServer = (policy: Policy) => (): Promise<BenchServer> =>
  startDaemon((announce) => serve({ port: 0, encryption: policy, onListen: (address) => announce(address.port) }, handleSession))

const open = (target: Target, policy: Policy, mode: string) =>
  Effect.gen(function*() {
    const session = yield* connect({ host: target.host, port: target.port, encryption: policy })
    yield* session.request(packet(session.nextId(), PacketType.COMMAND, encoder.encode(mode)))
    return session
  })

const openEcho = (policy: Policy) => async (target: Target): Promise<EchoConnection> => {
  const session = await Effect.runPromise(open(target, policy, "echo"))
  return {
    describe: session.info.suite + (session.info.encrypted ? "" : " (plaintext)"),
    roundTrips: (options) =>
      Effect.runPromise(Effect.gen(function*() {
        const request = packet(1, PacketType.COMMAND, new Uint8Array(options.payload).fill(0x61))
        const latencies: Array<number> = []
        const deadline = performance.now() + options.durationMs
        while (latencies.length < options.count && performance.now() < deadline) {
          const started = performance.now()
          yield* session.request(request)
          latencies.push((performance.now() - started) * 1000)
        }
        return latencies
      })),
    inflight: (options) =>
      Effect.runPromise(Effect.gen(function*() {
        const payload = new Uint8Array(options.payload).fill(0x61)
        const start = performance.now()
        const deadline = start + options.durationMs
        let completed = 0
        const worker = Effect.gen(function*() {
          while (performance.now() < deadline) {
            yield* session.request(packet(session.nextId(), PacketType.COMMAND, payload))
            completed++
          }
        })
        yield* Effect.forEach(Array.from({ length: options.depth }), () => worker, { concurrency: "unbounded", discard: true })
        return { completed, seconds: (performance.now() - start) / 1000 }
      })),
    close: () => Effect.runPromise(session.close)
  }
}

const bulk = (policy: Policy) => (target: Target, options: BulkOptions): Promise<BulkResult> =>
  Effect.runPromise(Effect.gen(function*() {
    const session = yield* open(target, policy, `${options.variant}:${options.bytes}`)
    const piece = new Uint8Array(options.chunk).fill(0x62)
    const pieces: Array<Uint8Array> = []
    for (let left = options.bytes; left > 0; left -= piece.length) pieces.push(left >= piece.length ? piece : piece.subarray(0, left))
    const start = performance.now()
    if (options.variant === "stream") {
      yield* session.sendStream({ id: session.nextId(), type: PacketType.STREAM_DATA }, Stream.fromIterable(pieces))
    } else {
      for (const p of pieces) yield* session.send(packet(session.nextId(), PacketType.STREAM_DATA, p))
    }
    yield* session.receive({ type: PacketType.SUCCESS })
    const seconds = (performance.now() - start) / 1000
    yield* session.close
    return { bytes: options.bytes, seconds }
  }))

const make = (name: SystemName, policy: Policy): BenchSystem => ({
  name,
  startServer: startServer(policy),
  openEcho: openEcho(policy),
  bulk: bulk(policy),
  handshakes: (target, options) =>
    handshakeLoop(options.concurrency, options.durationMs, () =>
      Effect.runPromise(
        Effect.flatMap(connect({ host: target.host, port: target.port, encryption: policy }), (session) => session.close)
      ))
})

export const cvg = make("cvg", "required")
export const cvgPlain = make("cvg-plain", "disabled")
