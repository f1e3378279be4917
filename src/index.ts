/**
 * cvg-core: a typed, encrypted packet protocol over sockets, on Effect.
 *
 * Start with `connect` (client) and `serve` (server); `PROTOCOL.md` specifies the bytes.
 */
export { connect, connectScoped, Client, type ConnectError, type ConnectOptions } from "./client/Client.js"
export * as ClientSession from "./client/Client.js"
export {
  listen,
  serve,
  type ServeAndAnnounceOptions,
  type ServeError,
  type ServeOptions,
  type Server
} from "./server/Server.js"
export * as ServerSession from "./server/Server.js"
export type {
  IncomingStream,
  PacketFilter,
  RequestError,
  RequestOptions,
  Session,
  SessionError,
  SessionInfo,
  SessionOptions
} from "./session/Session.js"
/** Span names, metric descriptors and log annotation keys (README "Observability"). */
export * as Observability from "./Observability.js"
export * as KnownHosts from "./identity/KnownHosts.js"
export { identityKeyFromEnv, loadIdentityKey, saveIdentityKey } from "./identity/KeyFile.js"
/** Typed messages: `Api.make({ messages, requests, streams })`, then `client(session)` and `serve(session, handlers)`. */
export * as Api from "./typed/Api.js"
export type { HandshakeFailure, HandshakeOptions, PasswordInput } from "./handshake/Handshake.js"
export { Packet, PacketFromBytes, decodePacket, encodePacket } from "./wire/Packet.js"
export { PacketType, PacketTypeSchema, packetTypeName } from "./wire/PacketType.js"
export {
  AuthFailed,
  CapabilityMismatch,
  ClientCapability,
  ConnectFailed,
  ConnectionClosed,
  DecodeFailed,
  EncryptionMismatch,
  EncryptionPolicy,
  FailureSource,
  HandshakeError,
  IdentityKeyError,
  InvalidArgument,
  ListenFailed,
  PeerAlert,
  PeerAlertReason,
  ProtocolError,
  RemoteError,
  RequestTimeout,
  ServerCapability,
  ServerKeyMismatch,
  UnexpectedPacket
} from "./errors.js"
/** Server identity keys (PROTOCOL.md §3.7): a server proves one in every handshake, a client may pin its fingerprint. */
export { fingerprintOf, generateIdentityKey, type IdentityKey, identityKeyFromPrivate } from "./identity/IdentityKey.js"
export { Crypto, CryptoError, type CryptoLoad, type CryptoService } from "./crypto/Crypto.js"
import {
  layer as nodeCryptoLayer,
  layerWith as nodeCryptoLayerWith,
  make as makeNodeCrypto,
  makeWith as makeNodeCryptoWith
} from "./crypto/NodeCrypto.js"
export type { P521PoolOptions } from "./crypto/NodeCrypto.js"
/**
 * The `Crypto` service on `node:crypto`: `NodeCrypto.layer` for Effect apps, `NodeCrypto.make` for the
 * bare service; `layerWith` / `makeWith` size its P-521 work pool (concurrency, queue).
 */
export const NodeCrypto = {
  layer: nodeCryptoLayer,
  layerWith: nodeCryptoLayerWith,
  make: makeNodeCrypto,
  makeWith: makeNodeCryptoWith
} as const
export * as DeterministicCrypto from "./crypto/DeterministicCrypto.js"
/**
 * A session as an `@effect/platform` `Socket`, and a server as a `SocketServer`, so that protocols
 * written against those interfaces run over cvg. `@effect/rpc` over cvg is in `cvg-core/rpc`.
 */
export * as SessionSocket from "./socket/SessionSocket.js"
export * as SessionSocketServer from "./socket/SessionSocketServer.js"
