/**
 * The replica link (docs/protocol.md §11.11): how one `service start` replica relays a
 * device-to-device stream to the replica that holds the outlet device's session. Pure codecs.
 *
 * A replica link is a TCP connection to the other replica's `--peer-listen` address, running
 * Noise XX (Noise_XX_25519_AESGCM_SHA256, prologue "ockam-enroll/v1/replica-replica") with
 * IK_A as the static key on BOTH sides: replicas of one service share IK_A (`service init
 * --from`), so each side refuses a peer whose static key is not IK_A. Then:
 *
 *   0x3b REPLICA_HELLO  both ways, first   version u8 (1) ‖ u8 id_len (1..64) ‖ replica id (ASCII [0-9a-z-])
 *
 * after which the channel carries mux frames (§11.2, the dialer opens odd streams), and each
 * stream the dialer (replica B, where the inlet's session is) opens starts with
 *
 *   FORWARD  B → A   u8 version (3) ‖ device enrollee_id 32 ‖ RELAY_OPEN (§11.10)
 *
 * A answers as an outlet device does (ANSWER, §11.6), relaying to the device's own session;
 * everything after that is the devices' end-to-end Noise, which neither replica can read.
 * Version 3 keeps FORWARD apart from OPEN (1) and RELAY_OPEN (2).
 */
import { EnrollError } from '../../errors.js';
import { decodeRelayOpen, ENROLLEE_ID_LEN, type RelayOpen } from './e2e.js';

export const PROLOGUE_REPLICA_REPLICA = new TextEncoder().encode('ockam-enroll/v1/replica-replica');
export const MSG_REPLICA_HELLO = 0x3b;
export const REPLICA_HELLO_VERSION = 1;
export const FORWARD_VERSION = 3;
export const MAX_REPLICA_ID_LEN = 64;
const ID_RE = /^[0-9a-z][0-9a-z-]*$/;

/** Why `id` is not a valid replica id, or undefined. */
export function replicaIdProblem(id: string): string | undefined {
  if (typeof id !== 'string' || id.length < 1 || id.length > MAX_REPLICA_ID_LEN) return `must be 1..${MAX_REPLICA_ID_LEN} characters`;
  if (!ID_RE.test(id)) return 'must hold only lower-case letters, digits and "-"';
  return undefined;
}

export function encodeReplicaHello(id: string): Uint8Array {
  const p = replicaIdProblem(id);
  if (p !== undefined) throw new EnrollError('ERR_INVALID_ARG', `replica id ${JSON.stringify(String(id).slice(0, 80))} ${p}`);
  return Uint8Array.from([MSG_REPLICA_HELLO, REPLICA_HELLO_VERSION, id.length, ...Buffer.from(id, 'ascii')]);
}

export function decodeReplicaHello(msg: Uint8Array): string {
  const bad = (m: string): never => {
    throw new EnrollError('ERR_FRAME_MALFORMED', `replica hello: ${m}`);
  };
  if (msg.length < 4 || msg[0] !== MSG_REPLICA_HELLO) bad('not a REPLICA_HELLO message');
  if (msg[1] !== REPLICA_HELLO_VERSION) bad(`version ${msg[1]} is not ${REPLICA_HELLO_VERSION}`);
  const len = msg[2]!;
  if (len < 1 || len > MAX_REPLICA_ID_LEN) bad(`id length ${len} is outside 1..${MAX_REPLICA_ID_LEN}`);
  if (msg.length !== 3 + len) bad(`length ${msg.length} is not ${3 + len}`);
  const id = Buffer.from(msg.subarray(3)).toString('latin1');
  if (replicaIdProblem(id) !== undefined) bad('the id holds characters other than [0-9a-z-]');
  return id;
}

export interface Forward extends RelayOpen {
  /** The outlet device the stream is for. */
  deviceId: Uint8Array;
}

export function encodeForward(deviceId: Uint8Array, relayOpen: Uint8Array): Buffer {
  if (!(deviceId instanceof Uint8Array) || deviceId.length !== ENROLLEE_ID_LEN) throw new EnrollError('ERR_INVALID_ARG', `"deviceId" must be ${ENROLLEE_ID_LEN} bytes`);
  return Buffer.concat([Buffer.from([FORWARD_VERSION]), deviceId, relayOpen]);
}

/** Parses FORWARD from the start of `buf`: undefined while incomplete; ERR_FRAME_MALFORMED. */
export function decodeForward(buf: Uint8Array): (Forward & { used: number }) | undefined {
  if (buf.length >= 1 && buf[0] !== FORWARD_VERSION) throw new EnrollError('ERR_FRAME_MALFORMED', `replica forward version ${buf[0]} is not ${FORWARD_VERSION}`);
  if (buf.length < 1 + ENROLLEE_ID_LEN) return undefined;
  const r = decodeRelayOpen(buf.subarray(1 + ENROLLEE_ID_LEN));
  if (r === undefined) return undefined;
  return { deviceId: Uint8Array.prototype.slice.call(buf, 1, 1 + ENROLLEE_ID_LEN), name: r.name, enrolleeId: r.enrolleeId, ik: r.ik, used: 1 + ENROLLEE_ID_LEN + r.used };
}

/** The longest FORWARD: version, id, and the longest RELAY_OPEN (2 + 255 + 64). */
export const MAX_FORWARD_LEN = 1 + ENROLLEE_ID_LEN + 2 + 255 + 64;
