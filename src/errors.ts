/**
 * Every failure cvg-core reports, as `Schema.TaggedError`s that travel in the error channel.
 *
 * Families with several causes carry a `reason` literal, as `@effect/platform`'s `SocketError` does.
 * Decryption failures carry no detail at all (PROTOCOL.md §6): an attacker learns only that a frame
 * was rejected.
 */
import { Schema } from "effect"

/** An encryption policy (PROTOCOL.md §4). */
export const EncryptionPolicy = Schema.Literal("required", "preferred", "disabled")
export type EncryptionPolicy = typeof EncryptionPolicy.Type

/** The client's and the server's policies cannot agree (PROTOCOL.md §4): the table has no cell for them. */
export class EncryptionMismatch extends Schema.TaggedError<EncryptionMismatch>()("EncryptionMismatch", {
  client: EncryptionPolicy,
  server: EncryptionPolicy
}) {
  override get message(): string {
    return `encryption policies do not agree: client ${this.client}, server ${this.server}`
  }
}

/**
 * What a client hello says about its side (PROTOCOL.md §4.1): `Password`, it holds a password;
 * `RequiresServerKey`, it accepts only a server that proves an identity key (it pins one, or keeps
 * known hosts).
 */
export const ClientCapability = Schema.Literal("Password", "RequiresServerKey")
export type ClientCapability = typeof ClientCapability.Type

/**
 * What a server hello says about its side (PROTOCOL.md §4.1): `ServerKey`, it proves an identity key
 * in this handshake; `RequiresPassword`, it accepts only clients that prove its password.
 */
export const ServerCapability = Schema.Literal("ServerKey", "RequiresPassword")
export type ServerCapability = typeof ServerCapability.Type

const listed = (items: ReadonlyArray<string>): string => (items.length === 0 ? "none" : items.join(", "))

/**
 * The client requires the server to prove an identity key and the server has none (PROTOCOL.md §4.1):
 * both sides find it from the two hellos and fail, each naming both sides' capabilities. A client
 * that requires a server key is never talked down to a handshake without one.
 */
export class CapabilityMismatch extends Schema.TaggedError<CapabilityMismatch>()("CapabilityMismatch", {
  client: Schema.Array(ClientCapability),
  server: Schema.Array(ServerCapability)
}) {
  override get message(): string {
    return `capabilities do not agree: client ${listed(this.client)}; server ${listed(this.server)}`
  }
}

/**
 * The server proved an identity key, but not the one this client trusts (PROTOCOL.md §3.7): `Pinned`,
 * the client's `serverKey`; `KnownHost`, the fingerprint its known-hosts file holds for this peer.
 * Both fingerprints are `sha256:` and 64 hex digits. The server hears ALERT `SERVER_KEY_REJECTED`.
 */
export class ServerKeyMismatch extends Schema.TaggedError<ServerKeyMismatch>()("ServerKeyMismatch", {
  reason: Schema.Literal("Pinned", "KnownHost"),
  expected: Schema.String,
  actual: Schema.String
}) {
  override get message(): string {
    return `server key mismatch (${this.reason === "Pinned" ? "pinned" : "known host"}): expected ${this.expected}, got ${this.actual}`
  }
}

/** Which side found a failure: this one, or the peer, which told us with an alert (PROTOCOL.md §6). */
export const FailureSource = Schema.Literal("Local", "Peer")
export type FailureSource = typeof FailureSource.Type

/**
 * Authentication failed: the password (PROTOCOL.md §5) or the server's identity proof (§3.7).
 * - `MissingPassword`: the server requires a password and the client has none.
 * - `WrongPassword`: the client's proof did not verify (on the client: the server denied it).
 * - `ServerUnproven`: the server did not prove knowledge of the password the client holds.
 * - `ServerKeyRejected`: the client refused the server's identity proof (PROTOCOL.md §3.7): its
 *   signature does not verify (found by the client), or, reported by the peer, the key is not the
 *   one the client trusts (the client itself fails with `ServerKeyMismatch` then).
 *
 * Each reason is found by one side and told to the other with its alert, which is this same error
 * there: `source` says which. A server whose log says `ServerUnproven` reported by the peer learns that
 * a client rejected the server's proof (another password, or someone in the middle).
 */
export class AuthFailed extends Schema.TaggedError<AuthFailed>()("AuthFailed", {
  reason: Schema.Literal("MissingPassword", "WrongPassword", "ServerUnproven", "ServerKeyRejected"),
  source: Schema.optionalWith(FailureSource, { default: () => "Local" })
}) {
  override get message(): string {
    return this.source === "Peer"
      ? `authentication failed: ${this.reason} (reported by the peer)`
      : `authentication failed: ${this.reason}`
  }
}

/**
 * This side found the handshake broken before a secure channel existed (PROTOCOL.md §3); when the
 * peer tells us it failed, the error is `PeerAlert` instead.
 * - `NotCvgPeer`: the first bytes from the peer are not a cvg handshake message (an HTTP server, an
 *   echo server, a client of another protocol); `detail` says what was seen.
 * - `Aborted`: a local failure (the `Crypto` service, a puzzle too hard), or an alert that cannot be
 *   trusted or has no meaning here (PROTOCOL.md §6); `detail` says which.
 *
 * `cause` is the lower-level error it was made from (a `CryptoError`, a `ProtocolError` of the frame
 * layer), when there is one.
 */
export class HandshakeError extends Schema.TaggedError<HandshakeError>()("HandshakeError", {
  reason: Schema.Literal("Version", "Malformed", "InvalidPublicKey", "KeyConfirmation", "Timeout", "Aborted", "NotCvgPeer"),
  detail: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return this.detail === undefined ? `handshake failed: ${this.reason}` : `handshake failed: ${this.reason}: ${this.detail}`
  }
}

/**
 * This side found the peer breaking the wire protocol, or one of its own limits or timeouts ran out
 * (PROTOCOL.md §2, §8, §10), or it could not seal a record with its own `Crypto` (`Internal`); when
 * the peer tells us it did, the error is `PeerAlert` instead.
 * `cause` is the lower-level error it was made from, when there is one.
 */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  reason: Schema.Literal(
    "FrameTooLarge",
    "Malformed",
    "DecryptFailed",
    "MessageTooLarge",
    "StreamIntegrity",
    "UnexpectedMessage",
    "LimitExceeded",
    "Timeout",
    "Internal"
  ),
  detail: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return this.detail === undefined ? `protocol error: ${this.reason}` : `protocol error: ${this.reason}: ${this.detail}`
  }
}

/** What a received alert says failed at the peer (PROTOCOL.md §6), one reason per alert code. */
export const PeerAlertReason = Schema.Literal(
  "Version",
  "Malformed",
  "KeyConfirmation",
  "DecryptFailed",
  "LimitExceeded",
  "Timeout",
  "Internal",
  "Throttled"
)
export type PeerAlertReason = typeof PeerAlertReason.Type

const PEER_ALERTS: { readonly [R in PeerAlertReason]: readonly [alert: string, meaning: string] } = {
  Version: ["VERSION", "it does not speak this protocol version"],
  Malformed: ["MALFORMED", "it rejected a message of ours"],
  KeyConfirmation: ["KEY_CONFIRMATION", "it saw a different handshake or holds other keys"],
  DecryptFailed: ["DECRYPT_FAILED", "a record of ours did not open there"],
  LimitExceeded: ["LIMIT_EXCEEDED", "one of its limits ran out"],
  Timeout: ["TIMEOUT", "it timed out"],
  Internal: ["INTERNAL", "it failed on its own side"],
  Throttled: ["THROTTLED", "it refuses connections from this address for now, after failed password attempts"]
}

/**
 * The peer ended the connection with an authenticated alert (PROTOCOL.md §6): the failure was found
 * there, not here. `ProtocolError` and `HandshakeError` are what this side found; an alert never
 * becomes one of them, so `Effect.catchTag("PeerAlert", ...)` catches exactly what the peer reported.
 * `phase` says whether the handshake was still running or the session had started.
 *
 * The authentication alerts are `AuthFailed` with `source: "Peer"`, and an alert that cannot be
 * trusted (plaintext once keys exist) or means nothing here is `HandshakeError("Aborted")` or
 * `ProtocolError("UnexpectedMessage")`, as §6 says.
 */
export class PeerAlert extends Schema.TaggedError<PeerAlert>()("PeerAlert", {
  reason: PeerAlertReason,
  phase: Schema.Literal("Handshake", "Session")
}) {
  override get message(): string {
    const [alert, meaning] = PEER_ALERTS[this.reason]
    return `the peer ended the ${this.phase === "Handshake" ? "handshake" : "session"} with ALERT ${alert}: ${meaning}`
  }
}

/** Why a peer answered a request with an error instead of a reply (PROTOCOL.md §8.3). */
export const RemoteErrorReason = Schema.Literal("Failure", "Defect", "NoReply", "Unsupported", "Undecodable")
export type RemoteErrorReason = typeof RemoteErrorReason.Type

/**
 * The peer could not answer a request; the session goes on. Sent by the peer, so `detail` is only as
 * much as it chose to say: by default the failed error's tag, never a stack (`exposeErrors` opts in).
 * - `Failure`: the handler failed with an error the request does not declare.
 * - `Defect`: the handler died (a thrown exception, `Effect.die`).
 * - `NoReply`: the handler finished without answering.
 * - `Unsupported`: nothing on the peer handles this request.
 * - `Undecodable`: the peer could not decode the request.
 */
export class RemoteError extends Schema.TaggedError<RemoteError>()("RemoteError", {
  reason: RemoteErrorReason,
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail === "" ? `the peer could not answer: ${this.reason}` : `the peer could not answer: ${this.reason}: ${this.detail}`
  }
}

/** A request of ours got no answer within its `timeout`; its id is free again and a late reply is dropped. */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()("RequestTimeout", {
  id: Schema.Number,
  millis: Schema.Number
}) {
  override get message(): string {
    return `request #${this.id} got no answer within ${this.millis} ms`
  }
}

/**
 * Typed bytes from the peer did not decode (PROTOCOL.md §12): `tag` names the message, `detail` says
 * which Schema failed and where (never the value itself).
 * - `Message`: a one-way message the peer sent us; `Reply`, `Item`: an answer to our own request. (A
 *   request that does not decode is answered with `RemoteError("Undecodable")`, PROTOCOL.md §12.2.)
 */
export class DecodeFailed extends Schema.TaggedError<DecodeFailed>()("DecodeFailed", {
  reason: Schema.Literal("Message", "Reply", "Item"),
  tag: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `could not decode ${this.reason.toLowerCase()} ${this.tag}: ${this.detail}`
  }
}

/** What a `receive` asked for. */
export const PacketFilter = Schema.Struct({
  type: Schema.optional(Schema.Number),
  id: Schema.optional(Schema.Number)
})

/** The next packet did not match what the caller expected (the seed used an `assert` here). */
export class UnexpectedPacket extends Schema.TaggedError<UnexpectedPacket>()("UnexpectedPacket", {
  expected: PacketFilter,
  received: Schema.Struct({ type: Schema.Number, id: Schema.Number })
}) {
  override get message(): string {
    return `unexpected packet: expected ${JSON.stringify(this.expected)}, received ${JSON.stringify(this.received)}`
  }
}

/**
 * The connection is over.
 * - `Closed`: the peer sent the orderly close message (PROTOCOL.md §7), or we closed it ourselves.
 * - `Cut`: the transport ended without a close message; `cause` is the socket's error when it was a
 *   reset or a failed read rather than an end of stream.
 * - `Timeout`: the peer stopped answering: with `keepAlive` set, nothing arrived for an interval
 *   after our PING (PROTOCOL.md §7.4). Not a fault of either side's protocol, so not a `ProtocolError`.
 */
export class ConnectionClosed extends Schema.TaggedError<ConnectionClosed>()("ConnectionClosed", {
  reason: Schema.Literal("Closed", "Cut", "Timeout"),
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return this.reason === "Closed"
      ? "connection closed"
      : this.reason === "Cut"
      ? "connection cut without a close message"
      : "the peer stopped answering (keep-alive)"
  }
}

/**
 * A caller passed something the API cannot use, caught at the entry point before any socket, key or
 * sequence number is touched.
 * - `Option`: an option of `connect`, `serve`, `listen` or a session constructor; `field` is its name.
 * - `Packet`: a packet, header or filter given to a session method; `field` is e.g. `packet.id`.
 * - `Message`: a typed message its own Schema refuses to encode; `field` is its tag.
 */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", {
  reason: Schema.Literal("Option", "Packet", "Message"),
  field: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    // `options` is the whole options object (e.g. `null`): "invalid option options" would stutter.
    return this.reason === "Option" && this.field !== "options"
      ? `invalid option ${this.field}: ${this.detail}`
      : `invalid ${this.field}: ${this.detail}`
  }
}

/** What a failure to connect to or to bind an address carries: the address, the system code, the original. */
const AddressFailure = {
  host: Schema.String,
  port: Schema.Number,
  code: Schema.String,
  cause: Schema.Defect
}

/**
 * The TCP connection could not be opened. `code` is the operating system's (`ECONNREFUSED`,
 * `EHOSTUNREACH`, `ENOTFOUND`, ...), or `ETIMEDOUT` when `connectTimeout` ran out; the message names
 * host, port and code, so that a log line alone says what to fix. `cause` is the original error.
 */
export class ConnectFailed extends Schema.TaggedError<ConnectFailed>()("ConnectFailed", AddressFailure) {
  override get message(): string {
    return `cannot connect to ${this.host}:${this.port}: ${this.code}${hint(this.code)}`
  }
}

/**
 * The server could not bind its address: `EADDRINUSE` (the port is taken), `EACCES`,
 * `EADDRNOTAVAIL` (the host is not an address of this machine), ... `cause` is the original error.
 */
export class ListenFailed extends Schema.TaggedError<ListenFailed>()("ListenFailed", AddressFailure) {
  override get message(): string {
    return `cannot listen on ${this.host}:${this.port}: ${this.code}${hint(this.code)}`
  }
}

const HINTS: Readonly<Record<string, string>> = {
  ECONNREFUSED: "nothing is listening there",
  ETIMEDOUT: "no answer within the connect timeout",
  ENOTFOUND: "unknown host name",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  EADDRINUSE: "the port is already in use",
  EADDRNOTAVAIL: "the host is not an address of this machine",
  EACCES: "not allowed to bind this port"
}

const hint = (code: string): string => {
  const text = HINTS[code]
  return text === undefined ? "" : ` (${text})`
}

/**
 * A server identity key file, or a known-hosts file, could not be used (README "Server identity").
 * - `NotFound`: no such file (or environment variable).
 * - `Permissions`: a private key readable by group or others, or a known-hosts file writable by them:
 *   refused as OpenSSH refuses them, since either lets another local user impersonate the server.
 * - `Format`: the contents are not what they should be; `detail` says what and where (never the key).
 * - `Exists`: a new key would overwrite a file that is already there.
 * - `Io`: any other file system failure; `cause` is the original error.
 */
export class IdentityKeyError extends Schema.TaggedError<IdentityKeyError>()("IdentityKeyError", {
  reason: Schema.Literal("NotFound", "Permissions", "Format", "Exists", "Io"),
  path: Schema.String,
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `identity key error: ${this.reason}: ${this.path}: ${this.detail}`
  }
}
