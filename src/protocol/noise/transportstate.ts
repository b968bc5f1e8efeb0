/**
 * The transport phase after a Noise handshake (Noise Protocol Framework rev 34 §5.3, last
 * step: the two CipherStates returned by Split()). Mirrors snow's TransportState.
 *
 * Poisoning: ockam-enroll carries Noise over an ordered, reliable stream (length-prefixed
 * frames over TCP or stdio), so a transport message that fails to decrypt can only mean
 * tampering, truncation or a desynchronised peer; there is no loss or reordering to
 * tolerate (§11.4 is not used). The first failed decrypt therefore poisons the whole
 * TransportState: its keys are wiped and every later encrypt or decrypt throws
 * ERR_NOISE_POISONED. The caller must close the channel.
 */
import { EnrollError } from '../../errors.js';
import { abytes, toHex } from '../../crypto/bytes.js';
import { NOISE_MAX_MESSAGE_LEN, NOISE_TAG_LEN, type CipherState } from './cipherstate.js';

const EMPTY = new Uint8Array(0);
const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

/** What HandshakeState.finish() hands over. The CipherStates are owned by the TransportState. */
export interface TransportStateInit {
  readonly initiator: boolean;
  /** Split()'s c1 for the initiator, c2 for the responder. */
  readonly send: CipherState;
  /** The other one. */
  readonly receive: CipherState;
  readonly handshakeHash: Uint8Array;
  readonly remoteStaticKey: Uint8Array;
}

export class TransportState {
  readonly initiator: boolean;
  readonly #send: CipherState;
  readonly #receive: CipherState;
  readonly #handshakeHash: Uint8Array;
  readonly #remoteStaticKey: Uint8Array;
  #poisoned = false;

  /** Made by HandshakeState.finish(); not meant to be called directly. */
  constructor(init: TransportStateInit) {
    this.initiator = init.initiator;
    this.#send = init.send;
    this.#receive = init.receive;
    this.#handshakeHash = abytes(init.handshakeHash, 32, 'handshakeHash').slice();
    this.#remoteStaticKey = abytes(init.remoteStaticKey, 32, 'remoteStaticKey').slice();
  }

  /** §11.2: h after the handshake, unique to this session; a copy, for channel binding. */
  get handshakeHash(): Uint8Array {
    return this.#handshakeHash.slice();
  }

  /** The peer's static public key, authenticated by the handshake (a copy). */
  get remoteStaticKey(): Uint8Array {
    return this.#remoteStaticKey.slice();
  }

  /**
   * Encrypts one transport message with the sending CipherState (§5.1 EncryptWithAd with
   * empty ad). A payload too long for §3's 65535-byte limit is refused before the nonce is
   * used, so the state stays usable.
   */
  encrypt(payload: Uint8Array): Uint8Array {
    this.#assertUsable();
    abytes(payload, undefined, 'payload');
    if (payload.length + NOISE_TAG_LEN > NOISE_MAX_MESSAGE_LEN) {
      throw new EnrollError(
        'ERR_NOISE_TOO_LONG',
        `noise transport message would be ${payload.length + NOISE_TAG_LEN} bytes, over ${NOISE_MAX_MESSAGE_LEN}`,
      );
    }
    return this.#send.encryptWithAd(EMPTY, payload);
  }

  /**
   * Decrypts one transport message with the receiving CipherState. Any failure (too long,
   * shorter than a tag, authentication, nonce exhausted) poisons this TransportState.
   */
  decrypt(message: Uint8Array): Uint8Array {
    this.#assertUsable();
    try {
      abytes(message, undefined, 'message');
      if (message.length > NOISE_MAX_MESSAGE_LEN) {
        throw new EnrollError(
          'ERR_NOISE_TOO_LONG',
          `noise transport message is ${message.length} bytes, over ${NOISE_MAX_MESSAGE_LEN}`,
        );
      }
      if (message.length < NOISE_TAG_LEN) {
        throw new EnrollError(
          'ERR_NOISE_SHORT',
          `noise transport message is ${message.length} bytes, shorter than its tag`,
        );
      }
      return this.#receive.decryptWithAd(EMPTY, message);
    } catch (e) {
      this.#poison();
      throw e;
    }
  }

  /**
   * `encrypt` of the concatenation of `parts`, as pieces (the ciphertext of each part, then
   * the tag): the same message, for senders that would otherwise join the pieces first.
   */
  encryptParts(parts: readonly Uint8Array[]): Uint8Array[] {
    this.#assertUsable();
    let n = 0;
    for (const p of parts) n += abytes(p, undefined, 'payload').length;
    if (n + NOISE_TAG_LEN > NOISE_MAX_MESSAGE_LEN) {
      throw new EnrollError(
        'ERR_NOISE_TOO_LONG',
        `noise transport message would be ${n + NOISE_TAG_LEN} bytes, over ${NOISE_MAX_MESSAGE_LEN}`,
      );
    }
    return this.#send.encryptWithAdParts(EMPTY, parts);
  }

  /** `decrypt` of one message given in pieces; the plaintext in pieces. Same checks, same poisoning. */
  decryptParts(parts: readonly Uint8Array[]): Uint8Array[] {
    this.#assertUsable();
    try {
      let n = 0;
      for (const p of parts) n += abytes(p, undefined, 'message').length;
      if (n > NOISE_MAX_MESSAGE_LEN) {
        throw new EnrollError('ERR_NOISE_TOO_LONG', `noise transport message is ${n} bytes, over ${NOISE_MAX_MESSAGE_LEN}`);
      }
      if (n < NOISE_TAG_LEN) {
        throw new EnrollError('ERR_NOISE_SHORT', `noise transport message is ${n} bytes, shorter than its tag`);
      }
      return this.#receive.decryptWithAdParts(EMPTY, parts);
    } catch (e) {
      this.#poison();
      throw e;
    }
  }

  /** True once a decrypt has failed; the channel must be closed. */
  get isPoisoned(): boolean {
    return this.#poisoned;
  }

  /**
   * TEST ONLY. Moves the counters (§5.1 SetNonce) so tests can reach the reserved nonce
   * 2^64-1 without 2^64 messages. Never call this outside tests: reusing a nonce under the
   * same key breaks AES-GCM completely.
   */
  setNoncesForTestingOnly(nonces: { send?: bigint; receive?: bigint }): void {
    this.#assertUsable();
    if (nonces.send !== undefined) this.#send.setNonce(nonces.send);
    if (nonces.receive !== undefined) this.#receive.setNonce(nonces.receive);
  }

  toJSON(): { initiator: boolean; remoteStaticKey: string; poisoned: boolean } {
    return { initiator: this.initiator, remoteStaticKey: toHex(this.#remoteStaticKey), poisoned: this.#poisoned };
  }

  toString(): string {
    return `TransportState(${this.initiator ? 'initiator' : 'responder'}, remote=${toHex(this.#remoteStaticKey)}${
      this.#poisoned ? ', poisoned' : ''
    })`;
  }

  [inspectSymbol](): string {
    return this.toString();
  }

  #assertUsable(): void {
    if (this.#poisoned) {
      throw new EnrollError('ERR_NOISE_POISONED', 'noise transport failed before and must not be used again');
    }
  }

  #poison(): void {
    this.#poisoned = true;
    this.#send.wipe();
    this.#receive.wipe();
  }
}
