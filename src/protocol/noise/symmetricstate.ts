/**
 * The Noise SymmetricState (Noise Protocol Framework rev 34 §5.2): a CipherState plus the
 * chaining key `ck` and the handshake hash `h`, with HASH = SHA-256 (§12.5).
 */
import { createHmac } from 'node:crypto';
import { EnrollError } from '../../errors.js';
import { abytes, utf8, wipe } from '../../crypto/bytes.js';
import { sha256 } from '../../crypto/hash.js';
import { CipherState, type NoiseCipher } from './cipherstate.js';

/** §12.5: SHA-256 has HASHLEN = 32 (so §5.2's truncation to 32 bytes never applies). */
export const HASHLEN = 32;

const EMPTY = new Uint8Array(0);
const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

function hmacSha256(key: Uint8Array, ...data: Uint8Array[]): Uint8Array {
  const m = createHmac('sha256', key);
  for (const d of data) m.update(d);
  const out = m.digest();
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/**
 * §4.3 HKDF(chaining_key, input_key_material, num_outputs). This is Noise's own HKDF: the
 * chaining key is the HMAC key of the extract step and the expand step has no `info`, so it
 * is not RFC 5869 HKDF-Expand with an info label:
 *   temp_key = HMAC(ck, ikm); output1 = HMAC(temp_key, 0x01);
 *   output2 = HMAC(temp_key, output1 ‖ 0x02); output3 = HMAC(temp_key, output2 ‖ 0x03).
 */
export function noiseHkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 2 | 3): Uint8Array[] {
  abytes(chainingKey, HASHLEN, 'chainingKey');
  abytes(inputKeyMaterial, undefined, 'inputKeyMaterial');
  if (numOutputs !== 2 && numOutputs !== 3) {
    throw new EnrollError('ERR_INVALID_ARG', `"numOutputs" must be 2 or 3, got ${String(numOutputs)}`);
  }
  const tempKey = hmacSha256(chainingKey, inputKeyMaterial);
  const outputs: Uint8Array[] = [hmacSha256(tempKey, Uint8Array.of(0x01))];
  for (let i = 2; i <= numOutputs; i++) outputs.push(hmacSha256(tempKey, outputs[i - 2]!, Uint8Array.of(i)));
  wipe(tempKey);
  return outputs;
}

export class SymmetricState {
  readonly #cs: CipherState;
  #ck: Uint8Array;
  #h: Uint8Array;
  /** Set by Split() or wipe(): ck is gone, so nothing may be mixed or derived any more. */
  #done = false;

  /**
   * §5.2 InitializeSymmetric(protocol_name): a name of at most HASHLEN bytes is used as h
   * directly, zero-padded; a longer one is hashed. ck = h. The CipherState starts empty.
   */
  constructor(protocolName: string | Uint8Array, cipher: NoiseCipher) {
    const name =
      typeof protocolName === 'string' ? utf8(protocolName) : abytes(protocolName, undefined, 'protocolName');
    if (name.length <= HASHLEN) {
      this.#h = new Uint8Array(HASHLEN);
      this.#h.set(name, 0);
    } else {
      this.#h = sha256(name);
    }
    this.#ck = this.#h.slice();
    this.#cs = new CipherState(cipher);
  }

  /**
   * §5.2 MixKey(input_key_material): ck, temp_k = HKDF(ck, ikm, 2); InitializeKey(temp_k).
   * The old ck and temp_k are wiped: a chaining key that leaked later would expose every
   * key derived after it.
   */
  mixKey(inputKeyMaterial: Uint8Array): void {
    this.#assertNotSplit();
    const [ck, tempK] = noiseHkdf(this.#ck, inputKeyMaterial, 2) as [Uint8Array, Uint8Array];
    wipe(this.#ck);
    this.#ck = ck;
    this.#cs.initializeKey(tempK);
    wipe(tempK);
  }

  /** §5.2 MixHash(data): h = HASH(h ‖ data). */
  mixHash(data: Uint8Array): void {
    this.#assertNotSplit();
    this.#h = sha256(this.#h, abytes(data, undefined, 'data'));
  }

  /**
   * §5.2 MixKeyAndHash(input_key_material), used by the `psk` token (§9):
   * ck, temp_h, temp_k = HKDF(ck, ikm, 3); MixHash(temp_h); InitializeKey(temp_k).
   * XX has no psk token; this is here so the SymmetricState is the whole of §5.2.
   */
  mixKeyAndHash(inputKeyMaterial: Uint8Array): void {
    this.#assertNotSplit();
    const [ck, tempH, tempK] = noiseHkdf(this.#ck, inputKeyMaterial, 3) as [Uint8Array, Uint8Array, Uint8Array];
    wipe(this.#ck);
    this.#ck = ck;
    this.mixHash(tempH);
    this.#cs.initializeKey(tempK);
    wipe(tempH, tempK);
  }

  /** §5.2 GetHandshakeHash(): a copy of h (§11.2: used for channel binding). */
  getHandshakeHash(): Uint8Array {
    return this.#h.slice();
  }

  /** §5.1 HasKey() of the inner CipherState: decides whether `s` and payloads carry a tag. */
  hasKey(): boolean {
    return this.#cs.hasKey();
  }

  /** §5.2 EncryptAndHash(plaintext): ciphertext = EncryptWithAd(h, plaintext); MixHash(ciphertext). */
  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    this.#assertNotSplit();
    const ciphertext = this.#cs.encryptWithAd(this.#h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  /**
   * §5.2 DecryptAndHash(ciphertext): plaintext = DecryptWithAd(h, ciphertext);
   * MixHash(ciphertext). h absorbs the ciphertext, not the plaintext, so both sides hash the
   * same bytes. When k is empty the returned bytes are a copy, never a view of the input.
   */
  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    this.#assertNotSplit();
    const plaintext = this.#cs.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext === ciphertext ? ciphertext.slice() : plaintext;
  }

  /**
   * §5.2 Split(): temp_k1, temp_k2 = HKDF(ck, zerolen, 2); returns (c1, c2). The initiator
   * sends with c1 and the responder with c2 (§5.3). ck and the handshake CipherState are
   * wiped afterwards: nothing may be derived from them again. h stays for GetHandshakeHash.
   */
  split(): [CipherState, CipherState] {
    this.#assertNotSplit();
    const [k1, k2] = noiseHkdf(this.#ck, EMPTY, 2) as [Uint8Array, Uint8Array];
    const c1 = new CipherState(this.#cs.cipher);
    const c2 = new CipherState(this.#cs.cipher);
    c1.initializeKey(k1);
    c2.initializeKey(k2);
    wipe(k1, k2, this.#ck);
    this.#cs.wipe();
    this.#done = true;
    return [c1, c2];
  }

  /** Zero-fills ck and k, e.g. when a handshake fails. h is public transcript data. */
  wipe(): void {
    wipe(this.#ck);
    this.#cs.wipe();
    this.#done = true;
  }

  toJSON(): { cipher: NoiseCipher; hasKey: boolean } {
    return { cipher: this.#cs.cipher, hasKey: this.#cs.hasKey() };
  }

  toString(): string {
    return `SymmetricState(${this.#cs.cipher}, hasKey=${this.#cs.hasKey()})`;
  }

  [inspectSymbol](): string {
    return this.toString();
  }

  #assertNotSplit(): void {
    if (this.#done) throw new EnrollError('ERR_NOISE_STATE', 'noise symmetric state was already split or wiped');
  }
}
