/**
 * The portal open exchange (docs/protocol.md §11.6): the first bytes of every stream, before
 * the TCP bytes. The mux stays plain yamux; naming the target rides inside the stream, as
 * libp2p's multistream-select does over yamux.
 *
 *   OPEN   opener → acceptor   u8 version (1) ‖ u8 target_len (1..255) ‖ target UTF-8
 *   ANSWER acceptor → opener   u8 status ‖ u8 reason_len ‖ reason UTF-8 (0..255)
 *
 * Status 0 is OK and the stream carries the connection's bytes from then on; any other
 * status is a refusal, after which the acceptor closes the stream.
 */
import { EnrollError } from '../../errors.js';

export const OPEN_VERSION = 1;

export const OpenStatus = {
  OK: 0,
  UNKNOWN_OUTLET: 1,
  TARGET_UNREACHABLE: 2,
  NOT_ALLOWED: 3,
  REVOKED: 4,
  DEVICE_OFFLINE: 5,
  INTERNAL: 6,
  /** DEVICE/NAME names no enrolled device (§11.10). */
  UNKNOWN_DEVICE: 7,
} as const;
export type OpenStatus = (typeof OpenStatus)[keyof typeof OpenStatus];

export const OPEN_STATUS_NAMES: Record<number, string> = {
  0: 'ok',
  1: 'unknown outlet',
  2: 'target refused or unreachable',
  3: 'not allowed',
  4: 'revoked',
  5: 'device offline',
  6: 'internal error',
  7: 'unknown device',
};

function utf8Field(s: string, name: string, min: number): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length < min || b.length > 255) throw new EnrollError('ERR_INVALID_ARG', `"${name}" must be ${min}..255 UTF-8 bytes, got ${b.length}`);
  return b;
}

export function encodeOpen(target: string): Buffer {
  const t = utf8Field(target, 'target', 1);
  return Buffer.concat([Buffer.from([OPEN_VERSION, t.length]), t]);
}

export function encodeAnswer(status: OpenStatus, reason = ''): Buffer {
  if (!(status in OPEN_STATUS_NAMES)) throw new EnrollError('ERR_INVALID_ARG', `unknown open status ${String(status)}`);
  const r = utf8Field(reason.length > 200 ? reason.slice(0, 200) : reason, 'reason', 0);
  return Buffer.concat([Buffer.from([status, r.length]), r]);
}

const fatal = new TextDecoder('utf-8', { fatal: true });

function text(b: Uint8Array, what: string): string {
  try {
    return fatal.decode(b);
  } catch {
    throw new EnrollError('ERR_FRAME_MALFORMED', `portal ${what} is not UTF-8`);
  }
}

/**
 * Parses an OPEN from the start of `buf`. Returns undefined while too few bytes are there,
 * else the target and how many bytes it took. Throws ERR_FRAME_MALFORMED.
 */
export function decodeOpen(buf: Uint8Array): { target: string; used: number } | undefined {
  if (buf.length >= 1 && buf[0] !== OPEN_VERSION) throw new EnrollError('ERR_FRAME_MALFORMED', `portal open version ${buf[0]} is not ${OPEN_VERSION}`);
  if (buf.length < 2) return undefined;
  const len = buf[1]!;
  if (len === 0) throw new EnrollError('ERR_FRAME_MALFORMED', 'portal open names no target');
  if (buf.length < 2 + len) return undefined;
  return { target: text(buf.subarray(2, 2 + len), 'target'), used: 2 + len };
}

export function decodeAnswer(buf: Uint8Array): { status: OpenStatus; reason: string; used: number } | undefined {
  if (buf.length >= 1 && !(buf[0]! in OPEN_STATUS_NAMES)) throw new EnrollError('ERR_FRAME_MALFORMED', `unknown portal open status ${buf[0]}`);
  if (buf.length < 2) return undefined;
  const len = buf[1]!;
  if (buf.length < 2 + len) return undefined;
  return { status: buf[0] as OpenStatus, reason: text(buf.subarray(2, 2 + len), 'reason'), used: 2 + len };
}
