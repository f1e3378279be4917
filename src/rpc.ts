/**
 * `cvg-core/rpc`: `@effect/rpc` over cvg sessions. A subpath of its own, so that applications that
 * use only the core never load `@effect/rpc`, an optional peer dependency (README.md,
 * "@effect/rpc over cvg").
 */
export {
  type ClientProtocolOptions,
  layerClientProtocol,
  layerClientProtocolWith,
  makeClientProtocolWith
} from "./rpc/ClientProtocol.js"
export {
  layerServerProtocol,
  layerServerProtocolWith,
  makeServerProtocolWith,
  type ServerProtocolOptions
} from "./rpc/ServerProtocol.js"
