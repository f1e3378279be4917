/**
 * What the two hellos decide (PROTOCOL.md §4.1). The encryption table: the server's setting wins, as
 * in the seed, except that a client which requires encryption is never downgraded: that cell is a
 * mismatch. The capability table: a client that requires a server key is never downgraded either.
 */
import { CapabilityMismatch, type ClientCapability, type EncryptionPolicy, type ServerCapability } from "../errors.js"
import type { ClientHello, ServerHello } from "../wire/Messages.js"

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

/** The capabilities a hello announces (PROTOCOL.md §4.1), by name, for errors and logs. */
export const clientCapabilities = (hello: ClientHello): ReadonlyArray<ClientCapability> => [
  ...(hello.password ? ["Password" as const] : []),
  ...(hello.requiresServerKey ? ["RequiresServerKey" as const] : [])
]
export const serverCapabilities = (hello: ServerHello): ReadonlyArray<ServerCapability> => [
  ...(hello.serverKey ? ["ServerKey" as const] : []),
  ...(hello.passwordRequired ? ["RequiresPassword" as const] : [])
]

/**
 * The capability table (PROTOCOL.md §4.1): a client that requires a server key and a server that has
 * none cannot agree, and both sides find it from the same two hellos. Password disagreements are not
 * decided here: they stay `AuthFailed` after key confirmation (§5), as in version 3.
 */
export const capabilityMismatch = (client: ClientHello, server: ServerHello): CapabilityMismatch | undefined =>
  client.requiresServerKey && !server.serverKey
    ? new CapabilityMismatch({ client: clientCapabilities(client), server: serverCapabilities(server) })
    : undefined
