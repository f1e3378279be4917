/**
 * The encryption negotiation table (PROTOCOL.md §4.1). The server's setting wins, as in the seed,
 * except that a client which requires encryption is never downgraded: that cell is a mismatch.
 */
import type { EncryptionPolicy } from "../errors.js"

/** `true`: encrypted, `false`: plaintext, `undefined`: `EncryptionMismatch` on both sides. */
export const negotiate = (client: EncryptionPolicy, server: EncryptionPolicy): boolean | undefined => {
  switch (server) {
    case "required":
      return true
    case "preferred":
      return client !== "disabled"
    case "disabled":
      return client === "required" ? undefined : false
  }
}
