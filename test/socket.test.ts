/**
 * A session as an `@effect/platform` `Socket` (`SessionSocket`): a protocol written against `Socket`
 * alone runs over the secure channel, message boundaries are kept, an orderly close ends `runRaw`
 * normally while a cut fails it with the cvg error as cause, and a client socket makes one handshake
 * per connection however often `runRaw` runs.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Socket from "@effect/platform/Socket"
import { Cause, Chunk, Deferred, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import { InvalidArgument, Packet, PacketType, SessionSocket, UnexpectedPacket } from "cvg-core"
import { MemorySocket } from "cvg-core/testing"
import { memoryNetwork } from "./support/memoryNetwork.js"
import { bounded, expectSameBytes, memorySessions, modes, randomPayload, str, text } from "./support/sessions.js"

const secured = { client: modes.encrypted, server: modes.encrypted } as const

/** The failure of an exit, or the test fails. */
const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure, got a success")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return failure.value
}

/**
 * A line protocol written against `Socket` only: the server answers each message with its upper
 * case, and closes the connection after "bye".
 */
const upperCaseServer = (socket: Socket.Socket) =>
  Effect.scoped(Effect.gen(function*() {
    const write = yield* socket.writer
    yield* socket.runRaw((data) => {
      const message = typeof data === "string" ? data : str(data)
      return Effect.zipRight(write(message.toUpperCase()), message === "bye" ? write(new Socket.CloseEvent()) : Effect.void)
    })
  }))

describe("SessionSocket", () => {
  it.scopedLive("a Socket protocol runs over the session: platform's Socket.toChannel on one side, runRaw and writer on the other", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions(secured)
      const serverSocket = yield* SessionSocket.fromSession(server)
      const clientSocket = yield* SessionSocket.fromSession(client)
      const serving = yield* Effect.fork(upperCaseServer(serverSocket))
      const answers = yield* Stream.make("hello", "secure", "world", "bye").pipe(
        Stream.encodeText,
        Stream.pipeThroughChannel(Socket.toChannel(clientSocket)),
        Stream.decodeText(),
        Stream.runCollect
      )
      // One write is one message: no two answers merged, none split.
      expect(Chunk.toReadonlyArray(answers)).toEqual(["HELLO", "SECURE", "WORLD", "BYE"])
      // "bye" closed the session in order: the server's runRaw ended normally.
      expect(Exit.isSuccess(yield* Fiber.await(serving))).toBe(true)
    }).pipe(bounded("socket protocol over a session")))

  it.scopedLive("a message above the chunk size arrives whole, as one message", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions({
        client: { ...modes.encrypted, chunkSize: 64 * 1024 },
        server: modes.encrypted
      })
      const large = randomPayload(1024 * 1024 + 3)
      const received = yield* Deferred.make<ReadonlyArray<Uint8Array>>()
      const got: Array<Uint8Array> = []
      const serverSocket = yield* SessionSocket.fromSession(server)
      yield* Effect.forkScoped(serverSocket.runRaw((data) => {
        got.push(typeof data === "string" ? text(data) : data)
        if (got.length === 2) return Deferred.succeed(received, got)
      }))
      const write = yield* (yield* SessionSocket.fromSession(client)).writer
      yield* write(large)
      yield* write("small")
      const [first, second] = yield* Deferred.await(received)
      expectSameBytes(first!, large)
      expect(str(second!)).toBe("small")
    }).pipe(bounded("a chunked message through the socket")))

  it.scopedLive("a cut fails runRaw with SocketError \"Read\" whose cause is the session's error; a write after it fails \"Write\"", () =>
    Effect.gen(function*() {
      const { client, clientSocket } = yield* memorySessions(secured)
      const socket = yield* SessionSocket.fromSession(client)
      const running = yield* Effect.fork(socket.runRaw(() => {}))
      yield* MemorySocket.cut(clientSocket)
      const error = failureOf(yield* Fiber.await(running))
      expect(Socket.isSocketError(error)).toBe(true)
      expect(error).toMatchObject({ reason: "Read" })
      // The cause is what ended the session (here the transport's own SocketError for the cut).
      expect(error.reason === "Read" ? error.cause : undefined).toBe(yield* client.closed)
      const write = yield* socket.writer
      const written = failureOf(yield* Effect.exit(write("late")))
      expect(written).toMatchObject({ reason: "Write" })
    }).pipe(bounded("cut")))

  it.scopedLive("a CloseEvent with a code other than 1000 closes the session and fails our own runRaw with that code", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions(secured)
      const socket = yield* SessionSocket.fromSession(client)
      const peer = yield* SessionSocket.fromSession(server)
      const ours = yield* Effect.fork(socket.runRaw(() => {}))
      const theirs = yield* Effect.fork(peer.runRaw(() => {}))
      const write = yield* socket.writer
      yield* write(new Socket.CloseEvent(4001, "going away"))
      const error = failureOf(yield* Fiber.await(ours))
      expect(error).toMatchObject({ reason: "Close", code: 4001, closeReason: "going away" })
      // The peer saw an orderly close (cvg's CLOSE has no code).
      expect(Exit.isSuccess(yield* Fiber.await(theirs))).toBe(true)
    }).pipe(bounded("close with a code")))

  it.scopedLive("a packet of another type fails runRaw with UnexpectedPacket as cause, and the session stays open", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions(secured)
      const socket = yield* SessionSocket.fromSession(server)
      yield* client.send(new Packet({ id: 1, type: PacketType.COMMAND, payload: text("raw") }))
      const error = failureOf(yield* Effect.exit(socket.runRaw(() => {})))
      expect(error).toMatchObject({ reason: "Read" })
      expect(error.reason === "Read" ? error.cause : undefined).toBeInstanceOf(UnexpectedPacket)
      const write = yield* (yield* SessionSocket.fromSession(client)).writer
      yield* write("still open")
      const got = yield* Deferred.make<string>()
      yield* Effect.forkScoped(socket.runRaw((data) => Deferred.succeed(got, typeof data === "string" ? data : str(data))))
      expect(yield* Deferred.await(got)).toBe("still open")
    }).pipe(bounded("another packet type")))

  it.scopedLive("packetType picks the type both sides use; a non-byte is InvalidArgument", () =>
    Effect.gen(function*() {
      const { client, server } = yield* memorySessions(secured)
      const write = yield* (yield* SessionSocket.fromSession(client, { packetType: PacketType.STREAM_DATA })).writer
      yield* write("typed")
      const packet = yield* server.receive()
      expect([packet.type, str(packet.payload)]).toEqual([PacketType.STREAM_DATA, "typed"])
      const invalid = failureOf(yield* Effect.exit(SessionSocket.fromSession(client, { packetType: 256 as PacketType })))
      expect(invalid).toBeInstanceOf(InvalidArgument)
      expect(invalid).toMatchObject({ reason: "Option", field: "packetType" })
    }).pipe(bounded("packetType")))
})

describe("SessionSocket.reconnecting", () => {
  it.scopedLive("one handshake for every runRaw while the session lives; a new one only after it ended", () =>
    Effect.gen(function*() {
      const network = yield* memoryNetwork(modes.encrypted)
      yield* Effect.forkScoped(network.server.run((session) =>
        Effect.flatMap(SessionSocket.fromSession(session), (socket) =>
          Effect.scoped(Effect.flatMap(socket.writer, (write) => socket.runRaw((data) => write(data)))))))
      let connects = 0
      const socket = yield* SessionSocket.reconnecting(Effect.suspend(() => {
        connects++
        return network.connect(modes.encrypted)
      }))
      expect(connects).toBe(1)
      const write = yield* socket.writer

      // Three runs, each interrupted once its echo came back: still the first connection.
      for (const round of [1, 2, 3]) {
        const back = yield* Deferred.make<string>()
        const running = yield* Effect.fork(socket.runRaw((data) => Deferred.succeed(back, typeof data === "string" ? data : str(data))))
        yield* write(`round ${round}`)
        expect(yield* Deferred.await(back)).toBe(`round ${round}`)
        yield* Fiber.interrupt(running)
      }
      expect([connects, network.accepted()]).toEqual([1, 1])

      // The session ends (closed in order): runRaw returns, and the next one connects again.
      const last = yield* Effect.fork(socket.runRaw(() => {}))
      yield* write(new Socket.CloseEvent())
      expect(Exit.isSuccess(yield* Fiber.await(last))).toBe(true)
      const back = yield* Deferred.make<string>()
      yield* Effect.forkScoped(socket.runRaw((data) => Deferred.succeed(back, typeof data === "string" ? data : str(data))))
      yield* write("again")
      expect(yield* Deferred.await(back)).toBe("again")
      expect([connects, network.accepted()]).toEqual([2, 2])
    }).pipe(bounded("reconnecting socket")))

  it.scopedLive("once the socket's scope has closed, a write fails instead of waiting for a session", () =>
    Effect.gen(function*() {
      const network = yield* memoryNetwork(modes.encrypted)
      yield* Effect.forkScoped(network.server.run(() => Effect.never))
      const scope = yield* Scope.make()
      const socket = yield* Scope.extend(SessionSocket.reconnecting(network.connect(modes.encrypted)), scope)
      const write = yield* socket.writer
      yield* Scope.close(scope, Exit.void)
      expect(failureOf(yield* Effect.exit(write("late")))).toMatchObject({ reason: "Write" })
      expect(failureOf(yield* Effect.exit(socket.runRaw(() => {})))).toMatchObject({ reason: "Open" })
    }).pipe(bounded("write after release")))

  it.scopedLive("the first connection is made at once: its typed error fails the socket's creation", () =>
    Effect.gen(function*() {
      const network = yield* memoryNetwork({ ...modes.encrypted, password: "right" })
      yield* Effect.forkScoped(network.server.run(() => Effect.never))
      const error = failureOf(yield* Effect.exit(SessionSocket.reconnecting(network.connect({ ...modes.encrypted, password: "wrong" }))))
      expect(error).toMatchObject({ _tag: "AuthFailed" })
    }).pipe(bounded("first connection fails")))
})
