/**
 * Private prekeys at rest. SPK_A and OPK_A private keys are sealed with AES-256-GCM under the
 * service's store key (a 32-byte secret kept in the service keystore, mode 0600), so a copy
 * of the database alone does not reveal them. The AAD binds each sealed value to its purpose
 * and row, so sealed values cannot be swapped between rows.
 */
import { aesGcmDecrypt, aesGcmEncrypt, GCM_NONCE_LEN } from '../crypto/aead.js';
import { concat, utf8 } from '../crypto/bytes.js';
import { systemRandom, type RandomSource } from '../crypto/random.js';
import { EnrollError } from '../errors.js';

const LABEL = 'ockam-enroll/v1/sealed';

export class Sealer {
  readonly #key: Uint8Array;
  readonly #random: RandomSource;

  constructor(key: Uint8Array, random: RandomSource = systemRandom) {
    if (!(key instanceof Uint8Array) || key.length !== 32) {
      throw new EnrollError('ERR_KEYSTORE_CORRUPT', 'the store key must be 32 bytes');
    }
    this.#key = key;
    this.#random = random;
  }

  /** nonce ‖ AES-256-GCM(key, nonce, secret, LABEL|purpose|rowId). */
  seal(secret: Uint8Array, purpose: string, rowId: Uint8Array): Uint8Array {
    const nonce = this.#random(GCM_NONCE_LEN);
    return concat(nonce, aesGcmEncrypt(this.#key, nonce, secret, aad(purpose, rowId)));
  }

  open(sealed: Uint8Array, purpose: string, rowId: Uint8Array): Uint8Array {
    if (sealed.length < GCM_NONCE_LEN + 16) {
      throw new EnrollError('ERR_STORE', `sealed ${purpose} is truncated`);
    }
    try {
      return aesGcmDecrypt(this.#key, sealed.subarray(0, GCM_NONCE_LEN), sealed.subarray(GCM_NONCE_LEN), aad(purpose, rowId));
    } catch (cause) {
      throw new EnrollError('ERR_STORE', `sealed ${purpose} does not open under this service's store key`, {
        cause,
        hint: 'the database and the keystore must come from the same `service init`',
      });
    }
  }

  toJSON(): string {
    return '[Sealer]';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '[Sealer]';
  }
}

function aad(purpose: string, rowId: Uint8Array): Uint8Array {
  return concat(utf8(`${LABEL}|${purpose}|`), rowId);
}
