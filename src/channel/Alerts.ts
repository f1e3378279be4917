/**
 * Alerts and errors, both ways, in one place (PROTOCOL.md §6): the alert a side sends for each of its
 * errors, and what a received alert means, during the handshake and after it.
 */
import type * as Socket from "@effect/platform/Socket"
import type { ConnectionClosed, EncryptionMismatch } from "../errors.js"
import { AuthFailed, HandshakeError, PeerAlert, ProtocolError } from "../errors.js"
import { AlertCode, alertName } from "../wire/Messages.js"

/** The alert that tells the peer why we are closing. */
export const errorToAlert = (error: ProtocolError | ConnectionClosed | AuthFailed | HandshakeError | EncryptionMismatch | Socket.SocketError): AlertCode => {
  switch (error._tag) {
    case "HandshakeError":
      return error.reason === "Version"
        ? AlertCode.VERSION
        : error.reason === "KeyConfirmation"
        ? AlertCode.KEY_CONFIRMATION
        : error.reason === "Timeout"
        ? AlertCode.TIMEOUT
        : error.reason === "Malformed" || error.reason === "InvalidPublicKey" || error.reason === "NotCvgPeer"
        ? AlertCode.MALFORMED
        : AlertCode.INTERNAL
    case "AuthFailed":
      return error.reason === "MissingPassword"
        ? AlertCode.MISSING_PASSWORD
        : error.reason === "WrongPassword"
        ? AlertCode.WRONG_PASSWORD
        : AlertCode.SERVER_UNPROVEN
    case "EncryptionMismatch":
      return AlertCode.ENCRYPTION_MISMATCH
    // A keep-alive that went unanswered (PROTOCOL.md §7.4): a peer that is only slow learns why.
    case "ConnectionClosed":
      return error.reason === "Timeout" ? AlertCode.TIMEOUT : AlertCode.INTERNAL
    case "ProtocolError":
      return error.reason === "DecryptFailed"
        ? AlertCode.DECRYPT_FAILED
        : error.reason === "LimitExceeded" || error.reason === "MessageTooLarge" || error.reason === "FrameTooLarge"
        ? AlertCode.LIMIT_EXCEEDED
        : error.reason === "Timeout"
        ? AlertCode.TIMEOUT
        : AlertCode.MALFORMED
    default:
      return AlertCode.INTERNAL
  }
}

/**
 * What an authenticated alert means during the handshake (PROTOCOL.md §6): the peer found the
 * failure, so it is `PeerAlert` (or `AuthFailed` from the peer), never an error of this side's own.
 */
export const handshakeAlertToError = (code: AlertCode): AuthFailed | HandshakeError | PeerAlert => {
  switch (code) {
    case AlertCode.VERSION:
      return new PeerAlert({ reason: "Version", phase: "Handshake" })
    case AlertCode.MALFORMED:
      return new PeerAlert({ reason: "Malformed", phase: "Handshake" })
    case AlertCode.KEY_CONFIRMATION:
      return new PeerAlert({ reason: "KeyConfirmation", phase: "Handshake" })
    case AlertCode.MISSING_PASSWORD:
      return new AuthFailed({ reason: "MissingPassword", source: "Peer" })
    case AlertCode.WRONG_PASSWORD:
      return new AuthFailed({ reason: "WrongPassword", source: "Peer" })
    case AlertCode.SERVER_UNPROVEN:
      return new AuthFailed({ reason: "ServerUnproven", source: "Peer" })
    case AlertCode.DECRYPT_FAILED:
      return new PeerAlert({ reason: "DecryptFailed", phase: "Handshake" })
    case AlertCode.ENCRYPTION_MISMATCH:
      // Reserved (§6): each side computes a mismatch itself (§3.2), so no version sends this code.
      return new HandshakeError({ reason: "Aborted", detail: `peer sent the reserved alert ${alertName(code)}` })
    case AlertCode.LIMIT_EXCEEDED:
      return new PeerAlert({ reason: "LimitExceeded", phase: "Handshake" })
    case AlertCode.TIMEOUT:
      return new PeerAlert({ reason: "Timeout", phase: "Handshake" })
    case AlertCode.INTERNAL:
      return new PeerAlert({ reason: "Internal", phase: "Handshake" })
    case AlertCode.THROTTLED:
      return new PeerAlert({ reason: "Throttled", phase: "Handshake" })
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

/**
 * After the handshake only protocol-level alerts make sense (PROTOCOL.md §6), plus the client's
 * SERVER_UNPROVEN, which reaches a server that has already started its session; any other handshake
 * alert then is itself a protocol violation, which this side found.
 */
export const sessionAlertToError = (code: AlertCode): ProtocolError | PeerAlert | AuthFailed => {
  switch (code) {
    case AlertCode.SERVER_UNPROVEN:
      return new AuthFailed({ reason: "ServerUnproven", source: "Peer" })
    case AlertCode.DECRYPT_FAILED:
      return new PeerAlert({ reason: "DecryptFailed", phase: "Session" })
    case AlertCode.LIMIT_EXCEEDED:
      return new PeerAlert({ reason: "LimitExceeded", phase: "Session" })
    case AlertCode.TIMEOUT:
      return new PeerAlert({ reason: "Timeout", phase: "Session" })
    case AlertCode.MALFORMED:
      return new PeerAlert({ reason: "Malformed", phase: "Session" })
    default:
      return new ProtocolError({ reason: "UnexpectedMessage", detail: `alert ${alertName(code)} after the handshake` })
  }
}
