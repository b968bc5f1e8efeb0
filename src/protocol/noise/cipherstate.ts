/**
 * The Noise CipherState (Noise Protocol Framework rev 34 §5.1): a key `k` (possibly empty)
 * and a 64-bit counter nonce `n`, with the cipher functions of §12.3 (ChaChaPoly) and
 * §12.4 (AESGCM).
 *
 * AESGCM is the cipher ockam-enroll speaks. ChaChaPoly is here only so that the published
 * ChaChaPoly vectors can be replayed against the same SymmetricState/HandshakeState code.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { EnrollError } from '../../errors.js';
import { aesGcmDecrypt, aesGcmDecryptParts, aesGcmEncrypt, aesGcmEncryptParts } from '../../crypto/aead.js';
import { abytes, concatAll, wipe } from '../../crypto/bytes.js';

/** §3: every Noise message, handshake or transport, is at most 65535 bytes. */
export const NOISE_MAX_MESSAGE_LEN = 65535;

/** §4.2: both cipher functions take 32-byte keys and add a 16-byte authentication tag. */
export const NOISE_KEY_LEN = 32;
export const NOISE_TAG_LEN = 16;

/**
 * §5.1: "The maximum n value (2^64-1) is reserved for other use" (Rekey, §4.2). Once n
 * reaches it, EncryptWithAd/DecryptWithAd must signal an error instead of using it.
 */
export const NOISE_MAX_NONCE = 0xffff_ffff_ffff_ffffn;

export type NoiseCipher = 'AESGCM' | 'ChaChaPoly';

const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

export function assertNoiseCipher(cipher: unknown): NoiseCipher {
  if (cipher !== 'AESGCM' && cipher !== 'ChaChaPoly') {
    throw new EnrollError('ERR_INVALID_ARG', `"cipher" must be 'AESGCM' or 'ChaChaPoly', got ${String(cipher)}`);
  }
  return cipher;
}

export class CipherState {
  readonly cipher: NoiseCipher;
  #k: Uint8Array | undefined;
  #n = 0n;
  /** Scratch 12-byte nonce: 4 zero bytes, then the counter (§12.3 / §12.4). */
  readonly #nonce = new Uint8Array(12);
  readonly #nonceView = new DataView(this.#nonce.buffer);

  constructor(cipher: NoiseCipher = 'AESGCM') {
    this.cipher = assertNoiseCipher(cipher);
  }

  /**
   * §5.1 InitializeKey(key): sets k = key (copied, so the caller may wipe its temp_k) and
   * n = 0. `undefined` is the spec's `empty`. The previous key is wiped: it must never be
   * used again once replaced.
   */
  initializeKey(key: Uint8Array | undefined): void {
    const next = key === undefined ? undefined : abytes(key, NOISE_KEY_LEN, 'key').slice();
    wipe(this.#k);
    this.#k = next;
    this.#n = 0n;
  }

  /** §5.1 HasKey(). */
  hasKey(): boolean {
    return this.#k !== undefined;
  }

  /** §5.1 SetNonce(nonce). 2^64-1 is accepted: it makes every later call fail, as §5.1 requires. */
  setNonce(nonce: bigint): void {
    if (typeof nonce !== 'bigint' || nonce < 0n || nonce > NOISE_MAX_NONCE) {
      throw new EnrollError('ERR_INVALID_ARG', '"nonce" must be a bigint in 0..2^64-1');
    }
    this.#n = nonce;
  }

  /** The next nonce to be used (not secret). */
  get nonce(): bigint {
    return this.#n;
  }

  /** §5.1 EncryptWithAd(ad, plaintext): ENCRYPT(k, n++, ad, plaintext), or plaintext if k is empty. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    abytes(ad, undefined, 'ad');
    abytes(plaintext, undefined, 'plaintext');
    const k = this.#k;
    if (k === undefined) return plaintext;
    const nonce = this.#useNonce();
    const out =
      this.cipher === 'AESGCM' ? aesGcmEncrypt(k, nonce, plaintext, ad) : chachaPolyEncrypt(k, nonce, ad, plaintext);
    this.#n += 1n;
    return out;
  }

  /**
   * §5.1 DecryptWithAd(ad, ciphertext): DECRYPT(k, n++, ad, ciphertext), or ciphertext if k
   * is empty. On an authentication failure n is not incremented and the single opaque
   * ERR_NOISE_DECRYPT is thrown (§4.2: no reason is given for a failure).
   */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    abytes(ad, undefined, 'ad');
    abytes(ciphertext, undefined, 'ciphertext');
    const k = this.#k;
    if (k === undefined) return ciphertext;
    const nonce = this.#useNonce();
    let out: Uint8Array;
    try {
      out =
        this.cipher === 'AESGCM'
          ? aesGcmDecrypt(k, nonce, ciphertext, ad)
          : chachaPolyDecrypt(k, nonce, ad, ciphertext);
    } catch {
      throw new EnrollError('ERR_NOISE_DECRYPT', 'noise message failed to authenticate');
    }
    this.#n += 1n;
    return out;
  }

  /**
   * EncryptWithAd over a plaintext given in pieces (the bulk paths: a portal link's frames
   * are headers and slices of socket chunks). The result is the same message as
   * `encryptWithAd(ad, concat(parts))`, as pieces: the ciphertext of each part, then the tag.
   */
  encryptWithAdParts(ad: Uint8Array, parts: readonly Uint8Array[]): Uint8Array[] {
    abytes(ad, undefined, 'ad');
    for (const p of parts) abytes(p, undefined, 'plaintext');
    const k = this.#k;
    if (k === undefined) return [...parts];
    const nonce = this.#useNonce();
    const out =
      this.cipher === 'AESGCM'
        ? aesGcmEncryptParts(k, nonce, parts, ad)
        : [chachaPolyEncrypt(k, nonce, ad, joinParts(parts))];
    this.#n += 1n;
    return out;
  }

  /**
   * DecryptWithAd over a ciphertext given in pieces (as the frame decoder found it in the
   * socket's chunks). Same rules as `decryptWithAd`: the plaintext (in pieces) only after the
   * tag verified, n unchanged and the one opaque ERR_NOISE_DECRYPT on a failure.
   */
  decryptWithAdParts(ad: Uint8Array, parts: readonly Uint8Array[]): Uint8Array[] {
    abytes(ad, undefined, 'ad');
    for (const p of parts) abytes(p, undefined, 'ciphertext');
    const k = this.#k;
    if (k === undefined) return [...parts];
    const nonce = this.#useNonce();
    let out: Uint8Array[];
    try {
      out =
        this.cipher === 'AESGCM'
          ? aesGcmDecryptParts(k, nonce, parts, ad)
          : [chachaPolyDecrypt(k, nonce, ad, joinParts(parts))];
    } catch {
      throw new EnrollError('ERR_NOISE_DECRYPT', 'noise message failed to authenticate');
    }
    this.#n += 1n;
    return out;
  }

  /** Zero-fills k; the CipherState is empty afterwards. */
  wipe(): void {
    wipe(this.#k);
    this.#k = undefined;
  }

  toJSON(): { cipher: NoiseCipher; hasKey: boolean; nonce: string } {
    return { cipher: this.cipher, hasKey: this.hasKey(), nonce: this.#n.toString() };
  }

  toString(): string {
    return `CipherState(${this.cipher}, hasKey=${this.hasKey()}, n=${this.#n})`;
  }

  [inspectSymbol](): string {
    return this.toString();
  }

  /**
   * Encodes n into the scratch nonce. §5.1 reserves 2^64-1, so reaching it is a hard stop:
   * a (key, nonce) pair must never repeat, and wrapping to 0 would repeat one.
   */
  #useNonce(): Uint8Array {
    if (this.#n >= NOISE_MAX_NONCE) {
      throw new EnrollError('ERR_NONCE_EXHAUSTED', 'noise nonce reached 2^64-1: the key must not be used again');
    }
    // §12.4 AESGCM: 32 zero bits then big-endian n. §12.3 ChaChaPoly: 32 zero bits then
    // little-endian n.
    this.#nonceView.setBigUint64(4, this.#n, this.cipher === 'ChaChaPoly');
    return this.#nonce;
  }
}

function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  return parts.length === 1 ? parts[0]! : concatAll(parts);
}

/** §12.3 ENCRYPT for ChaChaPoly: AEAD_CHACHA20_POLY1305 (RFC 8439), ciphertext ‖ 16-byte tag. */
function chachaPolyEncrypt(k: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const c = createCipheriv('chacha20-poly1305', k, nonce, { authTagLength: NOISE_TAG_LEN });
  c.setAAD(ad, { plaintextLength: plaintext.length });
  const head = c.update(plaintext);
  const tail = c.final();
  const tag = c.getAuthTag();
  const out = new Uint8Array(head.length + tail.length + NOISE_TAG_LEN);
  out.set(head, 0);
  out.set(tail, head.length);
  out.set(tag, head.length + tail.length);
  return out;
}

/** §12.3 DECRYPT for ChaChaPoly; throws on any failure (the caller makes it opaque). */
function chachaPolyDecrypt(k: Uint8Array, nonce: Uint8Array, ad: Uint8Array, sealed: Uint8Array): Uint8Array {
  if (sealed.length < NOISE_TAG_LEN) throw new Error('shorter than the tag');
  const ctLen = sealed.length - NOISE_TAG_LEN;
  const d = createDecipheriv('chacha20-poly1305', k, nonce, { authTagLength: NOISE_TAG_LEN });
  d.setAuthTag(sealed.subarray(ctLen));
  d.setAAD(ad, { plaintextLength: ctLen });
  const head = d.update(sealed.subarray(0, ctLen));
  const tail = d.final();
  const out = new Uint8Array(head.length + tail.length);
  out.set(head, 0);
  out.set(tail, head.length);
  wipe(head, tail);
  return out;
}
