/**
 * Session keys after an accepted enrollment, and the counter-nonce cipher that uses them.
 *
 * The seed says "the service can continue to use SK to communicate with the enrollee";
 * v1 does not use SK directly but splits it, salted with the state hash h, into one key
 * per direction, so that the two sides never encrypt under the same (key, nonce):
 *
 *   K = HKDF-SHA256(salt = h, IKM = SK, info = INFO ‖ "/session", L = 64)
 *   k_s2e = K[0..32] (service → enrollee),  k_e2s = K[32..64] (enrollee → service)
 *
 * Each direction is AES-256-GCM with a 12-byte nonce 0x00000000 ‖ u64be(counter), the
 * counter starting at 0 and advancing by one per message (the Noise §5.1 nonce layout).
 */
import { EnrollError } from '../../errors.js';
import { abytes, wipe } from '../../crypto/bytes.js';
import { AES_KEY_LEN, GCM_NONCE_LEN, aesGcmDecrypt, aesGcmEncrypt } from '../../crypto/aead.js';
import { hkdfSha256 } from '../../crypto/hash.js';
import { HASH_LEN, KEY_LEN, SESSION_INFO } from './constants.js';

export interface SessionKeys {
  /** Service → enrollee. */
  kS2e: Uint8Array;
  /** Enrollee → service. */
  kE2s: Uint8Array;
}

const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

/**
 * A SessionKeys whose keys never show in `JSON.stringify`, `util.inspect` or template
 * strings (architecture.md: key-holding objects never expose secrets).
 */
export class SessionSecrets implements SessionKeys {
  readonly #kS2e: Uint8Array;
  readonly #kE2s: Uint8Array;

  constructor(kS2e: Uint8Array, kE2s: Uint8Array) {
    this.#kS2e = abytes(kS2e, AES_KEY_LEN, 'kS2e');
    this.#kE2s = abytes(kE2s, AES_KEY_LEN, 'kE2s');
  }

  get kS2e(): Uint8Array {
    return this.#kS2e;
  }

  get kE2s(): Uint8Array {
    return this.#kE2s;
  }

  wipe(): void {
    wipe(this.#kS2e, this.#kE2s);
  }

  toJSON(): string {
    return 'SessionKeys(redacted)';
  }

  toString(): string {
    return 'SessionKeys(redacted)';
  }

  [inspectSymbol](): string {
    return this.toString();
  }
}

/** K = HKDF-SHA256(salt = h, IKM = SK, info = INFO ‖ "/session", L = 64), split in two. */
export function deriveSessionKeys(sk: Uint8Array, h: Uint8Array, info: Uint8Array = SESSION_INFO): SessionSecrets {
  abytes(sk, KEY_LEN, 'sk');
  abytes(h, HASH_LEN, 'h');
  abytes(info, undefined, 'info');
  const k = hkdfSha256(sk, h, info, 2 * AES_KEY_LEN);
  const keys = new SessionSecrets(k.slice(0, AES_KEY_LEN), k.slice(AES_KEY_LEN));
  wipe(k);
  return keys;
}

/**
 * The counter is refused once it reaches 2^64 - 1, so that value is never used as a nonce
 * (as Noise §5.1 reserves it) and the counter can never wrap to a used value.
 */
export const SESSION_MAX_COUNTER = (1n << 64n) - 1n;

/**
 * One direction of a session: AES-256-GCM under one key with a counter nonce.
 *
 * `seal` uses the current counter and then advances it. `open` expects exactly the
 * current counter: a reordered, replayed or dropped message fails to authenticate
 * (ERR_SESSION_DECRYPT), since its nonce differs. A failed `open` does not advance the
 * counter and does not poison the cipher: the next genuine message still opens. That is
 * safe because opening under a nonce reveals nothing and is never an encryption, so no
 * (key, nonce) pair is ever used twice to encrypt; an attacker's forgeries only cost the
 * receiver a tag check each.
 *
 * Persisting: `exportState()` returns the key and next counter; the caller stores them in
 * a 0600 keystore and must write the state back after every seal, before sending, so a
 * restart never reuses a counter.
 */
export class SessionCipher {
  readonly #key: Uint8Array;
  #counter: bigint;
  #wiped = false;

  constructor(key: Uint8Array, counter: bigint = 0n) {
    abytes(key, AES_KEY_LEN, 'key');
    if (typeof counter !== 'bigint' || counter < 0n || counter > SESSION_MAX_COUNTER) {
      throw new EnrollError('ERR_INVALID_ARG', '"counter" must be a bigint in 0..2^64-1');
    }
    this.#key = Uint8Array.from(key);
    this.#counter = counter;
  }

  /** The counter the next seal or open will use. */
  get counter(): bigint {
    return this.#counter;
  }

  #nonce(): Uint8Array {
    if (this.#wiped) throw new EnrollError('ERR_INVALID_ARG', 'session cipher was wiped');
    if (this.#counter >= SESSION_MAX_COUNTER) {
      throw new EnrollError('ERR_NONCE_EXHAUSTED', 'session counter exhausted: this key must not be used again', {
        hint: 'enroll again to get fresh session keys',
      });
    }
    const nonce = new Uint8Array(GCM_NONCE_LEN);
    new DataView(nonce.buffer).setBigUint64(4, this.#counter, false);
    return nonce;
  }

  seal(plaintext: Uint8Array, aad: Uint8Array = new Uint8Array(0)): Uint8Array {
    abytes(plaintext, undefined, 'plaintext');
    abytes(aad, undefined, 'aad');
    const sealed = aesGcmEncrypt(this.#key, this.#nonce(), plaintext, aad);
    this.#counter += 1n;
    return sealed;
  }

  open(sealed: Uint8Array, aad: Uint8Array = new Uint8Array(0)): Uint8Array {
    abytes(sealed, undefined, 'sealed');
    abytes(aad, undefined, 'aad');
    const nonce = this.#nonce();
    let plaintext: Uint8Array;
    try {
      plaintext = aesGcmDecrypt(this.#key, nonce, sealed, aad);
    } catch (cause) {
      throw new EnrollError('ERR_SESSION_DECRYPT', 'session message failed to authenticate', { cause });
    }
    this.#counter += 1n;
    return plaintext;
  }

  /** The key and next counter. Secret: persist only in a 0600 keystore. */
  exportState(): { key: Uint8Array; counter: bigint } {
    return { key: Uint8Array.from(this.#key), counter: this.#counter };
  }

  /** Zero-fills the key; every later seal or open fails. */
  wipe(): void {
    wipe(this.#key);
    this.#wiped = true;
  }

  toJSON(): string {
    return this.toString();
  }

  toString(): string {
    return `SessionCipher(counter=${this.#counter})`;
  }

  [inspectSymbol](): string {
    return this.toString();
  }
}

export interface SessionPair {
  send: SessionCipher;
  recv: SessionCipher;
}

/** The enrollee sends under k_e2s and receives under k_s2e. */
export function enrolleeSession(keys: SessionKeys): SessionPair {
  return { send: new SessionCipher(keys.kE2s), recv: new SessionCipher(keys.kS2e) };
}

/** The service sends under k_s2e and receives under k_e2s. */
export function serviceSession(keys: SessionKeys): SessionPair {
  return { send: new SessionCipher(keys.kS2e), recv: new SessionCipher(keys.kE2s) };
}
