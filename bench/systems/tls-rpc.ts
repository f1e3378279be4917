/**
 * `tls-rpc`: `node:tls` (TLS 1.3, AES-256-GCM forced and checked, as in `tls.ts`) with a hand-written
 * request/response by id (`idlayer.ts`): `u32 len ‖ u32 id ‖ payload` frames, a Map of pending calls,
 * and cork/uncork on both sides. The peer for the round-trip and in-flight figures (issue 11), so it
 * takes part in those only.
 */
import * as Tls from "node:tls"
import { callConnection, notMeasured, serveCalls, streamTransport } from "./idlayer.js"
import { listenTracked } from "./lenprefix.js"
import { checkedOrDestroyed, dialTls, tlsServerOptions } from "./tls.js"
import type { BenchSystem } from "./types.js"

export const tlsRpc: BenchSystem = {
  name: "tls-rpc",
  // The TCP socket is tracked, so that `close` also tears down connections still in their handshake.
  startServer: () => listenTracked(Tls.createServer(tlsServerOptions(), serveCalls), "connection"),
  openEcho: async (target) => {
    const socket = await dialTls(target)
    return callConnection(`${checkedOrDestroyed(socket)}, calls by id`, streamTransport(socket))
  },
  bulk: notMeasured("bulk"),
  handshakes: notMeasured("the handshake rate")
}
