/**
 * `cvg send FILE HOST:PORT`: sends one file to a `cvg receive`, streamed with back-pressure from the
 * receiver's credit (transfer.ts has the exchange). Succeeds once the receiver confirms that it has
 * every byte under the file's name.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import { basename } from "node:path"
import { Effect, Option, Stream } from "effect"
import { connectScoped, Packet } from "../index.js"
import { clientOptions, clientSessionOptions, fileError, parseAddress, stderrIsTty } from "./common.js"
import { FileError, TransferFailed } from "./errors.js"
import { makeProgress } from "./progress.js"
import { DATA_TYPE, decodeDone, DONE_TYPE, encodeHeader, FAILED_TYPE, HEADER_TYPE, openFile, READY_TYPE, readChunks } from "./transfer.js"

export const sendCommand = Command.make(
  "send",
  {
    file: Args.text({ name: "FILE" }).pipe(Args.withDescription("The file to send; the receiver stores it under its base name.")),
    address: Args.text({ name: "HOST:PORT" }).pipe(Args.withDescription("Where `cvg receive` listens, e.g. 127.0.0.1:5000.")),
    ...clientOptions
  },
  (options) =>
    Effect.scoped(
      Effect.gen(function*() {
        const { host, port } = yield* parseAddress(options.address)
        const sessionOptions = yield* clientSessionOptions(options)
        const path = options.file
        const handle = yield* openFile(path, "r")
        const stats = yield* Effect.tryPromise({ try: () => handle.stat(), catch: (error) => fileError(path, error) })
        if (!stats.isFile()) return yield* new FileError({ path, code: "EINVAL", detail: "not a regular file" })
        const name = basename(path)
        const size = stats.size

        const session = yield* connectScoped({ host, port, ...sessionOptions })
        const id = session.nextId()
        yield* session.request(new Packet({ id, type: HEADER_TYPE, payload: encodeHeader({ name, size }) }), { expect: READY_TYPE })

        const progress = yield* makeProgress(`send ${name}`, size, stderrIsTty())
        yield* Effect.gen(function*() {
          yield* session.sendStream(
            { id: session.nextId(), type: DATA_TYPE },
            readChunks(path, handle).pipe(Stream.tap((chunk) => progress.add(chunk.length)))
          )
          // The receiver's verdict: every byte on its disk under the name, or why not.
          const verdict = yield* session.receive({ id })
          const text = new TextDecoder().decode(verdict.payload)
          if (verdict.type === FAILED_TYPE) return yield* new TransferFailed({ detail: `the receiver says: ${text}` })
          const done = decodeDone(verdict.payload)
          if (verdict.type !== DONE_TYPE || Option.isNone(done)) {
            return yield* new TransferFailed({ detail: "the receiver's answer is not a transfer verdict" })
          }
          if (done.value.bytes !== size) {
            return yield* new TransferFailed({ detail: `the receiver stored ${done.value.bytes} bytes of ${size} (did the file change while it was sent?)` })
          }
          yield* progress.finish
        }).pipe(Effect.onError(() => progress.abandon))
        yield* session.close
      })
    )
).pipe(
  Command.withDescription(
    "Send FILE to a `cvg receive` at HOST:PORT, streamed with back-pressure. Shows a progress bar (bytes, rate, ETA) on stderr when it is a terminal, nothing when piped. Exits 0 once the receiver has stored every byte."
  )
)
