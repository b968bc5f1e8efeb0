/**
 * Portal stream frames (docs/protocol.md §11.2): the yamux header, as hashicorp/yamux's
 * spec.md defines it and libp2p uses it, so the wire format is one that has held up in
 * production rather than a new one.
 *
 *     u8 version (0) ‖ u8 type ‖ u16 flags ‖ u32 stream id ‖ u32 length      (12 bytes, big-endian)
 *
 * DATA carries `length` payload bytes after the header; WINDOW_UPDATE's `length` is a credit
 * delta, PING's an opaque value, GO_AWAY's a code, and none of them has a body. Pure bytes
 * in, bytes out: this file does no I/O and throws only EnrollError.
 */
import { EnrollError } from '../../errors.js';

export const MUX_VERSION = 0;
export const MUX_HEADER_LEN = 12;

/** yamux spec "Message Type". */
export const FrameType = { DATA: 0, WINDOW_UPDATE: 1, PING: 2, GO_AWAY: 3 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** yamux spec "Flags". */
export const Flag = { SYN: 0x1, ACK: 0x2, FIN: 0x4, RST: 0x8 } as const;
const ALL_FLAGS = 0xf;

/** yamux spec "GoAway": the code carried in GO_AWAY's length field. */
export const GoAwayCode = { NORMAL: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;

/**
 * The largest DATA body: one Noise transport message holds at most 65535 - 16 (tag) bytes of
 * plaintext (Noise rev 34 §3, docs/protocol.md §6.3), less this header.
 */
export const MAX_DATA_LEN = 0xffff - 16 - MUX_HEADER_LEN;

export interface FrameHeader {
  type: FrameType;
  flags: number;
  streamId: number;
  /** DATA: body length; WINDOW_UPDATE: delta; PING: opaque; GO_AWAY: code. */
  length: number;
}

function u32(n: unknown, name: string): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}" must be an integer 0..2^32-1, got ${String(n)}`);
  }
  return n;
}

/** Writes the 12-byte header into `out` at `off`. */
export function writeHeader(out: Uint8Array, off: number, h: FrameHeader): void {
  if (!(h.type in TYPE_NAMES)) throw new EnrollError('ERR_INVALID_ARG', `unknown frame type ${String(h.type)}`);
  if (!Number.isInteger(h.flags) || h.flags < 0 || (h.flags & ~ALL_FLAGS) !== 0) {
    throw new EnrollError('ERR_INVALID_ARG', `flags must be a combination of SYN|ACK|FIN|RST, got ${String(h.flags)}`);
  }
  u32(h.streamId, 'streamId');
  u32(h.length, 'length');
  out[off] = MUX_VERSION;
  out[off + 1] = h.type;
  out[off + 2] = h.flags >>> 8;
  out[off + 3] = h.flags & 0xff;
  out[off + 4] = h.streamId >>> 24;
  out[off + 5] = (h.streamId >>> 16) & 0xff;
  out[off + 6] = (h.streamId >>> 8) & 0xff;
  out[off + 7] = h.streamId & 0xff;
  out[off + 8] = h.length >>> 24;
  out[off + 9] = (h.length >>> 16) & 0xff;
  out[off + 10] = (h.length >>> 8) & 0xff;
  out[off + 11] = h.length & 0xff;
}

const TYPE_NAMES: Record<number, string> = { 0: 'DATA', 1: 'WINDOW_UPDATE', 2: 'PING', 3: 'GO_AWAY' };

/** A header frame with no body (WINDOW_UPDATE, PING, GO_AWAY, or a DATA carrying only flags). */
export function encodeHeader(h: FrameHeader): Buffer {
  const out = Buffer.allocUnsafe(MUX_HEADER_LEN);
  writeHeader(out, 0, h);
  return out;
}

/** One DATA frame: header ‖ body. The body is copied once, into the frame. */
export function encodeData(streamId: number, flags: number, body: Uint8Array, maxDataLen = MAX_DATA_LEN): Buffer {
  if (!(body instanceof Uint8Array)) throw new EnrollError('ERR_INVALID_ARG', '"body" must be a Uint8Array');
  if (body.length > maxDataLen) {
    throw new EnrollError('ERR_FRAME_TOO_LARGE', `DATA body of ${body.length} bytes exceeds the limit of ${maxDataLen} bytes`);
  }
  const out = Buffer.allocUnsafe(MUX_HEADER_LEN + body.length);
  writeHeader(out, 0, { type: FrameType.DATA, flags, streamId, length: body.length });
  out.set(body, MUX_HEADER_LEN);
  return out;
}

/**
 * Reads and checks a header at `off` (at least 12 bytes must be there). Throws
 * ERR_FRAME_MALFORMED for a version other than 0, an unknown type or unknown flag bits, and
 * ERR_FRAME_TOO_LARGE for a DATA length above `maxDataLen`: checked before any body byte is
 * buffered.
 */
export function decodeHeader(buf: Uint8Array, off: number, maxDataLen = MAX_DATA_LEN): FrameHeader {
  if (buf.length - off < MUX_HEADER_LEN) throw new EnrollError('ERR_FRAME_MALFORMED', `mux header needs ${MUX_HEADER_LEN} bytes, got ${buf.length - off}`);
  const version = buf[off]!;
  if (version !== MUX_VERSION) throw new EnrollError('ERR_FRAME_MALFORMED', `mux frame version ${version} is not ${MUX_VERSION}`);
  const type = buf[off + 1]!;
  if (type > FrameType.GO_AWAY) throw new EnrollError('ERR_FRAME_MALFORMED', `unknown mux frame type ${type}`);
  const flags = (buf[off + 2]! << 8) | buf[off + 3]!;
  if ((flags & ~ALL_FLAGS) !== 0) throw new EnrollError('ERR_FRAME_MALFORMED', `unknown mux flag bits 0x${flags.toString(16)}`);
  const streamId = ((buf[off + 4]! << 24) | (buf[off + 5]! << 16) | (buf[off + 6]! << 8) | buf[off + 7]!) >>> 0;
  const length = ((buf[off + 8]! << 24) | (buf[off + 9]! << 16) | (buf[off + 10]! << 8) | buf[off + 11]!) >>> 0;
  if (type === FrameType.DATA && length > maxDataLen) {
    throw new EnrollError('ERR_FRAME_TOO_LARGE', `DATA frame of ${length} bytes exceeds the limit of ${maxDataLen} bytes`);
  }
  return { type: type as FrameType, flags, streamId, length };
}

export function frameTypeName(t: number): string {
  return TYPE_NAMES[t] ?? `type ${t}`;
}
