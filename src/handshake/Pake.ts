/**
 * CPace in the handshake (PROTOCOL.md §5): the client is the initiator, the server the responder;
 * each share travels last in its hello, and the hello before it is the share's associated data.
 * The group work is in src/crypto/CPace.ts; this file only fixes the inputs and maps refusals to the
 * handshake's errors.
 */
import { Effect, Either } from "effect"
import { randomBytes } from "node:crypto"
import { CPACE_SUITE, cpaceFinish, cpaceStart, type CPaceState, lvCat } from "../crypto/CPace.js"
import type { CryptoService } from "../crypto/Crypto.js"
import { HandshakeError } from "../errors.js"

const encoder = new TextEncoder()

/**
 * The channel identifier (never sent): the protocol version and suite, then both roles, initiator
 * first, as the draft advises. A share made for cvg v4 is useless in any other protocol or role.
 */
export const CPACE_CI = lvCat(encoder.encode(`cvg4 ${CPACE_SUITE}`), encoder.encode("client"), encoder.encode("server"))

/** The scalar's bytes come from the `Crypto` service, so that golden transcripts are reproducible. */
const SCALAR_DRAW = 32

/**
 * This side's CPace state and share. `sid` is the client's nonce: the client must send its share
 * before it has seen anything of the server, so the session identifier can only be its own fresh
 * contribution; the server's freshness enters through its scalar, its nonce in ADb, and H1.
 */
export const startPake = (
  crypto: CryptoService,
  password: Uint8Array,
  sid: Uint8Array,
  ad: Uint8Array,
  role: "initiator" | "responder"
): Effect.Effect<CPaceState> =>
  Effect.map(crypto.randomBytes(SCALAR_DRAW), (drawn) => {
    let first = true
    // A zero scalar (probability 2^-252) is drawn again by CPace.ts; only then does it ask for more.
    const random = (length: number): Uint8Array => {
      if (first && length === SCALAR_DRAW) {
        first = false
        return drawn
      }
      return new Uint8Array(randomBytes(length))
    }
    return cpaceStart({ prs: password, ci: CPACE_CI, sid, ad }, role, random)
  })

/** ISK from the peer's share, or the refusal as an invalid public value (ALERT MALFORMED, like a bad P-521 key). */
export const finishPake = (state: CPaceState, peerShare: Uint8Array, peerAd: Uint8Array): Either.Either<Uint8Array, HandshakeError> =>
  Either.mapLeft(cpaceFinish(state, peerShare, peerAd), (rejection) =>
    new HandshakeError({
      reason: "InvalidPublicKey",
      detail: rejection === "IdentityShare" ? "CPace share: the identity element" : "CPace share: not a ristretto255 encoding"
    }))
