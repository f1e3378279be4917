/**
 * What an alert received during the handshake means on this side (PROTOCOL.md §6). Alerts after the
 * handshake are the channel's (src/channel/SecureChannel.ts).
 */
import { AuthFailed, HandshakeError, ProtocolError } from "../errors.js"
import { AlertCode, alertName } from "../wire/Messages.js"

export const handshakeAlertToError = (code: AlertCode): AuthFailed | HandshakeError | ProtocolError => {
  switch (code) {
    case AlertCode.VERSION:
      return new HandshakeError({ reason: "Version", detail: "peer does not speak this version" })
    case AlertCode.MALFORMED:
      return new HandshakeError({ reason: "Malformed", detail: "peer rejected a message" })
    case AlertCode.KEY_CONFIRMATION:
      return new HandshakeError({ reason: "KeyConfirmation", detail: "peer saw a different transcript" })
    case AlertCode.MISSING_PASSWORD:
      return new AuthFailed({ reason: "MissingPassword" })
    case AlertCode.WRONG_PASSWORD:
      return new AuthFailed({ reason: "WrongPassword" })
    case AlertCode.SERVER_UNPROVEN:
      return new AuthFailed({ reason: "ServerUnproven" })
    case AlertCode.DECRYPT_FAILED:
      return new ProtocolError({ reason: "DecryptFailed" })
    case AlertCode.ENCRYPTION_MISMATCH:
      // Reserved (§6): each side computes a mismatch itself (§3.2), so no version sends this code.
      return new HandshakeError({ reason: "Aborted", detail: `peer sent the reserved alert ${alertName(code)}` })
    case AlertCode.LIMIT_EXCEEDED:
      return new ProtocolError({ reason: "LimitExceeded", detail: "peer reported a limit" })
    case AlertCode.TIMEOUT:
      return new HandshakeError({ reason: "Timeout", detail: "peer timed out" })
    case AlertCode.INTERNAL:
      return new HandshakeError({ reason: "Aborted", detail: "peer aborted" })
  }
}

/**
 * A plaintext alert that arrives once this side holds encryption keys (PROTOCOL.md §6): anyone on
 * the path could have written it, so its code is reported but never acted upon.
 */
export const unauthenticatedAlert = (code: number): HandshakeError =>
  new HandshakeError({
    reason: "Aborted",
    detail: `unauthenticated plaintext alert ${alertName(code)} after keys were agreed; its meaning is not trusted`
  })
