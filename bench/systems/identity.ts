/**
 * The handshake with what issue 12 added, for the handshake figure only, against `cvg` (no password,
 * no identity) in the same run: `cvg-id`, a server identity key the client pins (one Ed25519
 * signature on the server, one verification on the client, PROTOCOL.md §3.7); `cvg-pake`, a password
 * on both sides (CPace on ristretto255, §5); `cvg-id-pake`, both.
 *
 * The identity key is derived from a fixed seed so that the client, which may run in another
 * process than the server, knows the fingerprint to pin without being told.
 */
import { Effect } from "effect"
import { createHash, createPrivateKey } from "node:crypto"
import { connect, type IdentityKey, identityKeyFromPrivate, serve } from "../../src/index.js"
import { startDaemon } from "./daemon.js"
import { notMeasured } from "./idlayer.js"
import { handshakeLoop } from "./lenprefix.js"
import type { BenchServer, BenchSystem, SystemName } from "./types.js"

const PASSWORD = "bench"
/** The DER of a PKCS #8 Ed25519 private key before its 32-byte seed (RFC 8410 §7). */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")

const identity: Effect.Effect<IdentityKey, unknown> = Effect.suspend(() =>
  identityKeyFromPrivate(
    createPrivateKey({
      key: Buffer.concat([ED25519_PKCS8_PREFIX, createHash("sha256").update("cvg-bench-identity").digest()]),
      format: "der",
      type: "pkcs8"
    })
  )
)

interface Features {
  readonly identity: boolean
  readonly password: boolean
}

const startServer = (features: Features) => (): Promise<BenchServer> =>
  Effect.runPromise(identity).then((key) =>
    startDaemon((announce) =>
      serve(
        {
          port: 0,
          ...(features.identity ? { identity: key } : {}),
          ...(features.password ? { password: PASSWORD } : {}),
          onListen: (address) => announce(address.port)
        },
        // Handshake-only clients hang up at once.
        (session) => Effect.ignore(session.closed)
      )
    )
  )

const make = (name: SystemName, features: Features): BenchSystem => ({
  name,
  startServer: startServer(features),
  openEcho: notMeasured("the echo"),
  bulk: notMeasured("bulk"),
  handshakes: (target, options) =>
    Effect.runPromise(identity).then((key) =>
      handshakeLoop(options.concurrency, options.durationMs, () =>
        Effect.runPromise(
          Effect.flatMap(
            connect({
              host: target.host,
              port: target.port,
              ...(features.identity ? { serverKey: key.fingerprint } : {}),
              ...(features.password ? { password: PASSWORD } : {})
            }),
            (session) => session.close
          )
        ))
    )
})

export const cvgId = make("cvg-id", { identity: true, password: false })
export const cvgPake = make("cvg-pake", { identity: false, password: true })
export const cvgIdPake = make("cvg-id-pake", { identity: true, password: true })
