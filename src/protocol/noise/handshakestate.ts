/**
 * The Noise HandshakeState (Noise Protocol Framework rev 34 §5.3) for XX over 25519 (§12.1).
 *
 * State machine (as in snow): each side must wait its turn; lengths are checked before any
 * slicing; finishing consumes the handshake and returns a TransportState.
 *
 * Poisoning. A failed readMessage (of any kind: authentication, a low-order key, a short or
 * long message, reading out of turn) leaves h and ck half-updated, so the handshake cannot
 * continue; the state is wiped and every later call throws ERR_NOISE_POISONED. The same
 * holds for a writeMessage that fails after it started changing the state (e.g. ERR_DH_ZERO
 * from a low-order ephemeral the peer sent earlier). A writeMessage refused before any change
 * (not our turn, payload too long) leaves the state as it was.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { EnrollError } from '../../errors.js';
import { abytes, toHex, wipe } from '../../crypto/bytes.js';
import { systemRandom, type RandomSource } from '../../crypto/random.js';
import { importX25519Private, importX25519Public, x25519, X25519_KEY_LEN } from '../../crypto/x25519.js';
import {
  assertNoiseCipher,
  NOISE_MAX_MESSAGE_LEN,
  NOISE_TAG_LEN,
  type CipherState,
  type NoiseCipher,
} from './cipherstate.js';
import { protocolName, XX, type DhToken, type HandshakePattern, type MessagePattern } from './patterns.js';
import { SymmetricState } from './symmetricstate.js';
import { TransportState } from './transportstate.js';

/** §12.1: DHLEN for 25519. */
const DHLEN = X25519_KEY_LEN;
const EMPTY = new Uint8Array(0);
const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

export interface NoiseKeyPair {
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
}

export interface HandshakeOptions {
  /** True for the party that sends the first message. */
  initiator: boolean;
  /** The local static key pair `s`. Its private key is imported once and not kept as bytes. */
  staticKeyPair: NoiseKeyPair;
  /** §6 prologue, which both sides must agree on. Default: empty. */
  prologue?: Uint8Array;
  /** Source of the 32 random bytes of the ephemeral private key. Default: systemRandom. */
  random?: RandomSource;
  /**
   * TEST VECTORS ONLY: use this pair as `e` instead of generating one. Reusing an ephemeral
   * key across handshakes destroys forward secrecy and can leak the static key's use.
   */
  fixedEphemeralKeyForTestingOnly?: NoiseKeyPair;
  /** §12.3 / §12.4 cipher functions. Default: 'AESGCM'. ChaChaPoly exists for vector replay. */
  cipher?: NoiseCipher;
}

interface LocalKey {
  readonly publicKey: Uint8Array;
  readonly privateKey: KeyObject;
}

type Status = 'handshake' | 'split' | 'consumed' | 'poisoned';

export class HandshakeState {
  readonly #initiator: boolean;
  readonly #pattern: HandshakePattern = XX;
  readonly #symmetric: SymmetricState;
  readonly #random: RandomSource;
  readonly #fixedEphemeral: NoiseKeyPair | undefined;
  readonly #s: LocalKey;
  #e: LocalKey | undefined;
  #re: { bytes: Uint8Array; key: KeyObject } | undefined;
  #rs: { bytes: Uint8Array; key: KeyObject } | undefined;
  /** Index of the next message pattern (§5.3 message_patterns, consumed front to back). */
  #next = 0;
  #status: Status = 'handshake';
  #cipherStates: [CipherState, CipherState] | undefined;

  /** §5.3 Initialize(handshake_pattern, initiator, prologue, s, e, rs, re) for XX. */
  constructor(opts: HandshakeOptions) {
    if (typeof opts !== 'object' || opts === null) {
      throw new EnrollError('ERR_INVALID_ARG', '"opts" expected an object');
    }
    if (typeof opts.initiator !== 'boolean') {
      throw new EnrollError('ERR_INVALID_ARG', `"initiator" expected boolean, got ${typeof opts.initiator}`);
    }
    const cipher = assertNoiseCipher(opts.cipher ?? 'AESGCM');
    const prologue = abytes(opts.prologue ?? EMPTY, undefined, 'prologue');
    if (typeof opts.staticKeyPair !== 'object' || opts.staticKeyPair === null) {
      throw new EnrollError('ERR_INVALID_ARG', '"staticKeyPair" expected a key pair');
    }
    if (opts.random !== undefined && typeof opts.random !== 'function') {
      throw new EnrollError('ERR_INVALID_ARG', '"random" expected a function');
    }
    const fixed = opts.fixedEphemeralKeyForTestingOnly;
    if (fixed !== undefined) {
      abytes(fixed.publicKey, DHLEN, 'fixedEphemeralKeyForTestingOnly.publicKey');
      abytes(fixed.privateKey, DHLEN, 'fixedEphemeralKeyForTestingOnly.privateKey');
    }

    this.#initiator = opts.initiator;
    this.#random = opts.random ?? systemRandom;
    this.#fixedEphemeral = fixed;
    // The private key is imported once per handshake (the DH calls reuse the KeyObject);
    // the public key is copied so later changes by the caller cannot alter the transcript.
    this.#s = {
      publicKey: abytes(opts.staticKeyPair.publicKey, DHLEN, 'staticKeyPair.publicKey').slice(),
      privateKey: importX25519Private(opts.staticKeyPair.privateKey, 'staticKeyPair.privateKey'),
    };
    this.#symmetric = new SymmetricState(protocolName(this.#pattern, cipher), cipher);
    this.#symmetric.mixHash(prologue);
    // XX has no pre-messages, so there are no pre-message keys to MixHash (§7.5).
  }

  /** True once the last message pattern has been written or read (Split() has run). */
  get isFinished(): boolean {
    return this.#status === 'split' || this.#status === 'consumed';
  }

  /**
   * The peer's static public key, once its `s` token has been read (a copy). Undefined
   * before that, and after a failure: an `s` from a handshake that failed is unauthenticated.
   */
  get remoteStaticKey(): Uint8Array | undefined {
    if (this.#status === 'poisoned') return undefined;
    return this.#rs?.bytes.slice();
  }

  /** §5.2 GetHandshakeHash(): h so far (a copy); it is final only once isFinished. */
  getHandshakeHash(): Uint8Array {
    this.#assertUsable(true);
    return this.#symmetric.getHandshakeHash();
  }

  /**
   * §5.3 WriteMessage(payload, message_buffer): returns the message. Throws ERR_NOISE_TURN
   * when the next message is the peer's, and ERR_NOISE_TOO_LONG when the message would
   * exceed §3's 65535 bytes; both leave the state unchanged.
   */
  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    this.#assertUsable(false);
    abytes(payload, undefined, 'payload');
    if (!this.#isOurTurnToWrite()) {
      throw new EnrollError('ERR_NOISE_TURN', 'noise handshake: it is the peer\'s turn to send');
    }
    const pattern = this.#pattern.messagePatterns[this.#next]!;
    const overhead = this.#messageOverhead(pattern);
    const length = overhead + payload.length;
    if (length > NOISE_MAX_MESSAGE_LEN) {
      throw new EnrollError(
        'ERR_NOISE_TOO_LONG',
        `noise handshake message would be ${length} bytes, over ${NOISE_MAX_MESSAGE_LEN}`,
      );
    }
    try {
      const out = new Uint8Array(length);
      let off = 0;
      for (const token of pattern) {
        switch (token) {
          case 'e': {
            this.#e = this.#generateEphemeral();
            out.set(this.#e.publicKey, off);
            off += DHLEN;
            this.#symmetric.mixHash(this.#e.publicKey);
            break;
          }
          case 's': {
            const c = this.#symmetric.encryptAndHash(this.#s.publicKey);
            out.set(c, off);
            off += c.length;
            break;
          }
          default:
            this.#mixKeyDh(token);
        }
      }
      const c = this.#symmetric.encryptAndHash(payload);
      out.set(c, off);
      off += c.length;
      if (off !== length) throw new EnrollError('ERR_INTERNAL', 'noise handshake message length mismatch');
      this.#advance();
      return out;
    } catch (e) {
      this.#poison();
      throw e;
    }
  }

  /**
   * §5.3 ReadMessage(message, payload_buffer): returns the payload. The whole length is
   * checked against the pattern before any token is sliced off. Any failure poisons.
   *
   * §7.7: the payload of XX message 1 is neither encrypted nor authenticated, and the payload
   * of message 2 is not yet bound to the initiator; treat them accordingly.
   */
  readMessage(message: Uint8Array): Uint8Array {
    this.#assertUsable(false);
    try {
      abytes(message, undefined, 'message');
      if (this.#isOurTurnToWrite()) {
        throw new EnrollError('ERR_NOISE_TURN', 'noise handshake: it is our turn to send, not to read');
      }
      if (message.length > NOISE_MAX_MESSAGE_LEN) {
        throw new EnrollError(
          'ERR_NOISE_TOO_LONG',
          `noise handshake message is ${message.length} bytes, over ${NOISE_MAX_MESSAGE_LEN}`,
        );
      }
      const pattern = this.#pattern.messagePatterns[this.#next]!;
      const minimum = this.#messageOverhead(pattern);
      if (message.length < minimum) {
        throw new EnrollError(
          'ERR_NOISE_SHORT',
          `noise handshake message ${this.#next + 1} is ${message.length} bytes, needs at least ${minimum}`,
        );
      }
      let off = 0;
      for (const token of pattern) {
        switch (token) {
          case 'e': {
            const re = message.slice(off, off + DHLEN);
            off += DHLEN;
            this.#symmetric.mixHash(re);
            this.#re = { bytes: re, key: importX25519Public(re, 're') };
            break;
          }
          case 's': {
            // §5.3: DHLEN + 16 bytes when a key is set (encrypted s), DHLEN otherwise.
            const len = DHLEN + (this.#symmetric.hasKey() ? NOISE_TAG_LEN : 0);
            const rs = this.#symmetric.decryptAndHash(message.subarray(off, off + len));
            off += len;
            this.#rs = { bytes: rs, key: importX25519Public(rs, 'rs') };
            break;
          }
          default:
            this.#mixKeyDh(token);
        }
      }
      const payload = this.#symmetric.decryptAndHash(message.subarray(off));
      this.#advance();
      return payload;
    } catch (e) {
      this.#poison();
      throw e;
    }
  }

  /**
   * After the final message: consumes this HandshakeState (later calls throw
   * ERR_NOISE_STATE) and returns the TransportState. The initiator sends with Split()'s
   * first CipherState and the responder with the second (§5.3).
   */
  finish(): TransportState {
    this.#assertUsable(true);
    const cs = this.#cipherStates;
    const rs = this.#rs;
    if (this.#status !== 'split' || cs === undefined) {
      throw new EnrollError('ERR_NOISE_STATE', 'noise handshake is not finished');
    }
    if (rs === undefined) throw new EnrollError('ERR_INTERNAL', 'noise handshake finished without rs');
    const [c1, c2] = cs;
    const transport = new TransportState({
      initiator: this.#initiator,
      send: this.#initiator ? c1 : c2,
      receive: this.#initiator ? c2 : c1,
      handshakeHash: this.#symmetric.getHandshakeHash(),
      remoteStaticKey: rs.bytes,
    });
    this.#cipherStates = undefined;
    this.#status = 'consumed';
    this.#dropKeys();
    return transport;
  }

  toJSON(): { initiator: boolean; pattern: string; nextMessage: number; status: Status } {
    return { initiator: this.#initiator, pattern: this.#pattern.name, nextMessage: this.#next, status: this.#status };
  }

  toString(): string {
    const role = this.#initiator ? 'initiator' : 'responder';
    const rs = this.remoteStaticKey;
    const remote = rs ? `, remote=${toHex(rs)}` : '';
    return `HandshakeState(${this.#pattern.name}, ${role}, next=${this.#next}, ${this.#status}${remote})`;
  }

  [inspectSymbol](): string {
    return this.toString();
  }

  /** Message i is sent by the initiator when i is even (§7: patterns alternate, initiator first). */
  #isOurTurnToWrite(): boolean {
    return (this.#next % 2 === 0) === this.#initiator;
  }

  /**
   * Bytes a message pattern adds around the payload: DHLEN per `e`, DHLEN (+16 if a key is
   * set by then) per `s`, and a 16-byte tag on the payload if a key is set by then. HasKey()
   * becomes true at the first DH token (§5.2 MixKey), so this is known before processing.
   */
  #messageOverhead(pattern: MessagePattern): number {
    let hasKey = this.#symmetric.hasKey();
    let n = 0;
    for (const token of pattern) {
      if (token === 'e') n += DHLEN;
      else if (token === 's') n += DHLEN + (hasKey ? NOISE_TAG_LEN : 0);
      else hasKey = true;
    }
    return n + (hasKey ? NOISE_TAG_LEN : 0);
  }

  /**
   * §5.3 "ee", "es", "se", "ss": MixKey(DH(x, ry)). The first letter is the initiator's key
   * and the second the responder's, so the responder swaps them. The DH output is wiped once
   * mixed; x25519 throws ERR_DH_ZERO on an all-zero output (low-order peer key, §12.1).
   */
  #mixKeyDh(token: DhToken): void {
    const initiatorKey = token[0] as 'e' | 's';
    const responderKey = token[1] as 'e' | 's';
    const local = this.#initiator ? initiatorKey : responderKey;
    const remote = this.#initiator ? responderKey : initiatorKey;
    const priv = local === 'e' ? this.#e : this.#s;
    const pub = remote === 'e' ? this.#re : this.#rs;
    if (priv === undefined || pub === undefined) {
      throw new EnrollError('ERR_INTERNAL', `noise token ${token} needs a key the pattern has not provided`);
    }
    const dh = x25519(priv.privateKey, pub.key);
    try {
      this.#symmetric.mixKey(dh);
    } finally {
      wipe(dh);
    }
  }

  /**
   * §5.3 "e": GENERATE_KEYPAIR() (§4.1). The raw private bytes from `random` are imported
   * once and wiped; only the KeyObject is kept, for the DH tokens that follow.
   */
  #generateEphemeral(): LocalKey {
    const fixed = this.#fixedEphemeral;
    if (fixed !== undefined) {
      return {
        publicKey: fixed.publicKey.slice(),
        privateKey: importX25519Private(fixed.privateKey, 'fixedEphemeralKeyForTestingOnly.privateKey'),
      };
    }
    const raw = abytes(this.#random(DHLEN), DHLEN, 'random');
    try {
      const privateKey = importX25519Private(raw, 'ephemeral');
      const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
      const publicKey = new Uint8Array(Buffer.from(jwk.x as string, 'base64url'));
      return { publicKey: abytes(publicKey, DHLEN, 'ephemeral public key'), privateKey };
    } finally {
      wipe(raw);
    }
  }

  /** Moves to the next message pattern; after the last one, §5.3 returns Split()'s pair. */
  #advance(): void {
    this.#next += 1;
    if (this.#next === this.#pattern.messagePatterns.length) {
      this.#cipherStates = this.#symmetric.split();
      this.#status = 'split';
      // The ephemeral keys are done with; dropping them keeps forward secrecy within reach
      // of the garbage collector rather than the object's lifetime.
      this.#e = undefined;
      this.#re = undefined;
    }
  }

  /** `allowSplit`: getHandshakeHash and finish work after the last message; write/read do not. */
  #assertUsable(allowSplit: boolean): void {
    if (this.#status === 'poisoned') {
      throw new EnrollError('ERR_NOISE_POISONED', 'noise handshake failed before and must not be used again');
    }
    if (this.#status === 'consumed') {
      throw new EnrollError('ERR_NOISE_STATE', 'noise handshake was already finished');
    }
    if (this.#status === 'split' && !allowSplit) {
      throw new EnrollError('ERR_NOISE_STATE', 'noise handshake is complete: call finish()');
    }
  }

  #poison(): void {
    this.#status = 'poisoned';
    this.#symmetric.wipe();
    if (this.#cipherStates) for (const c of this.#cipherStates) c.wipe();
    this.#cipherStates = undefined;
    this.#dropKeys();
  }

  #dropKeys(): void {
    this.#e = undefined;
    this.#re = undefined;
  }
}
