import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as Socket from "@effect/platform/Socket"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"

const pair = Effect.gen(function* () {
  const server = yield* NodeSocketServer.make({ port: 0, host: "127.0.0.1" })
  const address = server.address
  if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("no tcp")
  const accepted = yield* Deferred.make<Socket.Socket>()
  yield* Effect.forkScoped(server.run((s) => Effect.zipRight(Deferred.succeed(accepted, s), Effect.never)))
  const client = yield* NodeSocket.makeNet({ port: address.port, host: "127.0.0.1" })
  return { client, accepted }
})

const scenario = (name: string, f: (c: Socket.Socket, s: Socket.Socket, log: (m: string) => void) => Effect.Effect<void, unknown, Scope.Scope>) =>
  Effect.scoped(Effect.gen(function* () {
    const { client, accepted } = yield* pair
    const t0 = Date.now()
    const log = (m: string) => console.log(`[${name}] +${Date.now() - t0}ms ${m}`)
    const cf = yield* Effect.fork(client.run((b) => log(`client got ${b.length}`)).pipe(Effect.exit, Effect.tap((e) => log(`client run: ${Exit.isSuccess(e) ? "ok" : JSON.stringify(e.cause)}`))))
    const server = yield* Deferred.await(accepted)
    yield* Effect.sleep(20)
    const sf = yield* Effect.fork(server.run((b) => log(`server got ${b.length}`)).pipe(Effect.exit, Effect.tap((e) => log(`server run: ${Exit.isSuccess(e) ? "ok" : JSON.stringify(e.cause)}`))))
    yield* Effect.sleep(20)
    yield* f(client, server, log)
    yield* Effect.sleep(200)
    log(`client fiber done? ${(yield* Fiber.poll(cf))._tag} server fiber done? ${(yield* Fiber.poll(sf))._tag}`)
  }))

const program = Effect.gen(function* () {
  yield* scenario("close1000", (c, _s, log) => Effect.gen(function* () {
    const w = yield* c.writer
    yield* w(new Uint8Array(10))
    yield* w(new Socket.CloseEvent(1000)).pipe(Effect.exit, Effect.tap((e) => log(`close write ${e._tag}`)))
    yield* Effect.sleep(50)
    yield* w(new Uint8Array(10)).pipe(Effect.timeout(100), Effect.exit, Effect.tap((e) => log(`write after close ${JSON.stringify(e)}`)))
  }))
  yield* scenario("close4000", (c, _s, log) => Effect.gen(function* () {
    const w = yield* c.writer
    yield* w(new Socket.CloseEvent(4000)).pipe(Effect.exit, Effect.tap((e) => log(`close write ${e._tag}`)))
  }))
  yield* scenario("endWriter", (c, s, log) => Effect.gen(function* () {
    yield* Effect.scoped(Effect.gen(function* () { const w = yield* c.writer; yield* w(new Uint8Array(5)) }))
    log("writer scope closed")
    yield* Effect.sleep(50)
    const ws = yield* s.writer
    yield* ws(new Uint8Array(7)).pipe(Effect.timeout(100), Effect.exit, Effect.tap((e) => log(`server write after peer end ${JSON.stringify(e)}`)))
  }))
})

Effect.runPromise(program).then(() => console.log("done"), (e) => console.log("fail", e))
