/**
 * `cvg keygen FILE`: a new server identity key (README "Server identity"), written as a PKCS#8 PEM
 * readable by its owner alone and never over an existing file; its fingerprint, what clients pin with
 * `--server-key`, is the one line on stdout. `--show` prints the fingerprint of a key that exists.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Console, Effect } from "effect"
import { generateIdentityKey } from "../identity/IdentityKey.js"
import { loadIdentityKey, saveIdentityKey } from "../identity/KeyFile.js"
import { stderrIsTty } from "./common.js"

export const keygenCommand = Command.make(
  "keygen",
  {
    file: Args.text({ name: "FILE" }),
    show: Options.boolean("show").pipe(
      Options.withDescription("Print the fingerprint of the existing key in FILE instead of writing a new one.")
    )
  },
  ({ file, show }) =>
    Effect.gen(function*() {
      const key = show ? yield* loadIdentityKey(file) : yield* Effect.tap(generateIdentityKey, (key) => saveIdentityKey(key, file))
      yield* Console.log(key.fingerprint)
      if (!show && stderrIsTty()) {
        process.stderr.write(`cvg: wrote ${file} (mode 600); serve with --identity ${file}, clients pin --server-key ${key.fingerprint}\n`)
      }
    })
).pipe(
  Command.withDescription(
    "Generate a server identity key (Ed25519) into FILE, readable by its owner only and never overwriting a file, and print its fingerprint (sha256:…), which clients pin with --server-key. --show prints the fingerprint of an existing key."
  )
)
