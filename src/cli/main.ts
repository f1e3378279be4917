/**
 * `cvg`, the command line of cvg-core (README.md, "Command line"). Every command's failures stay typed
 * in the error channel up to here, where each becomes one line on stderr (`cvg: ...`) and the exit
 * code of its tag (errors.ts).
 *
 * Run through bin/cvg.mjs, which loads this file from dist/ in an installed package and from src/
 * (through tsx) in a clone.
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import { NodeContext } from "@effect/platform-node"
import { Cause, Console, Effect, Exit, Logger, Option } from "effect"
import { benchCommand, runBench } from "./bench.js"
import { lineLogger } from "./common.js"
import { connectCommand } from "./connect.js"
import { keygenCommand } from "./keygen.js"
import { describeCause, EXIT_CODES, ExitCode, FileError, UsageError } from "./errors.js"
import { receiveCommand } from "./receive.js"
import { sendCommand } from "./send.js"
import { packageInfo } from "./root.js"
import { serveCommand } from "./serve.js"

const version = packageInfo.version

const cvg = Command.make("cvg", {}, () =>
  Effect.fail(new UsageError({ detail: "name a command: serve, connect, send, receive, keygen or bench (cvg --help lists them)" }))).pipe(
    Command.withDescription(
      "The cvg-core command line: an encrypted, password-authenticated packet protocol (P-521, AES-256-GCM) from the shell."
    ),
    Command.withSubcommands([serveCommand, connectCommand, sendCommand, receiveCommand, keygenCommand, benchCommand])
  )

const footer = HelpDoc.blocks([
  HelpDoc.h1("PASSWORDS"),
  HelpDoc.p(
    "A password is never given on the command line, where other users and the shell history see it: --password is refused. Use --password-file PATH (the file's first line) or --password-env NAME (an environment variable). Without either, no password is used, and a server that requires one refuses the connection (exit 4)."
  ),
  HelpDoc.h1("EXIT CODES"),
  HelpDoc.p(EXIT_CODES.map(([code, meaning]) => `${code.padStart(3)}  ${meaning}`).join("\n")),
  HelpDoc.p("Every failure prints one line on stderr: cvg: <what failed>.")
])

const cli = Command.run(cvg, { name: "cvg", version, footer })

/** `--password` in any form: the one option that is refused before anything else is parsed. */
const isPasswordFlag = (arg: string) => arg === "--password" || arg.startsWith("--password=")

/** Help without its colours when stdout is not a terminal, or when NO_COLOR is set (no-color.org). */
const plain = process.stdout.isTTY !== true || (process.env["NO_COLOR"] ?? "") !== ""
const stripStyle = (item: unknown) => typeof item === "string" ? item.replace(/\u001b\[[0-9;]*m/g, "") : item

/**
 * The console @effect/cli prints with: its parse errors are dropped, since the top reports them as one
 * line instead of a multi-line printout; help goes to stdout, plain unless it is a terminal.
 */
const cliConsole = Effect.map(Effect.console, (console): Console.Console => ({
  ...console,
  error: () => Effect.void,
  log: (...args) => plain ? console.log(...args.map(stripStyle)) : console.log(...args)
}))

const program = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    if (args.some(isPasswordFlag)) {
      return yield* new UsageError({
        detail: "--password is refused: a password on the command line is visible to other users and kept in shell history; use --password-file PATH or --password-env NAME"
      })
    }
    // Everything after `bench` is the bench's (its own --help too), which @effect/cli would parse as ours.
    if (args[0] === "bench") return yield* runBench(args.slice(1))
    const console = yield* cliConsole
    return yield* cli(["node", "cvg", ...args]).pipe(
      Effect.provide(NodeContext.layer),
      (effect) => Console.withConsole(effect, console)
    )
  }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, lineLogger)))

/** Exits once stdout has taken everything written to it. */
const exit = (code: number) => {
  if (process.stdout.writableLength === 0) process.exit(code)
  process.stdout.once("drain", () => process.exit(code))
  process.stdout.once("error", () => process.exit(code))
}

const fiber = Effect.runFork(program(process.argv.slice(2)))
const interrupt = () => fiber.unsafeInterruptAsFork(fiber.id())
process.once("SIGINT", interrupt)
process.once("SIGTERM", interrupt)
/** stdout's reader went away (`cvg connect … | head -1`): like any filter, stop quietly. */
const readerGone = (cause: Cause.Cause<unknown>): boolean =>
  Option.exists(Cause.failureOption(cause), (error) => error instanceof FileError && error.path === "stdout" && error.code === "EPIPE")

fiber.addObserver((result) => {
  if (Exit.isSuccess(result) || readerGone(result.cause)) return exit(ExitCode.ok)
  const { code, line } = describeCause(result.cause)
  if (line !== undefined) process.stderr.write(`cvg: ${line}\n`)
  exit(code)
})
