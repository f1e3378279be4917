/**
 * The server's proof of its identity key (PROTOCOL.md §3.7), like TLS 1.3's CertificateVerify: an
 * Ed25519 signature over a context string and the hash of both hellos. The hellos hold both sides'
 * fresh nonces and ephemeral P-521 keys, so a signature is good for this one handshake only, and a
 * relay that terminates the handshake with keys of its own cannot reuse one the server made for it.
 */
import { Either } from "effect"
import type { CryptoService } from "../crypto/Crypto.js"
import { AuthFailed, HandshakeError, ServerKeyMismatch } from "../errors.js"
import { fingerprintOf, type IdentityKey } from "../identity/IdentityKey.js"
import { concatBytes } from "../internal/bytes.js"
import { ServerIdentity } from "../wire/Messages.js"
import type { ServerKeyInfo } from "../channel/SecureChannel.js"

/**
 * Sets the signed bytes apart from anything else an identity key might ever sign; the 0x00 ends the
 * context, so that no context is a prefix of another.
 */
const CONTEXT = concatBytes([new TextEncoder().encode("cvg-core v4 server identity"), Uint8Array.of(0)])

/** What the signature covers: `context ‖ 0x00 ‖ H1` (§3.7). */
const signedContent = (helloHash: Uint8Array): Uint8Array => concatBytes([CONTEXT, helloHash])

/** The server's SERVER_IDENTITY for this handshake; `helloHash` is H1, the hash of both hellos (§4.2). */
export const proveIdentity = (
  crypto: CryptoService,
  identity: IdentityKey,
  helloHash: Uint8Array
): Either.Either<ServerIdentity, HandshakeError> =>
  Either.map(
    Either.mapLeft(
      crypto.signEd25519(identity.privateKey, signedContent(helloHash)),
      (cause) => new HandshakeError({ reason: "Aborted", detail: "signing with the identity key failed", cause })
    ),
    (signature) => new ServerIdentity({ serverKey: identity.publicKey, signature })
  )

/** What the client trusts in a server key (§3.7): a pinned fingerprint, a known-hosts entry, or nothing. */
export interface Trust {
  readonly pinned: string | undefined
  /** The fingerprint the known-hosts file holds for this peer; `null` when it holds none. */
  readonly known: string | null | undefined
}

/**
 * The client's check of SERVER_IDENTITY, once key confirmation passed: the signature first (a key the
 * server did not prove is `ServerKeyRejected`, whatever it is), then whether the proven key is the
 * one this client trusts.
 */
export const checkIdentity = (
  crypto: CryptoService,
  message: ServerIdentity,
  helloHash: Uint8Array,
  trust: Trust
): Either.Either<ServerKeyInfo, AuthFailed | ServerKeyMismatch> => {
  if (!crypto.verifyEd25519(message.serverKey, signedContent(helloHash), message.signature)) {
    return Either.left(new AuthFailed({ reason: "ServerKeyRejected" }))
  }
  const fingerprint = fingerprintOf(message.serverKey)
  // Fingerprints are public, so an ordinary comparison leaks nothing.
  if (trust.pinned !== undefined) {
    return trust.pinned === fingerprint
      ? Either.right({ fingerprint, trust: "Pinned" })
      : Either.left(new ServerKeyMismatch({ reason: "Pinned", expected: trust.pinned, actual: fingerprint }))
  }
  if (trust.known === null) return Either.right({ fingerprint, trust: "FirstUse" })
  if (trust.known !== undefined) {
    return trust.known === fingerprint
      ? Either.right({ fingerprint, trust: "KnownHost" })
      : Either.left(new ServerKeyMismatch({ reason: "KnownHost", expected: trust.known, actual: fingerprint }))
  }
  return Either.right({ fingerprint, trust: "Unverified" })
}
