/**
 * `node:tls` with TLS 1.3 and TLS_AES_256_GCM_SHA384 forced on both sides: the encrypted anchor.
 * The certificate is the committed test-only one in bench/tls/ (its README says how it was made).
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { bulkOverSocket, echoConnection, handshakeLoop, listenTracked, serveConnection } from "./lenprefix.js"
import type { BenchSystem, Target } from "./types.js"

export const TLS_CIPHER = "TLS_AES_256_GCM_SHA384"

/** The worker is bundled to another folder, so the certificate folder comes from the orchestrator. */
const certDir = () => process.env["BENCH_TLS_DIR"] ?? Path.resolve("bench", "tls")

const common = { minVersion: "TLSv1.3", maxVersion: "TLSv1.3", ciphersuites: TLS_CIPHER } as const

const dial = (target: Target, p521 = false) =>
  new Promise<Tls.TLSSocket>((resolve, reject) => {
    const socket = Tls.connect({
      ...common,
      host: target.host,
      port: target.port,
      servername: "localhost",
      rejectUnauthorized: false,
      ...(p521 ? { ecdhCurve: "P-521" } : {})
    })
    socket.once("secureConnect", () => {
      socket.off("error", reject)
      resolve(socket)
    })
    socket.once("error", reject)
  })

const describe = (socket: Tls.TLSSocket) => {
  const cipher = socket.getCipher()
  return `${socket.getProtocol() ?? "?"} ${cipher.standardName}`
}

export const tls: BenchSystem = {
  name: "tls",
  startServer: () =>
    listenTracked(
      Tls.createServer(
        { ...common, key: Fs.readFileSync(Path.join(certDir(), "key.pem")), cert: Fs.readFileSync(Path.join(certDir(), "cert.pem")) },
        serveConnection
      ),
      // The TCP socket, so that `close` also tears down connections still in their handshake.
      "connection"
    ),
  openEcho: async (target) => {
    const socket = await dial(target)
    const negotiated = describe(socket)
    if (!negotiated.includes(TLS_CIPHER) || !negotiated.startsWith("TLSv1.3")) throw new Error(`negotiated ${negotiated}`)
    return echoConnection(socket, negotiated)
  },
  bulk: async (target, options) => bulkOverSocket(await dial(target), options),
  handshakes: (target, options) =>
    handshakeLoop(options.concurrency, options.durationMs, async () => {
      const socket = await dial(target, options.p521 === true)
      socket.destroy()
    })
}
