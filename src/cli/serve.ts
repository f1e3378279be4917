/**
 * `cvg serve`: a cvg server that answers each request (COMMAND) in one of three ways: `--echo` (the
 * default) sends the payload back, `--exec CMD` runs CMD with the payload on stdin and answers with
 * its stdout, `--stdout` prints the payload on stdout (each session's in the order sent; sessions
 * interleave request by request) and answers with nothing. It runs until
 * interrupted (Ctrl-C, SIGTERM); each connection is served on its own, and a failed one is logged as
 * one line on stderr without affecting the others.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { spawn } from "node:child_process"
import { Effect, Option } from "effect"
import { type InvalidArgument, Packet, PacketType, RemoteError, serve, type Session, type SessionError } from "../index.js"
import { serverOptions, serverSessionOptions, stderrIsTty, writeStdout } from "./common.js"
import { type FileError, UsageError } from "./errors.js"
import { formatBytes } from "./progress.js"

/** The line servers print once they listen: always on a terminal, and when `--port 0` asked for any port. */
export const announce = (requested: number) => (address: { readonly hostname: string; readonly port: number }) =>
  Effect.sync(() => {
    if (!stderrIsTty() && requested !== 0) return
    const hostname = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname
    process.stderr.write(`cvg: listening on ${hostname}:${address.port}\n`)
  })

interface ExecLimits {
  readonly maxOutput: number
  readonly timeoutSeconds: number
}

/** Why a command could not answer, as the `RemoteError` the requester gets (PROTOCOL.md §8.3). */
const execFailure = (detail: string) => new RemoteError({ reason: "Failure", detail })

/**
 * Runs `command` through `/bin/sh -c` with `input` on its stdin; its stdout, at most `maxOutput`
 * bytes, is the answer. More output, a non-zero exit or the timeout kill it and fail the request.
 * Its stderr goes to the server's stderr.
 */
export const runCommand = (command: string, input: Uint8Array, limits: ExecLimits): Effect.Effect<Uint8Array, RemoteError> =>
  Effect.async<Uint8Array, RemoteError>((resume) => {
    const child = spawn("/bin/sh", ["-c", command], { stdio: ["pipe", "pipe", "inherit"] })
    const chunks: Array<Buffer> = []
    let bytes = 0
    let failure: RemoteError | undefined
    const stop = (error: RemoteError) => {
      failure ??= error
      child.kill("SIGKILL")
    }
    const timer = setTimeout(() => stop(execFailure(`the command ran over ${limits.timeoutSeconds} s`)), limits.timeoutSeconds * 1000)
    child.stdout.on("data", (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes > limits.maxOutput) stop(execFailure(`the command wrote more than ${formatBytes(limits.maxOutput)}`))
      else chunks.push(chunk)
    })
    // A command that does not read its input closes the pipe early: that is not a failure.
    child.stdin.on("error", () => undefined)
    child.stdin.end(input)
    child.on("error", (error) => stop(execFailure(`cannot run the command: ${error.message}`)))
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      if (failure !== undefined) return resume(Effect.fail(failure))
      if (code !== 0) return resume(Effect.fail(execFailure(code === null ? `the command was killed by ${signal}` : `the command exited with code ${code}`)))
      resume(Effect.succeed(Buffer.concat(chunks, bytes)))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

type Mode =
  | { readonly _tag: "echo" }
  | { readonly _tag: "exec"; readonly command: string; readonly limits: ExecLimits }
  | { readonly _tag: "stdout" }

/** Answers one session's requests in `mode`; packets other than COMMAND get no answer. */
const answer = (mode: Mode, session: Session, printing: Effect.Semaphore) =>
  session.serve((packet): Effect.Effect<Packet | undefined, SessionError | InvalidArgument | FileError> => {
    if (packet.type !== PacketType.COMMAND) return Effect.succeed(undefined)
    const respond = (payload: Uint8Array) => new Packet({ id: packet.id, type: PacketType.RESPONSE, payload })
    switch (mode._tag) {
      case "echo":
        return Effect.succeed(respond(packet.payload))
      case "exec":
        return runCommand(mode.command, packet.payload, mode.limits).pipe(
          Effect.map(respond),
          Effect.catchAll((error) =>
            // Answered here, so that the requester learns why (the default would send only the tag).
            Effect.zipRight(
              Effect.logWarning(error.detail),
              Effect.as(session.replyError(packet, error), undefined)
            )
          )
        )
      case "stdout":
        return printing.withPermits(1)(Effect.as(writeStdout(packet.payload), respond(new Uint8Array(0))))
    }
  }).pipe(Effect.annotateLogs("peer", Option.getOrElse(session.info.peer, () => "unknown")))

export const serveCommand = Command.make(
  "serve",
  {
    ...serverOptions,
    echo: Options.boolean("echo").pipe(Options.withDescription("Answer each request with its own payload (the default).")),
    exec: Options.text("exec").pipe(
      Options.withPseudoName("CMD"),
      Options.withDescription("Run this shell command (/bin/sh -c) for each request, with the payload on its stdin, and answer with its stdout. A non-zero exit, the timeout or too much output fail the request."),
      Options.optional
    ),
    stdout: Options.boolean("stdout").pipe(Options.withDescription("Print each request's payload on stdout and answer with an empty payload.")),
    maxOutput: Options.integer("max-output").pipe(
      Options.withPseudoName("BYTES"),
      Options.withDescription("With --exec: the most bytes a command may write to stdout (default 16 MiB)."),
      Options.withDefault(16 * 1024 * 1024)
    ),
    execTimeout: Options.integer("exec-timeout").pipe(
      Options.withPseudoName("SECONDS"),
      Options.withDescription("With --exec: seconds a command may run (default 60)."),
      Options.withDefault(60)
    )
  },
  (options) =>
    Effect.gen(function*() {
      const modes = [options.echo, Option.isSome(options.exec), options.stdout].filter(Boolean).length
      if (modes > 1) return yield* new UsageError({ detail: "choose one of --echo, --exec and --stdout" })
      if (options.maxOutput < 1) return yield* new UsageError({ detail: "--max-output must be at least 1" })
      if (options.execTimeout < 1) return yield* new UsageError({ detail: "--exec-timeout must be at least 1" })
      const mode: Mode = Option.isSome(options.exec)
        ? { _tag: "exec", command: options.exec.value, limits: { maxOutput: options.maxOutput, timeoutSeconds: options.execTimeout } }
        : options.stdout
        ? { _tag: "stdout" }
        : { _tag: "echo" }
      const sessionOptions = yield* serverSessionOptions(options)
      const printing = yield* Effect.makeSemaphore(1)
      return yield* serve(
        {
          ...sessionOptions,
          onListen: announce(options.port),
          // Printed in the order sent: one request of a session at a time (connect keeps 16 in flight).
          ...(mode._tag === "stdout" ? { maxConcurrentHandlers: 1 } : {})
        },
        (session) => answer(mode, session, printing)
      )
    })
).pipe(
  Command.withDescription(
    "Listen for cvg connections and answer every request: as an echo server (--echo, the default), by running a command per request (--exec CMD), or by printing payloads on stdout (--stdout). Runs until Ctrl-C or SIGTERM."
  )
)
