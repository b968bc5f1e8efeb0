/**
 * ML-KEM-768 (FIPS 203, "Module-Lattice-Based Key-Encapsulation Mechanism Standard",
 * August 2024) through @noble/post-quantum, pinned: node 20 has no ML-KEM. This is the only
 * module that imports it; every argument is checked here in the project's style
 * (`abytes`: ERR_INVALID_ARG naming the argument) before noble sees it.
 *
 * Sizes (FIPS 203 Table 3, k = 3): encapsulation key ek 1184, decapsulation key dk 2400,
 * ciphertext 1088, shared secret 32. Key generation is deterministic from the 64-byte seed
 * d ‖ z (FIPS 203 §6.1 ML-KEM.KeyGen_internal), which is what the service stores (sealed):
 * 64 bytes instead of 2400. Encapsulation takes the 32-byte m (FIPS 203 §6.2
 * ML-KEM.Encaps_internal) from the caller's randomness, so known-answer vectors can pin it.
 *
 * Decapsulation never fails on a ciphertext of the right length: a ciphertext that is not
 * the encryption it claims to be yields the implicit-rejection key J(z ‖ c) (FIPS 203 §6.3
 * step 9), a pseudo-random value unknown to the sender. Callers must therefore treat SS as
 * unauthenticated until something keyed by it verifies (the enrollment AEAD).
 */
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { EnrollError } from '../errors.js';
import { abytes } from './bytes.js';
import { systemRandom, type RandomSource } from './random.js';

export const MLKEM768_PUBLIC_KEY_LEN = 1184;
export const MLKEM768_SECRET_KEY_LEN = 2400;
export const MLKEM768_CIPHERTEXT_LEN = 1088;
export const MLKEM768_SHARED_SECRET_LEN = 32;
/** d ‖ z (FIPS 203 §6.1). */
export const MLKEM768_SEED_LEN = 64;
/** m (FIPS 203 §6.2). */
export const MLKEM768_MESSAGE_LEN = 32;

const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

/**
 * An ML-KEM-768 key pair whose decapsulation key never shows in `JSON.stringify`,
 * `util.inspect`, `console.log` or template strings (STYLE: key objects never print key
 * material; x25519.ts KeyPair does the same). dk holds z, the implicit-rejection secret.
 */
export class MlKemKeyPair {
  /** The encapsulation key ek (public), 1184 bytes. */
  readonly publicKey: Uint8Array;
  readonly #secretKey: Uint8Array;

  constructor(publicKey: Uint8Array, secretKey: Uint8Array) {
    this.publicKey = abytes(publicKey, MLKEM768_PUBLIC_KEY_LEN, 'publicKey');
    this.#secretKey = abytes(secretKey, MLKEM768_SECRET_KEY_LEN, 'secretKey');
  }

  /** The decapsulation key dk (secret), 2400 bytes. */
  get secretKey(): Uint8Array {
    return this.#secretKey;
  }

  /** Zero-fills dk; the pair must not be used for decapsulation afterwards. */
  wipe(): void {
    this.#secretKey.fill(0);
  }

  toJSON(): { publicKey: string } {
    return { publicKey: Buffer.from(this.publicKey).toString('hex') };
  }

  toString(): string {
    return `MlKemKeyPair(ek ${Buffer.from(this.publicKey.subarray(0, 8)).toString('hex')}…)`;
  }

  [inspectSymbol](): string {
    return this.toString();
  }
}

/**
 * ML-KEM.KeyGen_internal(d, z) from the 64-byte seed d ‖ z, or from 64 fresh random bytes.
 */
export function mlKem768Keygen(seed?: Uint8Array | RandomSource): MlKemKeyPair {
  const s = seed === undefined ? systemRandom(MLKEM768_SEED_LEN) : typeof seed === 'function' ? seed(MLKEM768_SEED_LEN) : seed;
  abytes(s, MLKEM768_SEED_LEN, 'seed');
  try {
    const { publicKey, secretKey } = ml_kem768.keygen(s);
    return new MlKemKeyPair(publicKey, secretKey);
  } finally {
    // A seed drawn here is d ‖ z, as secret as dk: wiped. A given seed is the caller's.
    if (seed === undefined || typeof seed === 'function') s.fill(0);
  }
}

/**
 * ML-KEM.Encaps to `publicKey`: { cipherText (1088), sharedSecret (32) }. `m` is the 32-byte
 * message of Encaps_internal, from `random` (default the system's) or given (vectors only).
 *
 * The encapsulation key check of FIPS 203 §7.2 (every coefficient < q) is run by noble; a
 * key that fails it is ERR_KEY_INVALID.
 */
export function mlKem768Encapsulate(
  publicKey: Uint8Array,
  m: Uint8Array | RandomSource = systemRandom,
): { cipherText: Uint8Array; sharedSecret: Uint8Array } {
  abytes(publicKey, MLKEM768_PUBLIC_KEY_LEN, 'publicKey');
  const msg = typeof m === 'function' ? m(MLKEM768_MESSAGE_LEN) : m;
  abytes(msg, MLKEM768_MESSAGE_LEN, 'm');
  try {
    return ml_kem768.encapsulate(publicKey, msg);
  } catch (cause) {
    throw new EnrollError('ERR_KEY_INVALID', 'ML-KEM-768 encapsulation key fails the FIPS 203 §7.2 modulus check', { cause });
  } finally {
    // m is the preimage of the shared secret (K = G(m ‖ H(ek))): one drawn here is wiped,
    // as noble does with an m it draws itself. A given m (vectors) is the caller's.
    if (typeof m === 'function') msg.fill(0);
  }
}

/**
 * ML-KEM.Decaps(dk, c): the shared secret, or the implicit-rejection key for a ciphertext
 * that was not made for dk. Only the lengths are checked: a well-formed ciphertext never
 * makes it throw. A decapsulation key that fails the FIPS 203 §7.3 hash check (a corrupted
 * dk) is ERR_KEY_INVALID, a fault on the caller's side.
 */
export function mlKem768Decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array {
  abytes(cipherText, MLKEM768_CIPHERTEXT_LEN, 'cipherText');
  abytes(secretKey, MLKEM768_SECRET_KEY_LEN, 'secretKey');
  try {
    return ml_kem768.decapsulate(cipherText, secretKey);
  } catch (cause) {
    throw new EnrollError('ERR_KEY_INVALID', 'ML-KEM-768 decapsulation key fails the FIPS 203 §7.3 check', { cause });
  }
}

/**
 * A decapsulator bound to one decapsulation key, for a key used many times (the service's
 * PQSPK_A): noble's `prepare()` expands the public matrix Â of the embedded encapsulation
 * key once (FIPS 203 §5.2 K-PKE.Encrypt steps 4–8, redone by every Decaps for its
 * re-encryption check) instead of once per ciphertext, about a quarter of a Decaps. The
 * result is the same as mlKem768Decapsulate's (test/crypto/mlkem.test.ts runs NIST's
 * decapsulation vectors through both), implicit rejection included. The decapsulation key
 * is checked once here (FIPS 203 §7.3) and is not copied: the caller keeps it and wipes it.
 */
export interface MlKemDecapsulator {
  decapsulate(cipherText: Uint8Array): Uint8Array;
}

export function mlKem768Decapsulator(secretKey: Uint8Array): MlKemDecapsulator {
  abytes(secretKey, MLKEM768_SECRET_KEY_LEN, 'secretKey');
  // dk = dk_PKE (384k) ‖ ek (384k + 32) ‖ H(ek) ‖ z (FIPS 203 §6.1 step 3).
  const ek = secretKey.subarray(1152, 1152 + MLKEM768_PUBLIC_KEY_LEN);
  let prepared: { decapsulate(cipherText: Uint8Array, secretKey: Uint8Array): Uint8Array };
  try {
    prepared = ml_kem768.prepare(ek) as typeof prepared;
    // The §7.3 hash check, once: prepared.decapsulate repeats it per call.
    prepared.decapsulate(new Uint8Array(MLKEM768_CIPHERTEXT_LEN), secretKey);
  } catch (cause) {
    throw new EnrollError('ERR_KEY_INVALID', 'ML-KEM-768 decapsulation key fails the FIPS 203 §7.3 check', { cause });
  }
  return {
    decapsulate(cipherText: Uint8Array): Uint8Array {
      abytes(cipherText, MLKEM768_CIPHERTEXT_LEN, 'cipherText');
      try {
        return prepared.decapsulate(cipherText, secretKey);
      } catch (cause) {
        // Only a dk changed or wiped since it was prepared gets here (a well-formed
        // ciphertext never makes Decaps fail): the caller's fault, in the project's one error class.
        throw new EnrollError('ERR_KEY_INVALID', 'ML-KEM-768 decapsulation key changed since it was prepared (wiped?)', { cause });
      }
    },
  };
}
