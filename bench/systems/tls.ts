/**
 * `node:tls` with TLS 1.3 and TLS_AES_256_GCM_SHA384 forced on both sides: the encrypted anchor.
 * The certificate is the committed test-only one in bench/tls/ (its README says how it was made).
 *
 * The suite is forced with the `ciphers` option: Node takes TLS 1.3 suites there (names starting
 * with `TLS_`) and ignores an option named `ciphersuites`. Every client checks what was negotiated
 * and fails the measurement otherwise, so a changed default cannot slip in a different cipher.
 * `tls-rpc.ts` and `ws-tls.ts` use the same options and the same check.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { bulkOverSocket, echoConnection, handshakeLoop, listenTracked, serveConnection } from "./lenprefix.js"
import type { BenchSystem, Target } from "./types.js"

export const TLS_CIPHER = "TLS_AES_256_GCM_SHA384"

/** The worker is bundled to another folder, so the certificate folder comes from the orchestrator. */
const certDir = () => process.env["BENCH_TLS_DIR"] ?? Path.resolve("bench", "tls")

export const TLS_COMMON = { minVersion: "TLSv1.3", maxVersion: "TLSv1.3", ciphers: TLS_CIPHER } as const

export const tlsServerOptions = (): Tls.TlsOptions => ({
  ...TLS_COMMON,
  key: Fs.readFileSync(Path.join(certDir(), "key.pem")),
  cert: Fs.readFileSync(Path.join(certDir(), "cert.pem"))
})

/** For clients: the certificate is self-signed, and an IP address is not a valid SNI name. */
export const tlsClientOptions = { ...TLS_COMMON, servername: "localhost", rejectUnauthorized: false } as const

export const describeTls = (socket: Tls.TLSSocket): string => {
  const cipher = socket.getCipher()
  return `${socket.getProtocol() ?? "?"} ${cipher.standardName}`
}

/** What was negotiated, or a failure if it is not TLS 1.3 with AES-256-GCM. */
export const checkNegotiated = (socket: Tls.TLSSocket): string => {
  const negotiated = describeTls(socket)
  if (!negotiated.includes(TLS_CIPHER) || !negotiated.startsWith("TLSv1.3")) throw new Error(`negotiated ${negotiated}`)
  return negotiated
}

/** `checkNegotiated`, destroying the socket when it fails. */
export const checkedOrDestroyed = (socket: Tls.TLSSocket): string => {
  try {
    return checkNegotiated(socket)
  } catch (error) {
    socket.destroy()
    throw error
  }
}

export const dialTls = (target: Target, p521 = false) =>
  new Promise<Tls.TLSSocket>((resolve, reject) => {
    const socket = Tls.connect({
      ...tlsClientOptions,
      host: target.host,
      port: target.port,
      ...(p521 ? { ecdhCurve: "P-521" } : {})
    })
    socket.once("secureConnect", () => {
      socket.off("error", reject)
      resolve(socket)
    })
    socket.once("error", reject)
  })

export const tls: BenchSystem = {
  name: "tls",
  startServer: () =>
    listenTracked(
      Tls.createServer(tlsServerOptions(), serveConnection),
      // The TCP socket, so that `close` also tears down connections still in their handshake.
      "connection"
    ),
  openEcho: async (target) => {
    const socket = await dialTls(target)
    return echoConnection(socket, checkedOrDestroyed(socket))
  },
  bulk: async (target, options) => bulkOverSocket(await dialTls(target), options),
  handshakes: (target, options) =>
    handshakeLoop(options.concurrency, options.durationMs, async () => {
      const socket = await dialTls(target, options.p521 === true)
      socket.destroy()
    })
}
