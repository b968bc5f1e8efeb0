/**
 * The Noise secure channel over a framed connection: Noise_XX_25519_AESGCM_SHA256 with
 * empty handshake payloads, one Noise message per frame.
 *
 *   msg 1  initiator → responder   -> e
 *   msg 2  responder → initiator   <- e, ee, s, es
 *   msg 3  initiator → responder   -> s, se
 *
 * XX reveals the responder's static key in msg 2 and the initiator's in msg 3, so each side
 * checks the other at the first moment it can (`verifyRemote`): the initiator before it
 * sends msg 3 (which would reveal its own identity to an impostor), the responder after
 * msg 3. Any failure destroys the connection: there is no error message on the wire, and a
 * half-done handshake is never reused.
 */
import { EnrollError } from '../errors.js';
import { abytes } from '../crypto/bytes.js';
import {
  HandshakeState,
  NOISE_MAX_MESSAGE_LEN,
  type NoiseKeyPair,
  type TransportState,
} from '../protocol/noise/index.js';
import { checkTimeoutMs, type FramedConnection } from './connection.js';
import { joinFrame } from './frame.js';

/** AES-GCM tag length: each transport message is the payload plus this. */
const TAG_LEN = 16;
/** Largest payload of one `send` (Noise rev 34 §3: messages are at most 65535 bytes). */
export const MAX_CHANNEL_PAYLOAD = NOISE_MAX_MESSAGE_LEN - TAG_LEN;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface ChannelOptions {
  /** Our static X25519 key pair. */
  staticKeyPair: NoiseKeyPair;
  /**
   * Noise §6 prologue, for domain separation: both sides must use the same bytes (e.g. the
   * ASCII of "ockam-enroll/v1/enroller-service"), or the handshake fails.
   */
  prologue: Uint8Array;
  /** Time allowed for the whole handshake, in ms; 0 or Infinity disables it. Default 10 000. */
  handshakeTimeoutMs?: number;
  /**
   * Called as soon as the peer's static key is known, before we send anything more. Throw
   * (an EnrollError) to abort: the initiator checks a pinned key here before sending msg 3;
   * the responder checks its allow-list after msg 3.
   */
  verifyRemote?: (remoteStaticKey: Uint8Array) => void | Promise<void>;
}

export interface SecureChannel {
  /** The peer's static public key, authenticated by the handshake. */
  readonly remoteStaticKey: Uint8Array;
  /** Noise §11.2 handshake hash: equal on both sides, unique to this session (channel binding). */
  readonly handshakeHash: Uint8Array;
  readonly connection: FramedConnection;
  /** Encrypts and sends one message of at most {@link MAX_CHANNEL_PAYLOAD} bytes. */
  send(payload: Uint8Array): Promise<void>;
  /**
   * As `send` for the message that is the concatenation of `parts`, which are neither joined
   * nor copied: each is encrypted into its own piece and the frame goes out as one writev.
   * (Optional in the interface, so wrappers and test doubles need not provide it; the
   * channel made here always does.)
   */
  sendParts?(parts: readonly Uint8Array[]): Promise<void>;
  /**
   * Receives and decrypts one message. A message that fails to authenticate rejects
   * (ERR_NOISE_DECRYPT) and destroys the connection: the stream cannot be trusted after it.
   */
  receive(timeoutMs?: number): Promise<Uint8Array>;
  /**
   * As `receive`, with the plaintext in pieces (decrypted straight from the slices of the
   * received chunks, with no copy before or after). Only authenticated bytes are returned.
   */
  receiveParts?(timeoutMs?: number): Promise<Uint8Array[]>;
  /** Ends our side gracefully once sent messages are flushed. */
  close(): Promise<void>;
}

const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

class Channel implements SecureChannel {
  readonly remoteStaticKey: Uint8Array;
  readonly handshakeHash: Uint8Array;
  readonly connection: FramedConnection;
  readonly #transport: TransportState;

  constructor(connection: FramedConnection, transport: TransportState) {
    this.connection = connection;
    this.#transport = transport;
    this.remoteStaticKey = transport.remoteStaticKey;
    this.handshakeHash = transport.handshakeHash;
  }

  send(payload: Uint8Array): Promise<void> {
    try {
      abytes(payload, undefined, 'payload');
    } catch (e) {
      return Promise.reject(e);
    }
    return this.sendParts([payload]);
  }

  sendParts(parts: readonly Uint8Array[]): Promise<void> {
    let message: Uint8Array[];
    try {
      let n = 0;
      for (const p of parts) n += abytes(p, undefined, 'payload').length;
      if (n > MAX_CHANNEL_PAYLOAD) {
        throw new EnrollError('ERR_NOISE_TOO_LONG', `channel payload of ${n} bytes exceeds ${MAX_CHANNEL_PAYLOAD}`);
      }
      // Checked before encrypting: a message that the connection then refused would have
      // used up a nonce and desynchronised the two sides.
      if (n + TAG_LEN > this.connection.maxFrameLen) {
        throw new EnrollError('ERR_FRAME_TOO_LARGE', `channel payload of ${n} bytes exceeds the connection's frame limit`);
      }
      message = this.#transport.encryptParts(parts);
    } catch (e) {
      return Promise.reject(e);
    }
    // writeFrameParts hands the bytes to the stream synchronously, so wire order is nonce
    // order even when sends are not awaited one by one.
    return this.connection.writeFrameParts(message);
  }

  async receive(timeoutMs?: number): Promise<Uint8Array> {
    const parts = await this.connection.readFrameParts(timeoutMs);
    try {
      return this.#transport.decrypt(parts.length === 1 ? parts[0]! : joinFrame(parts));
    } catch (e) {
      this.connection.destroy();
      throw e;
    }
  }

  async receiveParts(timeoutMs?: number): Promise<Uint8Array[]> {
    const parts = await this.connection.readFrameParts(timeoutMs);
    try {
      return this.#transport.decryptParts(parts);
    } catch (e) {
      this.connection.destroy();
      throw e;
    }
  }

  close(): Promise<void> {
    return this.connection.end();
  }

  toString(): string {
    return `SecureChannel(${this.connection.remoteAddress ?? 'stream'}, ${this.#transport.initiator ? 'initiator' : 'responder'})`;
  }

  [inspectSymbol](): string {
    return this.toString();
  }
}

function checkOptions(opts: ChannelOptions): number | undefined {
  if (opts === null || typeof opts !== 'object') {
    throw new EnrollError('ERR_INVALID_ARG', '"options" expected an object');
  }
  abytes(opts.prologue, undefined, 'prologue');
  if (opts.verifyRemote !== undefined && typeof opts.verifyRemote !== 'function') {
    throw new EnrollError('ERR_INVALID_ARG', '"verifyRemote" expected a function');
  }
  return checkTimeoutMs(opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS, 'handshakeTimeoutMs');
}

function asEnrollError(e: unknown): EnrollError {
  if (e instanceof EnrollError) return e;
  // Only a verifyRemote callback can throw something else; that is a caller bug.
  return new EnrollError('ERR_INTERNAL', 'secure channel handshake failed: unexpected error', { cause: e });
}

/**
 * Runs `steps` under the handshake deadline. On any failure or timeout the connection is
 * destroyed, which also makes whatever step is still pending reject (and that rejection is
 * handled by Promise.race, so it is never unhandled).
 */
async function runHandshake(
  conn: FramedConnection,
  timeoutMs: number | undefined,
  steps: (remaining: () => number) => Promise<TransportState>,
): Promise<SecureChannel> {
  const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
  // Reads get the time left, so that none of them outlives the handshake's own timer.
  const remaining = (): number => (deadline === Infinity ? 0 : Math.max(1, deadline - Date.now()));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    if (timeoutMs === undefined) return;
    timer = setTimeout(() => {
      reject(
        new EnrollError('ERR_TIMEOUT', `secure channel handshake did not finish within ${timeoutMs} ms`, {
          hint: 'is the peer an ockam-enroll endpoint of the matching role?',
        }),
      );
    }, timeoutMs);
  });
  try {
    const transport = await Promise.race([steps(remaining), timeout]);
    return new Channel(conn, transport);
  } catch (e) {
    conn.destroy();
    throw asEnrollError(e);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs the initiator side of Noise XX over `conn` (e.g. an enroller connecting to the service). */
export async function initiateChannel(conn: FramedConnection, opts: ChannelOptions): Promise<SecureChannel> {
  let timeoutMs: number | undefined;
  let hs: HandshakeState;
  try {
    timeoutMs = checkOptions(opts);
    hs = new HandshakeState({ initiator: true, staticKeyPair: opts.staticKeyPair, prologue: opts.prologue });
  } catch (e) {
    conn.destroy();
    throw e;
  }
  return runHandshake(conn, timeoutMs, async (remaining) => {
    await conn.writeFrame(hs.writeMessage());
    hs.readMessage(await conn.readFrame(remaining()));
    const rs = hs.remoteStaticKey;
    if (rs === undefined) throw new EnrollError('ERR_INTERNAL', 'noise XX msg 2 left the remote static key unknown');
    // Before msg 3: an impostor service must not even learn our static key.
    await opts.verifyRemote?.(rs.slice());
    await conn.writeFrame(hs.writeMessage());
    return hs.finish();
  });
}

/**
 * Runs the responder side of Noise XX over `conn`. Pass `firstFrame` when the caller has
 * already read msg 1 (e.g. to dispatch on the first frame).
 */
export async function acceptChannel(
  conn: FramedConnection,
  opts: ChannelOptions,
  firstFrame?: Uint8Array,
): Promise<SecureChannel> {
  let timeoutMs: number | undefined;
  let hs: HandshakeState;
  try {
    timeoutMs = checkOptions(opts);
    if (firstFrame !== undefined) abytes(firstFrame, undefined, 'firstFrame');
    hs = new HandshakeState({ initiator: false, staticKeyPair: opts.staticKeyPair, prologue: opts.prologue });
  } catch (e) {
    conn.destroy();
    throw e;
  }
  return runHandshake(conn, timeoutMs, async (remaining) => {
    hs.readMessage(firstFrame ?? (await conn.readFrame(remaining())));
    await conn.writeFrame(hs.writeMessage());
    hs.readMessage(await conn.readFrame(remaining()));
    const rs = hs.remoteStaticKey;
    if (rs === undefined) throw new EnrollError('ERR_INTERNAL', 'noise XX msg 3 left the remote static key unknown');
    await opts.verifyRemote?.(rs.slice());
    return hs.finish();
  });
}
