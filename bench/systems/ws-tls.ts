/**
 * `ws-tls`: the `ws` package on an `https` server (TLS 1.3, AES-256-GCM forced and checked, as in
 * `tls.ts`), with the id layer of `idlayer.ts`: one binary message per request, `u32 id ‖ payload`
 * (WebSocket frames its messages, so no length), answered with the same id. No compression, as for
 * every other system. The peer for the round-trip and in-flight figures (issue 11).
 */
import * as Https from "node:https"
import * as Tls from "node:tls"
import { WebSocket, WebSocketServer } from "ws"
import type { RawData } from "ws"
import { callConnection, notMeasured } from "./idlayer.js"
import type { CallHandlers, CallTransport } from "./idlayer.js"
import { listenTracked } from "./lenprefix.js"
import { checkNegotiated, tlsClientOptions, tlsServerOptions } from "./tls.js"
import type { BenchServer, BenchSystem, Target } from "./types.js"

/** Larger messages are a bug in the peer: the benchmark sends 64 bytes. */
const MAX_PAYLOAD = 1 << 20

/** `ws` hands over a Buffer for binary messages unless a message came in fragments. */
const bytesOf = (data: RawData): Buffer =>
  Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)

const message = (id: number, payload: Uint8Array): Buffer => {
  const out = Buffer.allocUnsafe(4 + payload.length)
  out.writeUInt32BE(id, 0)
  out.set(payload, 4)
  return out
}

const startServer = async (): Promise<BenchServer> => {
  const https = Https.createServer(tlsServerOptions())
  const wss = new WebSocketServer({ server: https, perMessageDeflate: false, maxPayload: MAX_PAYLOAD })
  wss.on("connection", (ws) => {
    // Peers that hang up mid-call are expected when a measurement ends; nothing to report.
    ws.on("error", () => ws.terminate())
    ws.on("message", (data) => {
      const request = bytesOf(data)
      if (request.length < 4) return ws.terminate()
      ws.send(message(request.readUInt32BE(0), request.subarray(4)))
    })
  })
  const server = await listenTracked(https, "connection")
  return {
    port: server.port,
    close: async () => {
      for (const client of wss.clients) client.terminate()
      wss.close()
      await server.close()
    }
  }
}

const transport = (ws: WebSocket) => (handlers: CallHandlers): CallTransport => {
  ws.on("message", (data) => {
    const reply = bytesOf(data)
    if (reply.length >= 4) handlers.reply(reply.readUInt32BE(0), reply.subarray(4))
  })
  ws.on("error", handlers.fail)
  ws.on("close", () => handlers.fail(new Error("connection closed")))
  return {
    send: (id, payload) => ws.send(message(id, payload)),
    close: () =>
      new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve()
        ws.once("close", () => resolve())
        ws.close()
        // A peer that never answers the close must not keep the benchmark waiting.
        setTimeout(() => {
          ws.terminate()
          resolve()
        }, 2000).unref()
      })
  }
}

const open = (target: Target) =>
  new Promise<{ readonly ws: WebSocket; readonly negotiated: string }>((resolve, reject) => {
    const ws = new WebSocket(`wss://${target.host}:${target.port}/`, {
      ...tlsClientOptions,
      perMessageDeflate: false,
      maxPayload: MAX_PAYLOAD
    })
    let negotiated: string | Error = new Error("no TLS socket seen in the upgrade")
    ws.once("upgrade", (response) => {
      const socket = response.socket
      try {
        negotiated = socket instanceof Tls.TLSSocket ? checkNegotiated(socket) : new Error("the upgrade did not run over TLS")
      } catch (error) {
        negotiated = error instanceof Error ? error : new Error(String(error))
      }
    })
    ws.once("open", () => {
      ws.off("error", reject)
      if (negotiated instanceof Error) {
        ws.terminate()
        reject(negotiated)
      } else {
        resolve({ ws, negotiated })
      }
    })
    ws.once("error", reject)
  })

export const wsTls: BenchSystem = {
  name: "ws-tls",
  startServer,
  openEcho: async (target) => {
    const { ws, negotiated } = await open(target)
    return callConnection(`${negotiated}, ws, calls by id`, transport(ws))
  },
  bulk: notMeasured("bulk"),
  handshakes: notMeasured("the handshake rate")
}
