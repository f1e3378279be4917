/**
 * `cvg connect HOST:PORT`: an encrypted netcat. Each line of stdin (its newline kept; a line over
 * 1 MiB goes in 1 MiB pieces) is one request (COMMAND) to the peer; each reply's payload goes to
 * stdout, in order. Up to 16 requests are in flight, and stdout's back-pressure slows the reading of
 * stdin. At the end of stdin, once every reply is out, the session is closed.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import { NodeStream } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import { connectScoped, Packet, PacketType } from "../index.js"
import { clientOptions, clientSessionOptions, fileError, parseAddress, writeStdout } from "./common.js"
import type { FileError } from "./errors.js"

/** Largest request `connect` sends: a longer line goes in pieces of this size. */
export const MAX_LINE = 1024 * 1024

const IN_FLIGHT = 16

/** Cuts a byte stream after each `\n` (kept) and at `max` bytes; what is left at the end goes last. */
export const splitLines = <E>(max: number) => (input: Stream.Stream<Uint8Array, E>): Stream.Stream<Uint8Array, E> =>
  Stream.suspend(() => {
    let pending: Array<Uint8Array> = []
    let pendingBytes = 0
    const take = (): Uint8Array => {
      const line = Buffer.concat(pending, pendingBytes)
      pending = []
      pendingBytes = 0
      return line
    }
    const cut = (chunk: Uint8Array): Array<Uint8Array> => {
      const lines: Array<Uint8Array> = []
      let start = 0
      while (start < chunk.length) {
        const newline = chunk.indexOf(0x0a, start)
        const end = Math.min(newline === -1 ? chunk.length : newline + 1, start + max - pendingBytes)
        pending.push(chunk.subarray(start, end))
        pendingBytes += end - start
        if (pendingBytes === max || (newline !== -1 && end === newline + 1)) lines.push(take())
        start = end
      }
      return lines
    }
    return input.pipe(
      Stream.mapConcat(cut),
      Stream.concat(Stream.suspend(() => pendingBytes > 0 ? Stream.make(take()) : Stream.empty))
    )
  })

const stdin: Stream.Stream<Uint8Array, FileError> = NodeStream.fromReadable<FileError, Uint8Array>(
  () => process.stdin,
  (error) => fileError("stdin", error)
)

export const connectCommand = Command.make(
  "connect",
  {
    address: Args.text({ name: "HOST:PORT" }).pipe(Args.withDescription("The cvg server to connect to, e.g. 127.0.0.1:5000 or [::1]:5000.")),
    ...clientOptions
  },
  (options) =>
    Effect.scoped(
      Effect.gen(function*() {
        const { host, port } = yield* parseAddress(options.address)
        const session = yield* connectScoped({ host, port, ...yield* clientSessionOptions(options) })
        yield* stdin.pipe(
          splitLines(MAX_LINE),
          Stream.mapEffect(
            (line) => session.request(new Packet({ id: session.nextId(), type: PacketType.COMMAND, payload: line }), { expect: PacketType.RESPONSE }),
            { concurrency: IN_FLIGHT }
          ),
          Stream.runForEach((reply) => writeStdout(reply.payload))
        )
        yield* session.close
      })
    )
).pipe(
  Command.withDescription(
    "An encrypted netcat: each line of stdin is sent to the peer as one request, and each answer is written to stdout, in order. Ends when stdin ends and every answer is out. Against `cvg serve`, an echo server gives the input back, --exec runs a command per line."
  )
)
