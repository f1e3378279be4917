/**
 * The session's own cost per request, without crypto, framing or sockets: two sessions joined by an
 * in-memory channel that delivers each side's messages to the other on the next macrotask (as a
 * socket read would), one process. Sequential round trips and 256 in flight, raw `request` and
 * typed `call`; CPU µs per request (client + server). Noisy on a shared machine: take medians.
 * Run: npx tsx scratchpad/perf/session-cost.ts [rounds] [cases, e.g. "raw,typed"]
 */
import { Effect, Schema } from "effect"
import type { ChannelHandler, SecureChannel } from "../../src/channel/SecureChannel.js"
import type { CryptoService } from "../../src/crypto/Crypto.js"
import { Api, Packet, PacketType } from "../../src/index.js"
import { makeSession as makeBare } from "../../src/session/Session.js"
import { checkedSession } from "../../src/internal/validate.js"

class Echo extends Schema.TaggedRequest<Echo>()("Echo", { payload: { id: Schema.Number, text: Schema.String }, success: Schema.String, failure: Schema.Never }) {}
const Bench = Api.make({ requests: [Echo] })
const text = "x".repeat(40)
const payload = new TextEncoder().encode(text)

const pair = (): [SecureChannel, SecureChannel] => {
  const make = (): SecureChannel & { peer?: SecureChannel & { handler?: ChannelHandler }; handler?: ChannelHandler } => {
    let outbox: Array<[number, Uint8Array]> = []
    const self: SecureChannel & { peer?: SecureChannel & { handler?: ChannelHandler }; handler?: ChannelHandler } = {
      info: { encrypted: true, authenticated: true, localPolicy: "required", peerPolicy: "required", suite: "memory" },
      write: (type, head, data) => {
        const body = new Uint8Array(head.length + (data?.length ?? 0))
        body.set(head, 0)
        if (data !== undefined) body.set(data, head.length)
        outbox.push([type, body])
        if (outbox.length === 1) {
          setImmediate(() => {
            const messages = outbox
            outbox = []
            for (const [t, b] of messages) self.peer?.handler?.onMessage(t, b)
          })
        }
      },
      awaitWritable: Effect.void,
      pendingBytes: () => 0,
      writingSince: () => undefined,
      heard: () => 0,
      ping: () => {},
      listen: (handler) => {
        self.handler = handler
      },
      close: () => Effect.void,
      fail: () => {},
      release: () => Effect.void
    }
    return self
  }
  const a = make()
  const b = make()
  a.peer = b
  b.peer = a
  return [a, b]
}

const crypto = {} as unknown as CryptoService
// As the API hands sessions out: with the argument and reply checks.
const makeSession = (channel: SecureChannel, c: CryptoService) => Effect.map(makeBare(channel, c), checkedSession)

const main = Effect.scoped(Effect.gen(function*() {
  const [ca, cb] = pair()
  const client = yield* makeSession(ca, crypto)
  const server = yield* makeSession(cb, crypto)
  yield* Effect.forkScoped(server.serve((p) => Effect.succeed(new Packet({ id: p.id, type: PacketType.RESPONSE, payload: p.payload }, true))))
  const [ta, tb] = pair()
  const typedClient = yield* makeSession(ta, crypto)
  const typedServer = yield* makeSession(tb, crypto)
  yield* Effect.forkScoped(Bench.serve(typedServer, { Echo: ({ text }) => Effect.succeed(text) }))
  const api = Bench.client(typedClient)

  const raw = () => Effect.suspend(() => client.request(new Packet({ id: client.nextId(), type: PacketType.COMMAND, payload }, true)))
  const typed = (i: number) => api.call(new Echo({ id: i, text }))

  const measure = (n: number, depth: number, op: (i: number) => Effect.Effect<unknown, unknown>) =>
    Effect.gen(function*() {
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      let i = 0
      yield* Effect.forEach(Array.from({ length: depth }), () => Effect.whileLoop({ while: () => i < n, body: () => op(i++), step: () => {} }), { concurrency: "unbounded", discard: true })
      const cpu = process.cpuUsage(cpu0)
      return { cpu: (cpu.user + cpu.system) / n, wall: ((performance.now() - t0) * 1000) / n }
    })

  const rounds = Number(process.argv[2] ?? 5)
  // argv[3]: which cases, by prefix ("raw", "typed 256", ...); all by default.
  const cases = ([
    ["raw seq", 5000, 1, raw],
    ["typed seq", 5000, 1, typed],
    ["raw 256", 50000, 256, raw],
    ["typed 256", 50000, 256, typed]
  ] as const).filter(([label]) => (process.argv[3] ?? "raw,typed").split(",").some((w) => label.startsWith(w)))
  const results = new Map<string, Array<number>>()
  for (const [label, n, depth, op] of cases) yield* measure(n / 5, depth, op) // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [label, n, depth, op] of cases) {
      const m = yield* measure(n, depth, op)
      results.set(label, [...(results.get(label) ?? []), m.cpu])
    }
  }
  const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  for (const [label, xs] of results) {
    console.log(`${label.padEnd(10)} cpu/req median ${median(xs).toFixed(1)} us  (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`)
  }
  const r = median(results.get("raw 256") ?? [NaN])
  const t = median(results.get("typed 256") ?? [NaN])
  console.log(`typed/raw at 256: ${(t / r).toFixed(2)}x; seq: ${(median(results.get("typed seq") ?? [NaN]) / median(results.get("raw seq") ?? [NaN])).toFixed(2)}x`)
}))

Effect.runPromise(main).then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
