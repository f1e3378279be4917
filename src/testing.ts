/**
 * Test support that ships with the library: the in-memory socket pair with fault injection and the
 * deterministic `Crypto` layer, for testing code built on cvg-core without a network.
 */
export * as MemorySocket from "./transport/MemorySocket.js"
export * as DeterministicCrypto from "./crypto/DeterministicCrypto.js"
