/**
 * `cvg receive --out DIR`: listens for one `cvg send` (or, with `--keep`, for any number of them) and
 * stores each file in DIR under its base name (transfer.ts has the exchange). A file is written to a
 * hidden partial name and renamed only once its size is verified, so a failed transfer leaves nothing
 * under the real name. A name with a path in it, `.`, `..`, or one already in DIR is refused.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { constants } from "node:fs"
import { access, mkdir, rename, unlink } from "node:fs/promises"
import { join } from "node:path"
import { Deferred, Effect, Option, Stream } from "effect"
import { Packet, RemoteError, serve, type Session } from "../index.js"
import { fileError, serverOptions, serverSessionOptions, stderrIsTty } from "./common.js"
import { FileError, TransferFailed } from "./errors.js"
import { makeProgress } from "./progress.js"
import { announce } from "./serve.js"
import { DATA_TYPE, decodeHeader, DONE_TYPE, encodeDone, FAILED_TYPE, HEADER_TYPE, openFile, READY_TYPE, unsafeName, writeAll } from "./transfer.js"

const exists = (path: string): Effect.Effect<boolean> =>
  Effect.promise(() => access(path, constants.F_OK).then(() => true, () => false))

/** Refuses the sender's header: it learns why, and so does the receiver's exit line. */
const refuse = (session: Session, header: Packet, reason: string, error: TransferFailed | FileError) =>
  Effect.zipRight(
    session.replyError(header, new RemoteError({ reason: "Failure", detail: reason })).pipe(Effect.ignore),
    Effect.fail(error)
  )

/** Receives one file from one session into `dir`. */
export const receiveFile = (session: Session, dir: string, showProgress: boolean) =>
  Effect.scoped(
    Effect.gen(function*() {
      const header = yield* session.receive({ type: HEADER_TYPE })
      const parsed = decodeHeader(header.payload)
      if (Option.isNone(parsed)) {
        return yield* refuse(session, header, "malformed header", new TransferFailed({ detail: "the sender's header is malformed" }))
      }
      const { name, size } = parsed.value
      const problem = unsafeName(name)
      if (Option.isSome(problem)) {
        return yield* refuse(session, header, `refused the name: ${problem.value}`, new TransferFailed({ detail: `refused the name ${JSON.stringify(name)}: ${problem.value}` }))
      }
      const target = join(dir, name)
      if (yield* exists(target)) {
        return yield* refuse(session, header, `${name} already exists at the receiver`, new FileError({ path: target, code: "EEXIST", detail: "already exists: not overwritten" }))
      }
      const partial = join(dir, `.${name}.cvg-partial`)
      const handle = yield* openFile(partial, "w")
      yield* session.reply(header, new Packet({ id: header.id, type: READY_TYPE, payload: new Uint8Array(0) }))

      const progress = yield* makeProgress(`receive ${name}`, size, showProgress)
      let received = 0
      const transfer = Effect.gen(function*() {
        const incoming = yield* session.receiveStream({ type: DATA_TYPE })
        yield* Stream.runForEach(incoming.data, (chunk) =>
          Effect.suspend((): Effect.Effect<void, TransferFailed | FileError> => {
            received += chunk.length
            if (received > size) return Effect.fail(new TransferFailed({ detail: `more than the ${size} bytes announced` }))
            return Effect.zipRight(writeAll(partial, handle, chunk), progress.add(chunk.length))
          }))
        if (received !== size) {
          return yield* new TransferFailed({ detail: `received ${received} bytes of the ${size} announced` })
        }
        yield* Effect.tryPromise({ try: () => handle.close(), catch: (error) => fileError(partial, error) })
        if (yield* exists(target)) return yield* new FileError({ path: target, code: "EEXIST", detail: "appeared during the transfer: not overwritten" })
        yield* Effect.tryPromise({ try: () => rename(partial, target), catch: (error) => fileError(target, error) })
      })
      yield* transfer.pipe(
        Effect.tapError((error) =>
          Effect.all([
            progress.abandon,
            Effect.promise(() => unlink(partial).catch(() => undefined)),
            // Tell the sender why; the session may already be gone.
            session.send(new Packet({ id: header.id, type: FAILED_TYPE, payload: new TextEncoder().encode(error.message) })).pipe(Effect.ignore)
          ])
        )
      )
      yield* session.send(new Packet({ id: header.id, type: DONE_TYPE, payload: encodeDone(received) }))
      yield* progress.finish
      yield* session.close
    })
  )

export const receiveCommand = Command.make(
  "receive",
  {
    out: Options.text("out").pipe(Options.withPseudoName("DIR"), Options.withDescription("Folder to store received files in (created if missing).")),
    ...serverOptions,
    keep: Options.boolean("keep").pipe(
      Options.withDescription("Keep receiving files until interrupted, logging failed transfers, instead of exiting after the first.")
    )
  },
  (options) =>
    Effect.gen(function*() {
      const sessionOptions = yield* serverSessionOptions(options)
      const dir = options.out
      yield* Effect.tryPromise({ try: () => mkdir(dir, { recursive: true }), catch: (error) => fileError(dir, error) })
      const showProgress = stderrIsTty()
      const first = yield* Deferred.make<void, Effect.Effect.Error<ReturnType<typeof receiveFile>>>()
      const server = serve(
        { ...sessionOptions, onListen: announce(options.port) },
        (session) => {
          const peer = Option.getOrElse(session.info.peer, () => "unknown")
          const transfer = receiveFile(session, dir, showProgress)
          return options.keep
            ? transfer.pipe(
              Effect.tapError((error) => Effect.logWarning(error.message).pipe(Effect.annotateLogs("peer", peer))),
              Effect.ignore
            )
            : Effect.flatMap(Effect.exit(transfer), (exit) => Deferred.done(first, exit))
        }
      )
      return yield* Effect.raceFirst(server, Deferred.await(first))
    })
).pipe(
  Command.withDescription(
    "Listen for `cvg send` and store the file in --out DIR under its base name; exits after the first transfer unless --keep. Shows a progress bar on stderr when it is a terminal, nothing when piped."
  )
)
