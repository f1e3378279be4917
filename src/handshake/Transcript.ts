/**
 * The handshake transcript (PROTOCOL.md §4.2): every handshake message, each as the plaintext frame
 * `len ‖ type ‖ body` that carries it in plaintext mode, whether or not it was sent sealed. Hashing
 * the plaintext form makes the transcript the same in both modes and on both sides.
 */
import type { CryptoService } from "../crypto/Crypto.js"
import { concatBytes } from "../internal/bytes.js"

export class Transcript {
  private readonly messages: Array<Uint8Array> = []
  constructor(private readonly crypto: CryptoService) {}

  add(frame: Uint8Array): void {
    this.messages.push(frame)
  }

  /** SHA-256 of the messages so far. */
  hash(): Uint8Array {
    return this.crypto.sha256(concatBytes(this.messages))
  }
}
