/**
 * Device-to-device portal streams (docs/protocol.md §11.10): the frames a relayed stream
 * carries, and the end-to-end Noise XX between the two devices that makes the service a
 * relay of ciphertext only. Pure: bytes in, bytes out, keys and time passed in.
 *
 * The path of one relayed stream, inlet device X → service → outlet device Y:
 *
 *   X → S   OPEN "Y/NAME" (§11.6) ‖ E2E(msg 1)
 *   S → Y   RELAY_OPEN (NAME, X's enrollee id, IK_X) ‖ what X sent after its OPEN
 *   Y → S   ANSWER (§11.6) ‖ E2E(msg 2, payload: Y's credential)
 *   S → X   ANSWER ‖ PEER (Y's enrollee id, IK_Y) ‖ what Y sent after its ANSWER
 *   X → Y   E2E(msg 3, payload: X's credential)
 *   Y → X   E2E(transport: ANSWER, the outlet's own verdict after its --allow)
 *   …       E2E(transport: data) both ways; an empty one is the sender's FIN
 *
 * E2E(m) = u16be len (1..65535) ‖ m, m one Noise message (Noise rev 34 §3; §13 suggests this
 * 16-bit length prefix for stream transports). The stream's own FIN (§11.3) is not trusted to
 * end the data: the service could cut a stream at a message boundary. Only the authenticated
 * empty transport message is a FIN, as TLS's close_notify is; a stream that ends without one
 * is a truncation and is reset.
 */
import { EnrollError } from '../../errors.js';
import { abytes, concat, equalBytes, toHex, utf8 } from '../../crypto/bytes.js';
import { decodeCredential, verifyCredential, type AnyCredential } from '../credential.js';
import { CREDENTIAL_V2_MAX_LEN } from '../credential-v2.js';
import { HandshakeState, NOISE_MAX_MESSAGE_LEN, type NoiseKeyPair, type TransportState } from '../noise/index.js';
import { decodeAnswer, encodeAnswer, OpenStatus } from './open.js';

// ---------------------------------------------------------------- RELAY_OPEN and PEER

/** RELAY_OPEN's version byte: 2, so that an outlet device can never take it for an OPEN (version 1). */
export const RELAY_OPEN_VERSION = 2;
export const ENROLLEE_ID_LEN = 32;
export const IDENTITY_KEY_LEN = 32;
/** PEER: enrollee_id 32 ‖ IK 32. */
export const PEER_LEN = ENROLLEE_ID_LEN + IDENTITY_KEY_LEN;

/** An enrolled identity as the service's directory knows it. */
export interface PeerInfo {
  enrolleeId: Uint8Array;
  ik: Uint8Array;
}

/** RELAY_OPEN: what the service tells an outlet device about a stream it relays to it. */
export interface RelayOpen extends PeerInfo {
  /** The device outlet's name. */
  name: string;
}

const fatal = new TextDecoder('utf-8', { fatal: true });

/** u8 version (2) ‖ u8 name_len (1..255) ‖ name UTF-8 ‖ enrollee_id 32 ‖ IK 32 (of the opener). */
export function encodeRelayOpen(r: RelayOpen): Buffer {
  const name = Buffer.from(r.name, 'utf8');
  if (name.length < 1 || name.length > 255) throw new EnrollError('ERR_INVALID_ARG', `"name" must be 1..255 UTF-8 bytes, got ${name.length}`);
  return Buffer.concat([
    Buffer.from([RELAY_OPEN_VERSION, name.length]),
    name,
    abytes(r.enrolleeId, ENROLLEE_ID_LEN, 'enrolleeId'),
    abytes(r.ik, IDENTITY_KEY_LEN, 'ik'),
  ]);
}

/** Parses RELAY_OPEN from the start of `buf`: undefined while incomplete; ERR_FRAME_MALFORMED. */
export function decodeRelayOpen(buf: Uint8Array): (RelayOpen & { used: number }) | undefined {
  if (buf.length >= 1 && buf[0] !== RELAY_OPEN_VERSION) throw new EnrollError('ERR_FRAME_MALFORMED', `portal relay open version ${buf[0]} is not ${RELAY_OPEN_VERSION}`);
  if (buf.length < 2) return undefined;
  const len = buf[1]!;
  if (len === 0) throw new EnrollError('ERR_FRAME_MALFORMED', 'portal relay open names no outlet');
  const used = 2 + len + PEER_LEN;
  if (buf.length < used) return undefined;
  let name: string;
  try {
    name = fatal.decode(buf.subarray(2, 2 + len));
  } catch {
    throw new EnrollError('ERR_FRAME_MALFORMED', 'portal relay open: the outlet name is not UTF-8');
  }
  const o = 2 + len;
  // Copies, not views: a view would keep the whole received message alive for the stream's life.
  return { name, enrolleeId: Uint8Array.prototype.slice.call(buf, o, o + ENROLLEE_ID_LEN), ik: Uint8Array.prototype.slice.call(buf, o + ENROLLEE_ID_LEN, used), used };
}

/** PEER, after an OK ANSWER on a relayed stream: the outlet device as the directory knows it. */
export function encodePeer(p: PeerInfo): Buffer {
  return Buffer.concat([abytes(p.enrolleeId, ENROLLEE_ID_LEN, 'enrolleeId'), abytes(p.ik, IDENTITY_KEY_LEN, 'ik')]);
}

export function decodePeer(buf: Uint8Array): (PeerInfo & { used: number }) | undefined {
  if (buf.length < PEER_LEN) return undefined;
  return { enrolleeId: Uint8Array.prototype.slice.call(buf, 0, ENROLLEE_ID_LEN), ik: Uint8Array.prototype.slice.call(buf, ENROLLEE_ID_LEN, PEER_LEN), used: PEER_LEN };
}

// ---------------------------------------------------------------- E2E framing

export const E2E_HEADER_LEN = 2;
/** The largest plaintext of one E2E transport message: 65535 − 16 (AES-GCM tag). */
export const E2E_MAX_PLAINTEXT = NOISE_MAX_MESSAGE_LEN - 16;

/** u16be len ‖ message. The length is 1..65535: an empty Noise message does not exist here. */
export function e2eHeader(len: number): Buffer {
  if (!Number.isInteger(len) || len < 1 || len > NOISE_MAX_MESSAGE_LEN) throw new EnrollError('ERR_INVALID_ARG', `E2E message length must be 1..${NOISE_MAX_MESSAGE_LEN}, got ${len}`);
  const h = Buffer.allocUnsafe(E2E_HEADER_LEN);
  h.writeUInt16BE(len, 0);
  return h;
}

export function encodeE2e(message: Uint8Array): Buffer {
  return Buffer.concat([e2eHeader(message.length), message]);
}

/**
 * Splits a byte stream into E2E messages. It holds at most one message (65537 bytes) plus what
 * the caller pushed: the caller pushes what the stream delivered, whose credit bounds it.
 * A length of 0 is ERR_FRAME_MALFORMED (checked on the 2 header bytes, before the body).
 */
export class E2eDeframer {
  #chunks: Buffer[] = [];
  #len = 0;
  #need = -1;

  /** Bytes pushed and not yet returned as messages. */
  get buffered(): number {
    return this.#len;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.#len += chunk.length;
  }

  /**
   * The next whole message as the slices of the pushed chunks it lies in (no copy), or
   * undefined. Same checks as `next`; for a reader that decrypts the slices at once.
   */
  nextParts(): Buffer[] | undefined {
    if (this.#need < 0) {
      if (this.#len < E2E_HEADER_LEN) return undefined;
      const h = this.#take(E2E_HEADER_LEN);
      this.#need = (h[0]! << 8) | h[1]!;
      if (this.#need === 0) throw new EnrollError('ERR_FRAME_MALFORMED', 'E2E message of length 0');
    }
    if (this.#len < this.#need) return undefined;
    const parts: Buffer[] = [];
    let left = this.#need;
    while (left > 0) {
      const c = this.#chunks[0]!;
      if (c.length <= left) {
        parts.push(c);
        this.#chunks.shift();
        left -= c.length;
      } else {
        parts.push(c.subarray(0, left));
        this.#chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.#len -= this.#need;
    this.#need = -1;
    return parts;
  }

  /** The next whole message (a slice when it lies in one chunk), or undefined. */
  next(): Buffer | undefined {
    if (this.#need < 0) {
      if (this.#len < E2E_HEADER_LEN) return undefined;
      const h = this.#take(E2E_HEADER_LEN);
      this.#need = (h[0]! << 8) | h[1]!;
      if (this.#need === 0) throw new EnrollError('ERR_FRAME_MALFORMED', 'E2E message of length 0');
    }
    if (this.#len < this.#need) return undefined;
    const m = this.#take(this.#need);
    this.#need = -1;
    return m;
  }

  #take(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) {
      this.#len -= n;
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(n - filled, c.length);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    this.#len -= n;
    return out;
  }
}

// ---------------------------------------------------------------- the handshake

/** Noise §6 prologue label; the outlet's name follows, so both ends agree on which outlet this is. */
export const E2E_PROLOGUE_LABEL: Uint8Array = utf8('ockam-enroll/v1/portal-e2e');

/**
 * The prologue: label ‖ u8 len ‖ outlet name. The service cannot redirect X's stream for
 * "web" to Y's outlet "ssh": Y's handshake would run under another prologue and fail.
 */
export function e2ePrologue(outletName: string): Uint8Array {
  const n = utf8(outletName);
  if (n.length < 1 || n.length > 255) throw new EnrollError('ERR_INVALID_ARG', `outlet name must be 1..255 UTF-8 bytes, got ${n.length}`);
  return concat(E2E_PROLOGUE_LABEL, Uint8Array.of(n.length), n);
}

export interface E2eTrust {
  /** IK_A, the service key both devices enrolled with: the credential's only accepted issuer. */
  issuer: Uint8Array;
  /** The peer as the service's directory named it (RELAY_OPEN or PEER). */
  expected: PeerInfo;
  /** Unix seconds, for the credential's validity. */
  now: number;
}

/**
 * Checks the peer of an E2E handshake (§11.10.2), cheap checks first:
 * 1. the static key the handshake authenticated is the IK the directory named → else ERR_PROTOCOL;
 * 2. the payload is a credential (length, structure) → else ERR_CREDENTIAL_MALFORMED;
 * 3. it is for that key and that enrollee id → else ERR_CREDENTIAL_MALFORMED;
 * 4. IK_A issued it, its signature verifies, it is in its validity → verifyCredential's codes.
 * So a relay that lies about the key fails at 1, and one that lies about who holds the key
 * fails at 3 or 4: the devices trust the service's signature, not its relaying.
 */
export function checkE2ePeer(remoteStaticKey: Uint8Array, payload: Uint8Array, trust: E2eTrust): AnyCredential {
  abytes(remoteStaticKey, IDENTITY_KEY_LEN, 'remoteStaticKey');
  if (!equalBytes(remoteStaticKey, trust.expected.ik)) {
    throw new EnrollError('ERR_PROTOCOL', `the peer device's key ${toHex(remoteStaticKey)} is not the key the service's directory holds for it (${toHex(trust.expected.ik)})`);
  }
  if (payload.length === 0 || payload.length > CREDENTIAL_V2_MAX_LEN) {
    throw new EnrollError('ERR_CREDENTIAL_MALFORMED', `the peer device sent a credential of ${payload.length} bytes`);
  }
  const c = decodeCredential(payload);
  if (!equalBytes(c.ikB, remoteStaticKey) || !equalBytes(c.enrolleeId, trust.expected.enrolleeId)) {
    throw new EnrollError('ERR_CREDENTIAL_MALFORMED', 'the peer device\'s credential is for another identity than the one in the handshake');
  }
  return verifyCredential(c, { now: trust.now, issuer: trust.issuer });
}

export interface E2eHandshakeOptions {
  initiator: boolean;
  /** This device's IK_B pair. */
  staticKeyPair: NoiseKeyPair;
  /** This device's credential (encodeCredential bytes), sent in msg 2 (responder) or msg 3 (initiator). */
  credential: Uint8Array;
  outletName: string;
}

/** What a finished handshake yields: the transport and the checked peer credential. */
export interface E2eEstablished {
  transport: TransportState;
  peer: AnyCredential;
  handshakeHash: Uint8Array;
}

/**
 * Drives Noise XX (handshakestate.ts) for one relayed stream, in E2E frames. The initiator
 * (inlet) sends msg 1 at once (`start`), before it knows the outlet device's key: XX's msg 1
 * is only an ephemeral key, so it can ride with the OPEN and cost no round trip. Each device
 * checks the other (`checkE2ePeer`) the moment the peer's static key is authenticated: the
 * inlet after msg 2, before msg 3 reveals its own credential; the outlet after msg 3.
 */
export class E2eHandshake {
  readonly #hs: HandshakeState;
  readonly #opts: E2eHandshakeOptions;
  #trust: E2eTrust | undefined;
  #step = 0;

  constructor(opts: E2eHandshakeOptions) {
    if (opts.credential.length === 0 || opts.credential.length > CREDENTIAL_V2_MAX_LEN) {
      throw new EnrollError('ERR_INVALID_ARG', `"credential" must be 1..${CREDENTIAL_V2_MAX_LEN} bytes`);
    }
    this.#opts = opts;
    this.#hs = new HandshakeState({ initiator: opts.initiator, staticKeyPair: opts.staticKeyPair, prologue: e2ePrologue(opts.outletName) });
  }

  /** Initiator: msg 1, framed. */
  start(): Buffer {
    if (!this.#opts.initiator || this.#step !== 0) throw new EnrollError('ERR_NOISE_STATE', 'E2E handshake: start() is the initiator\'s first step');
    this.#step = 1;
    return encodeE2e(this.#hs.writeMessage());
  }

  /** The peer as the directory named it; needed before the message that reveals the peer's key. */
  setTrust(trust: E2eTrust): void {
    this.#trust = trust;
  }

  /**
   * Feeds the peer's next handshake message (unframed). Returns what to send (framed) and, once
   * the handshake is over, the established session. Throws on any failure; the stream must then
   * be reset.
   */
  receive(message: Uint8Array): { send?: Buffer; established?: E2eEstablished } {
    const initiator = this.#opts.initiator;
    if (initiator && this.#step === 1) {
      const trust = this.#need();
      const payload = this.#hs.readMessage(message);
      const peer = checkE2ePeer(this.#hs.remoteStaticKey!, payload, trust);
      const send = encodeE2e(this.#hs.writeMessage(this.#opts.credential));
      this.#step = 2;
      const handshakeHash = this.#hs.getHandshakeHash();
      return { send, established: { transport: this.#hs.finish(), peer, handshakeHash } };
    }
    if (!initiator && this.#step === 0) {
      const payload = this.#hs.readMessage(message);
      if (payload.length !== 0) throw new EnrollError('ERR_PROTOCOL', 'E2E handshake: msg 1 carries a payload');
      this.#step = 1;
      return { send: encodeE2e(this.#hs.writeMessage(this.#opts.credential)) };
    }
    if (!initiator && this.#step === 1) {
      const trust = this.#need();
      const payload = this.#hs.readMessage(message);
      const peer = checkE2ePeer(this.#hs.remoteStaticKey!, payload, trust);
      this.#step = 2;
      const handshakeHash = this.#hs.getHandshakeHash();
      return { established: { transport: this.#hs.finish(), peer, handshakeHash } };
    }
    throw new EnrollError('ERR_NOISE_STATE', 'E2E handshake: no message expected now');
  }

  #need(): E2eTrust {
    if (this.#trust === undefined) throw new EnrollError('ERR_INTERNAL', 'E2E handshake: the peer\'s directory entry is not set');
    return this.#trust;
  }
}

// ---------------------------------------------------------------- transport

/**
 * The E2E transport messages of one stream (§11.10.3): data in pieces of at most
 * E2E_MAX_PLAINTEXT, an empty message for FIN, and the outlet's ANSWER as its first message.
 */
export class E2eTransport {
  readonly #t: TransportState;
  #finSent = false;
  #finReceived = false;

  constructor(transport: TransportState) {
    this.#t = transport;
  }

  /** Framed messages for `data` (never empty: an empty message is FIN). Header and body are separate buffers. */
  seal(data: Uint8Array): Buffer[] {
    if (this.#finSent) throw new EnrollError('ERR_PROTOCOL', 'E2E: data after FIN');
    const out: Buffer[] = [];
    for (let off = 0; off < data.length; off += E2E_MAX_PLAINTEXT) {
      const piece = data.subarray(off, Math.min(data.length, off + E2E_MAX_PLAINTEXT));
      // Ciphertext and tag as separate pieces: nothing is joined (TransportState.encryptParts).
      const c = this.#t.encryptParts([piece]);
      out.push(e2eHeader(piece.length + 16));
      for (const x of c) out.push(Buffer.isBuffer(x) ? x : Buffer.from(x.buffer, x.byteOffset, x.length));
    }
    return out;
  }

  /** The authenticated FIN: an empty transport message. */
  sealFin(): Buffer {
    if (this.#finSent) throw new EnrollError('ERR_PROTOCOL', 'E2E: second FIN');
    this.#finSent = true;
    return encodeE2e(this.#t.encrypt(new Uint8Array(0)));
  }

  /** Opens one message: its plaintext, or 'fin'. A failed decrypt is ERR_NOISE_DECRYPT and poisons. */
  open(message: Uint8Array): Buffer | 'fin' {
    if (this.#finReceived) throw new EnrollError('ERR_PROTOCOL', 'E2E: a message after the peer\'s FIN');
    const p = this.#t.decrypt(message);
    if (p.length === 0) {
      this.#finReceived = true;
      return 'fin';
    }
    return Buffer.from(p.buffer, p.byteOffset, p.length);
  }

  /** As `open`, for a message in pieces (E2eDeframer.nextParts); the plaintext in pieces. */
  openParts(message: readonly Uint8Array[]): Buffer[] | 'fin' {
    if (this.#finReceived) throw new EnrollError('ERR_PROTOCOL', 'E2E: a message after the peer\'s FIN');
    const p = this.#t.decryptParts(message);
    let n = 0;
    for (const x of p) n += x.length;
    if (n === 0) {
      this.#finReceived = true;
      return 'fin';
    }
    return p.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x.buffer, x.byteOffset, x.length)));
  }

  get finReceived(): boolean {
    return this.#finReceived;
  }

  get finSent(): boolean {
    return this.#finSent;
  }
}

/** The outlet device's verdict, as its first E2E transport message: ANSWER (§11.6) inside. */
export function sealVerdict(t: E2eTransport, status: OpenStatus, reason = ''): Buffer[] {
  return t.seal(encodeAnswer(status, reason));
}

/** Reads the verdict from the first E2E transport message; it must be exactly one ANSWER. */
export function openVerdict(plain: Buffer | 'fin'): { status: OpenStatus; reason: string } {
  if (plain === 'fin') throw new EnrollError('ERR_PROTOCOL', 'E2E: FIN before the outlet\'s answer');
  const a = decodeAnswer(plain);
  if (a === undefined || a.used !== plain.length) throw new EnrollError('ERR_FRAME_MALFORMED', 'E2E: the outlet\'s answer is not one ANSWER');
  return { status: a.status, reason: a.reason };
}

export { OpenStatus };
