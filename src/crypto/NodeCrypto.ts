/**
 * The `Crypto` service on `node:crypto` (OpenSSL). No primitive is written by hand here.
 *
 * P-521 key generation and ECDH run with the synchronous `generateKeyPairSync` and `diffieHellman` on
 * a few worker threads (`P521Threads.ts`): off the event loop, so that open sessions keep their
 * latency during a burst of handshakes, at about half the CPU of WebCrypto's threadpool jobs
 * (docs/performance.md: a derive costs ~2.7 ms synchronously against 5.7-7.5 ms through `deriveBits`).
 * Peer keys are still validated by WebCrypto's import. Everything on the per-frame path is
 * synchronous on the event loop, because a thread hop costs more than the work itself.
 */
import * as NodeCrypto from "node:crypto"
import { availableParallelism } from "node:os"
import { Effect, Either, Layer, Scope } from "effect"
import {
  AEAD_KEY_LENGTH,
  AEAD_NONCE_LENGTH,
  AEAD_TAG_LENGTH,
  Crypto,
  CryptoError,
  PUBLIC_KEY_LENGTH,
  SHARED_SECRET_LENGTH
} from "./Crypto.js"
import type { Aead, CryptoService, EcdhKeyPair, EcdhPublicKey, Sha256Hasher } from "./Crypto.js"
import * as P521Threads from "./P521Threads.js"

const subtle = NodeCrypto.webcrypto.subtle
const ECDH_P521 = { name: "ECDH", namedCurve: "P-521" } as const
/** P-521 field elements and scalars are 521 bits, i.e. 66 bytes. */
const SCALAR_LENGTH = 66
/** RFC 5869 §2.3: L <= 255 * HashLen. */
const HKDF_MAX_LENGTH = 255 * 32
/**
 * Node refuses `info` above 1024 bytes (an OpenSSL provider limit, not RFC 5869's); we report it as
 * `InvalidLength` rather than let it throw. The protocol's labels are far shorter.
 */
const HKDF_MAX_INFO_LENGTH = 1024
/** @internal Order of the P-521 base point (SEC 2 §2.6.1). */
export const P521_ORDER =
  0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n

const internal = (detail: string) => new CryptoError({ reason: "Internal", detail })
const invalidLength = (detail: string) => new CryptoError({ reason: "InvalidLength", detail })
const invalidPublicKey = (detail: string) => new CryptoError({ reason: "InvalidPublicKey", detail })
/** Shared instance: a decryption failure carries nothing that depends on the input. */
const decryptFailed = Either.left(new CryptoError({ reason: "DecryptFailed" }))

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** Our key pairs and imported peer keys are `KeyObject`s on P-521; nothing else is accepted. */
const isP521Key = (value: unknown, type: "private" | "public"): value is NodeCrypto.KeyObject =>
  value instanceof NodeCrypto.KeyObject && value.type === type && value.asymmetricKeyType === "ec" &&
  value.asymmetricKeyDetails?.namedCurve === "secp521r1"

/**
 * The unique DER of a SubjectPublicKeyInfo for id-ecPublicKey on the named curve secp521r1
 * (RFC 5480): what `generateKeyPairSync` encodes before the 133-byte uncompressed point.
 */
const P521_SPKI_PREFIX = Buffer.from("30819b301006072a8648ce3d020106052b8104002303818600", "hex")

const rawPointOf = (spki: unknown): Uint8Array | undefined =>
  spki instanceof Uint8Array && spki.length === P521_SPKI_PREFIX.length + PUBLIC_KEY_LENGTH &&
    P521_SPKI_PREFIX.equals(spki.subarray(0, P521_SPKI_PREFIX.length))
    ? Uint8Array.from(spki.subarray(P521_SPKI_PREFIX.length))
    : undefined

export interface P521PoolOptions {
  /** Jobs running at once. Default `cores − 1`, at least 1. */
  readonly concurrency?: number | undefined
  /** Jobs waiting for a slot; one more fails at once with `CryptoError("Busy")`. Default 128. */
  readonly maxQueue?: number | undefined
}

/**
 * Under a second of P-521 work on two cores (a derive costs ~3-5 ms of CPU): a legitimate burst (50
 * clients at once) waits well within the handshake timeout instead of being refused, while a flood
 * cannot queue without bound. Under load the server asks for a puzzle first (PROTOCOL.md §3.6), so
 * replayed hellos do not reach this queue at all.
 */
export const DEFAULT_MAX_QUEUE = 128
const PREPARED_KEY_PAIRS = 2
/** A P-521 job takes milliseconds; one that has not finished after this long is not waited for. */
const STUCK_JOB_MS = 10_000

type Decoded<A> = Either.Either<A, string>

/**
 * The P-521 work of one `Crypto` (docs/performance.md). Jobs run on the process's P-521 threads
 * (`P521Threads.ts`, `cores − 1` of them); on a machine with few cores, more concurrent scalar
 * multiplications would take every core from the event loop, and every open session's latency with
 * it. So at most `concurrency` jobs of this `Crypto` run at once and at most `maxQueue` wait; beyond
 * that a job is refused at once (`Busy`), which the server turns into a refusal instead of letting a
 * flood queue without bound (PROTOCOL.md §10).
 *
 * A slot is held until the thread answers, not until the fiber that asked is done: an interrupted
 * handshake (timed out, evicted) cannot make a still-running job look free. A job still waiting for a
 * slot is simply dropped when its fiber is interrupted.
 *
 * Two ephemeral key pairs are prepared ahead while the pool is idle, so that a handshake rarely waits
 * for key generation; each pair is still used exactly once. Only from the second key pair asked for
 * on: a pool that serves one handshake (the default `Crypto` that `connect` builds per connection)
 * would throw its prepared pairs away, and its derive would wait behind them.
 */
const makeP521Pool = (options: P521PoolOptions = {}) => {
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? availableParallelism() - 1))
  const maxQueue = Math.max(0, Math.floor(options.maxQueue ?? DEFAULT_MAX_QUEUE))
  let inFlight = 0
  const waiting: Array<() => void> = []
  const prepared: Array<EcdhKeyPair> = []
  let refilling = false
  let asked = 0

  const release = () => {
    inFlight--
    const next = waiting.shift()
    if (next !== undefined) next()
    else refill()
  }

  /**
   * Runs `request` in a slot; the slot is released when a thread answers, or after
   * {@link STUCK_JOB_MS} if none does: one job that never completes must not hold a slot, and with it
   * every later handshake of the server, forever (PROTOCOL.md §10.5).
   */
  const submit = <A>(
    request: P521Threads.Request,
    decode: (reply: P521Threads.Reply) => Decoded<A>,
    onSettled: (result: Decoded<A>) => void
  ): void => {
    inFlight++
    let settled = false
    // Assigned after `run` returns, which may already have settled the job (a thread that failed to start).
    let cancel: (() => void) | undefined
    const stuck = setTimeout(() => settle(Either.left(`no result after ${STUCK_JOB_MS} ms`)), STUCK_JOB_MS)
    stuck.unref()
    const settle = (result: Decoded<A>) => {
      if (settled) return
      settled = true
      clearTimeout(stuck)
      cancel?.()
      release()
      onSettled(result)
    }
    cancel = P521Threads.run(request, (outcome) => {
      if (!outcome.ok) return settle(Either.left(outcome.error))
      const error = outcome.reply.error
      settle(error === undefined ? decode(outcome.reply) : Either.left(String(error)))
    })
  }

  const run = <A>(what: string, request: P521Threads.Request, decode: (reply: P521Threads.Reply) => Decoded<A>) =>
    Effect.async<A, CryptoError>((resume) => {
      const start = () =>
        submit(request, decode, (result) =>
          resume(Either.isRight(result) ? Effect.succeed(result.right) : Effect.fail(internal(`${what}: ${result.left}`))))
      if (inFlight < concurrency) {
        start()
        return
      }
      if (waiting.length >= maxQueue) {
        resume(Effect.fail(new CryptoError({ reason: "Busy", detail: `P-521 work: ${inFlight} running, ${waiting.length} waiting` })))
        return
      }
      waiting.push(start)
      return Effect.sync(() => {
        const at = waiting.indexOf(start)
        if (at >= 0) waiting.splice(at, 1)
      })
    })

  /** The private key stays a `KeyObject`: its scalar never exists as bytes outside OpenSSL. */
  const decodeKeyPair = (reply: P521Threads.Reply): Decoded<EcdhKeyPair> => {
    const publicKey = rawPointOf(reply.spki)
    return publicKey !== undefined && isP521Key(reply.privateKey, "private")
      ? Either.right({ publicKey, privateKey: reply.privateKey })
      : Either.left("malformed key pair from the P-521 thread")
  }

  const decodeSecret = (reply: P521Threads.Reply): Decoded<Uint8Array> =>
    reply.secret instanceof Uint8Array && reply.secret.length === SHARED_SECRET_LENGTH
      ? Either.right(reply.secret)
      : Either.left("malformed secret from the P-521 thread")

  const KEYGEN: P521Threads.Request = { op: "keygen" }

  /** Prepares key pairs only with a free slot and nobody waiting, and once a second pair was asked for. */
  const refill = (): void => {
    if (asked < 2 || refilling || prepared.length >= PREPARED_KEY_PAIRS || inFlight >= concurrency || waiting.length > 0) return
    refilling = true
    submit(KEYGEN, decodeKeyPair, (result) => {
      refilling = false
      // A key pair that failed to generate is simply not added; the next handshake makes its own.
      if (Either.isRight(result)) prepared.push(result.right)
      refill()
    })
  }

  const generateKeyPair: Effect.Effect<EcdhKeyPair, CryptoError> = Effect.suspend(() => {
    asked++
    const ready = prepared.shift()
    const pair = ready === undefined ? run("generate key pair", KEYGEN, decodeKeyPair) : Effect.succeed(ready)
    return Effect.ensuring(pair, Effect.sync(refill))
  })

  const derive = (privateKey: NodeCrypto.KeyObject, publicKey: NodeCrypto.KeyObject) =>
    run("derive", { op: "derive", privateKey, publicKey }, decodeSecret)

  return {
    generateKeyPair,
    derive,
    load: () => ({ inFlight, queued: waiting.length, concurrency, maxQueue })
  }
}

const importPublicKey = (raw: Uint8Array): Effect.Effect<EcdhPublicKey, CryptoError> =>
  Effect.suspend(() => {
    // OpenSSL would also take compressed (0x02/0x03) and hybrid (0x06/0x07) encodings; the protocol
    // carries only uncompressed points, so anything else is refused before OpenSSL sees it.
    if (raw.length !== PUBLIC_KEY_LENGTH || raw[0] !== 0x04) {
      return Effect.fail(invalidPublicKey("expected a 133-byte uncompressed P-521 point"))
    }
    // Copy so that later mutation of the caller's buffer cannot change what we validated.
    const copy = Uint8Array.from(raw)
    // OpenSSL's point decoding rejects coordinates >= p and points off the curve; the identity has no
    // uncompressed encoding, and P-521's cofactor is 1, so every point that passes is in the group.
    return Effect.tryPromise({
      try: () => subtle.importKey("raw", copy, ECDH_P521, true, []),
      catch: () => invalidPublicKey("not a point on P-521")
    }).pipe(
      // As a KeyObject, the form a P-521 thread takes it in (posted, not re-parsed).
      Effect.map((key): EcdhPublicKey => ({ raw: copy, handle: NodeCrypto.KeyObject.from(key) }))
    )
  })

const deriveSharedSecret = (pool: ReturnType<typeof makeP521Pool>) =>
(own: EcdhKeyPair, peer: EcdhPublicKey): Effect.Effect<Uint8Array, CryptoError> =>
  Effect.suspend(() => {
    const privateKey = own.privateKey
    const publicKey = peer.handle
    if (!isP521Key(privateKey, "private")) {
      return Effect.fail(internal("key pair was not made by this Crypto implementation"))
    }
    if (!isP521Key(publicKey, "public")) {
      return Effect.fail(invalidPublicKey("public key was not imported by this Crypto implementation"))
    }
    return pool.derive(privateKey, publicKey)
  })

const hkdf = (ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number) =>
  Effect.suspend((): Effect.Effect<Uint8Array, CryptoError> => {
    if (!Number.isSafeInteger(length) || length < 0 || length > HKDF_MAX_LENGTH) {
      return Effect.fail(invalidLength(`HKDF-SHA256 output must be 0..${HKDF_MAX_LENGTH} bytes`))
    }
    if (info.length > HKDF_MAX_INFO_LENGTH) {
      return Effect.fail(invalidLength(`HKDF info must be at most ${HKDF_MAX_INFO_LENGTH} bytes`))
    }
    // Synchronous on purpose: it costs microseconds, while the async variant would hop to libuv's
    // threadpool and back for less work than the hop.
    return Effect.try({
      try: () => new Uint8Array(NodeCrypto.hkdfSync("sha256", ikm, salt, info, length)),
      catch: (cause) => internal(`hkdf: ${messageOf(cause)}`)
    })
  })

/**
 * Results are Buffers, possibly views into Node's shared allocation pool for small sizes: use them
 * as `Uint8Array`s (offset and length included), never through their `.buffer` alone.
 */
/**
 * AES-256-GCM under one key. Each session keeps two for as long as it lives, so the operations are
 * shared functions that read the key from the object they are called on, not closures per key
 * (docs/resources.md, "Memory of an idle session"); the key is an own property, so that a copy of the
 * object (`{ ...aead, tagParts }`, as a wrapping `Crypto` may make) still works.
 */
interface KeyedAead extends Aead {
  readonly key: NodeCrypto.KeyObject
}

const aeadOperations = {
  seal(this: KeyedAead, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Either.Either<Uint8Array, CryptoError> {
    if (nonce.length !== AEAD_NONCE_LENGTH) return Either.left(invalidLength("AES-GCM nonce must be 12 bytes"))
    try {
      const cipher = NodeCrypto.createCipheriv("aes-256-gcm", this.key, nonce, { authTagLength: AEAD_TAG_LENGTH })
      cipher.setAAD(aad)
      const body = cipher.update(plaintext)
      // GCM is a stream mode: `final` yields no bytes, so one concat is the only copy.
      const tail = cipher.final()
      const tag = cipher.getAuthTag()
      return Either.right(tail.length === 0 ? Buffer.concat([body, tag]) : Buffer.concat([body, tail, tag]))
    } catch (cause) {
      return Either.left(internal(`seal: ${messageOf(cause)}`))
    }
  },
  sealParts(this: KeyedAead, nonce: Uint8Array, aad: Uint8Array, parts: ReadonlyArray<Uint8Array>): Either.Either<Array<Uint8Array>, CryptoError> {
    if (nonce.length !== AEAD_NONCE_LENGTH) return Either.left(invalidLength("AES-GCM nonce must be 12 bytes"))
    try {
      const cipher = NodeCrypto.createCipheriv("aes-256-gcm", this.key, nonce, { authTagLength: AEAD_TAG_LENGTH })
      cipher.setAAD(aad)
      const out: Array<Uint8Array> = []
      for (const part of parts) if (part.length > 0) out.push(cipher.update(part))
      const tail = cipher.final()
      if (tail.length > 0) out.push(tail)
      out.push(cipher.getAuthTag())
      return Either.right(out)
    } catch (cause) {
      return Either.left(internal(`seal: ${messageOf(cause)}`))
    }
  },
  open(this: KeyedAead, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Either.Either<Uint8Array, CryptoError> {
    if (nonce.length !== AEAD_NONCE_LENGTH) return Either.left(invalidLength("AES-GCM nonce must be 12 bytes"))
    if (sealed.length < AEAD_TAG_LENGTH) return decryptFailed
    try {
      const split = sealed.length - AEAD_TAG_LENGTH
      const decipher = NodeCrypto.createDecipheriv("aes-256-gcm", this.key, nonce, { authTagLength: AEAD_TAG_LENGTH })
      decipher.setAuthTag(sealed.subarray(split))
      decipher.setAAD(aad)
      const body = decipher.update(sealed.subarray(0, split))
      // `final` is where the tag is checked; `body` is released unread if it throws.
      const tail = decipher.final()
      return Either.right(tail.length === 0 ? body : Buffer.concat([body, tail]))
    } catch {
      return decryptFailed
    }
  },
  // GMAC through GCM with nothing to encrypt: one GHASH pass over the parts, no copy of them.
  tagParts(this: KeyedAead, nonce: Uint8Array, parts: ReadonlyArray<Uint8Array>): Either.Either<Uint8Array, CryptoError> {
    if (nonce.length !== AEAD_NONCE_LENGTH) return Either.left(invalidLength("AES-GCM nonce must be 12 bytes"))
    try {
      const cipher = NodeCrypto.createCipheriv("aes-256-gcm", this.key, nonce, { authTagLength: AEAD_TAG_LENGTH })
      for (const part of parts) if (part.length > 0) cipher.setAAD(part)
      cipher.final()
      return Either.right(cipher.getAuthTag())
    } catch (cause) {
      return Either.left(internal(`tag: ${messageOf(cause)}`))
    }
  },
  // OpenSSL compares the tag in `final`, in constant time.
  verifyParts(this: KeyedAead, nonce: Uint8Array, parts: ReadonlyArray<Uint8Array>, tag: Uint8Array): Either.Either<void, CryptoError> {
    if (nonce.length !== AEAD_NONCE_LENGTH) return Either.left(invalidLength("AES-GCM nonce must be 12 bytes"))
    if (tag.length !== AEAD_TAG_LENGTH) return decryptFailed
    try {
      const decipher = NodeCrypto.createDecipheriv("aes-256-gcm", this.key, nonce, { authTagLength: AEAD_TAG_LENGTH })
      decipher.setAuthTag(tag)
      for (const part of parts) if (part.length > 0) decipher.setAAD(part)
      decipher.final()
      return Either.void
    } catch {
      return decryptFailed
    }
  }
}

const aead = (key: Uint8Array): Either.Either<Aead, CryptoError> => {
  if (key.length !== AEAD_KEY_LENGTH) return Either.left(invalidLength("AES-256-GCM key must be 32 bytes"))
  // One KeyObject per key, so no frame copies the key into OpenSSL again.
  return Either.try({
    try: (): KeyedAead => ({
      key: NodeCrypto.createSecretKey(key),
      seal: aeadOperations.seal,
      sealParts: aeadOperations.sealParts,
      open: aeadOperations.open,
      tagParts: aeadOperations.tagParts,
      verifyParts: aeadOperations.verifyParts
    }),
    catch: (cause) => internal(`aead: ${messageOf(cause)}`)
  })
}

/**
 * One-shot SHA-256: `crypto.hash` (Node 20.12+) skips the Hash object and costs about half of
 * `createHash` for short inputs, which is what a client solving a puzzle (PROTOCOL.md §3.6) does
 * thousands of times; older Node versions fall back to `createHash`.
 */
const oneShotHash: ((algorithm: string, data: Uint8Array, encoding: "buffer") => Buffer) | undefined =
  "hash" in NodeCrypto && typeof NodeCrypto.hash === "function" ? NodeCrypto.hash : undefined
const sha256 = (data: Uint8Array): Uint8Array =>
  oneShotHash === undefined ? NodeCrypto.createHash("sha256").update(data).digest() : oneShotHash("sha256", data, "buffer")

const sha256Hasher = (): Sha256Hasher => {
  const hash = NodeCrypto.createHash("sha256")
  return { update: (data) => void hash.update(data), digest: () => hash.digest() }
}

const hmacSha256 = (key: Uint8Array, data: Uint8Array): Uint8Array =>
  NodeCrypto.createHmac("sha256", key).update(data).digest()

/** A negative or fractional length is a programming error and dies, as the signature has no error. */
const randomBytes = (length: number): Effect.Effect<Uint8Array> => Effect.sync(() => NodeCrypto.randomBytes(length))

/** The DER of an Ed25519 SubjectPublicKeyInfo before its 32 key bytes (RFC 8410 §4). */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex")
const ED25519_PUBLIC_KEY_LENGTH = 32
const ED25519_SIGNATURE_LENGTH = 64

const signEd25519 = (privateKey: NodeCrypto.KeyObject, data: Uint8Array): Either.Either<Uint8Array, CryptoError> => {
  if (privateKey.type !== "private" || privateKey.asymmetricKeyType !== "ed25519") {
    return Either.left(internal("sign: not a private Ed25519 key"))
  }
  try {
    // Ed25519 hashes internally, so the digest argument is null (RFC 8032 §5.1.6).
    return Either.right(new Uint8Array(NodeCrypto.sign(null, data, privateKey)))
  } catch (cause) {
    return Either.left(internal(`sign: ${messageOf(cause)}`))
  }
}

/**
 * Lengths are checked before OpenSSL sees anything; a 32-byte string that does not decode to a point
 * makes the import or the verification throw, which is a `false` like any other forgery.
 */
const verifyEd25519 = (publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean => {
  if (publicKey.length !== ED25519_PUBLIC_KEY_LENGTH || signature.length !== ED25519_SIGNATURE_LENGTH) return false
  try {
    const key = NodeCrypto.createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: "der", type: "spki" })
    return NodeCrypto.verify(null, data, key, signature)
  } catch {
    return false
  }
}

/**
 * On a length mismatch `a` is still compared, with itself, so the time spent depends only on
 * `a.length` (which the caller already knows) and not on whether or where the contents differ.
 * Lengths themselves are not hidden: in the protocol every compared value has a public, fixed size.
 */
const timingSafeEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) {
    NodeCrypto.timingSafeEqual(a, a)
    return false
  }
  return NodeCrypto.timingSafeEqual(a, b)
}

/**
 * A `Crypto` with its own P-521 work pool. Build one per process role, not per connection: the server
 * builds one in `listen` and shares it across connections, so that its caps hold server-wide.
 */
export const makeWith = (options: P521PoolOptions = {}): Effect.Effect<CryptoService> =>
  Effect.sync(() => {
    const pool = makeP521Pool(options)
    return {
      generateKeyPair: pool.generateKeyPair,
      importPublicKey,
      deriveSharedSecret: deriveSharedSecret(pool),
      hkdf,
      aead,
      sha256,
      sha256Hasher,
      hmacSha256,
      randomBytes,
      signEd25519,
      verifyEd25519,
      timingSafeEqual,
      load: pool.load
    }
  })

export const make: Effect.Effect<CryptoService> = makeWith()

/**
 * Holds the process's P-521 threads for as long as the scope is open; when the last holder's scope
 * closes, they are terminated once idle for a few seconds (`P521Threads.ts` says why not at once).
 * `make` without a scope leaves them to that idle rule alone; either way they never keep the process
 * alive.
 */
const holdThreads: Effect.Effect<void, never, Scope.Scope> = Effect.asVoid(
  Effect.acquireRelease(Effect.sync(P521Threads.hold), (release) => Effect.sync(release))
)

export const layer: Layer.Layer<Crypto> = Layer.scoped(Crypto, Effect.zipRight(holdThreads, make))

export const layerWith = (options: P521PoolOptions): Layer.Layer<Crypto> =>
  Layer.scoped(Crypto, Effect.zipRight(holdThreads, makeWith(options)))

/**
 * @internal Builds a key pair from a given 66-byte big-endian private scalar in [1, n-1], for the
 * deterministic layer and the known-answer tests. Not for production: the scalar passes through JS
 * memory, and computing its public key blocks the event loop.
 */
export const keyPairFromPrivateScalar = (scalar: Uint8Array): Effect.Effect<EcdhKeyPair, CryptoError> =>
  Effect.gen(function*() {
    if (scalar.length !== SCALAR_LENGTH) {
      return yield* Effect.fail(invalidLength("P-521 private scalar must be 66 bytes"))
    }
    const value = BigInt(`0x${Buffer.from(scalar).toString("hex")}`)
    if (value < 1n || value >= P521_ORDER) {
      return yield* Effect.fail(internal("P-521 private scalar out of range [1, n-1]"))
    }
    const publicKey = yield* Effect.try({
      try: () => {
        const ecdh = NodeCrypto.createECDH("secp521r1")
        ecdh.setPrivateKey(scalar)
        return new Uint8Array(ecdh.getPublicKey(undefined, "uncompressed"))
      },
      catch: (cause) => internal(`public key from scalar: ${messageOf(cause)}`)
    })
    const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url")
    // JWK is the one import format that takes a bare scalar without DER plumbing.
    const privateKey = yield* Effect.try({
      try: () =>
        NodeCrypto.createPrivateKey({
          format: "jwk",
          key: {
            kty: "EC",
            crv: "P-521",
            d: b64(scalar),
            x: b64(publicKey.subarray(1, 1 + SCALAR_LENGTH)),
            y: b64(publicKey.subarray(1 + SCALAR_LENGTH))
          }
        }),
      catch: (cause) => internal(`import private scalar: ${messageOf(cause)}`)
    })
    return { publicKey, privateKey }
  })
