/**
 * The client puzzle a loaded server asks for before it spends P-521 work (PROTOCOL.md §3.6):
 * find `solution: u64` such that `SHA-256(challenge ‖ SHA-256(CLIENT_HELLO) ‖ solution)` starts with
 * `difficulty` zero bits. The server checks one hash; the client tries 2^difficulty on average.
 * The challenge is fresh per connection, so a solution is worth nothing on another connection, and
 * the hello's hash binds it to this ClientHello.
 */
import { Effect } from "effect"
import type { CryptoService } from "../crypto/Crypto.js"
import { CHALLENGE_LENGTH, PUZZLE_SOLUTION_LENGTH } from "../wire/Messages.js"

/**
 * Measured on the reference machine (scratchpad/hs/puzzle-cost.ts): one SHA-256 of 56 bytes costs
 * the client ~2 µs of CPU through `node:crypto`'s one-shot hash (~4 µs through `createHash`), the
 * server's P-521 work for one hello (key generation and derivation) ~15 ms. 2^13 tries ≈ 16 ms:
 * a client that wants the server to spend P-521 work pays about as much CPU as that work costs,
 * and a legitimate client under load waits a few tens of milliseconds.
 */
export const DEFAULT_PUZZLE_DIFFICULTY = 13
/** A client refuses more: 2^22 tries is seconds of CPU, beyond what a handshake should ask. */
export const MAX_PUZZLE_DIFFICULTY = 22
/** Tries between two yields, so that a client solving does not hold the event loop. */
const BATCH = 1024

const INPUT_LENGTH = CHALLENGE_LENGTH + 32 + PUZZLE_SOLUTION_LENGTH

const leadingZeroBits = (digest: Uint8Array, atLeast: number): boolean => {
  let bits = atLeast
  for (let i = 0; bits > 0; i++) {
    const byte = digest[i]!
    if (bits >= 8) {
      if (byte !== 0) return false
      bits -= 8
    } else {
      return byte >> (8 - bits) === 0
    }
  }
  return true
}

const puzzleInput = (challenge: Uint8Array, helloHash: Uint8Array): Uint8Array => {
  const input = new Uint8Array(INPUT_LENGTH)
  input.set(challenge, 0)
  input.set(helloHash, CHALLENGE_LENGTH)
  return input
}

/** The server's check: one hash. */
export const verifySolution = (
  crypto: CryptoService,
  difficulty: number,
  challenge: Uint8Array,
  helloHash: Uint8Array,
  solution: Uint8Array
): boolean => {
  const input = puzzleInput(challenge, helloHash)
  input.set(solution, CHALLENGE_LENGTH + 32)
  return leadingZeroBits(crypto.sha256(input), difficulty)
}

/** The client's search, from 0 upwards, yielding every {@link BATCH} tries. */
export const solve = (
  crypto: CryptoService,
  difficulty: number,
  challenge: Uint8Array,
  helloHash: Uint8Array
): Effect.Effect<Uint8Array> =>
  Effect.gen(function*() {
    const input = puzzleInput(challenge, helloHash)
    const view = new DataView(input.buffer, CHALLENGE_LENGTH + 32, PUZZLE_SOLUTION_LENGTH)
    for (let high = 0;; high++) {
      view.setUint32(0, high)
      for (let low = 0; low <= 0xffffffff; low++) {
        view.setUint32(4, low)
        if (leadingZeroBits(crypto.sha256(input), difficulty)) return input.slice(CHALLENGE_LENGTH + 32)
        if (low % BATCH === BATCH - 1) yield* Effect.yieldNow()
      }
    }
  })
