/**
 * Application messages: `type u8 ‖ body`, carried in frames (transport/frame.ts) or inside
 * Noise transport messages. docs/protocol.md §7 lists every layout.
 */
import { EnrollError, isErrorCode, type ErrorCode } from '../../errors.js';
import { ByteReader } from '../codec/reader.js';
import { ByteWriter } from '../codec/writer.js';

export const MSG_ERROR = 0x7f;

/** A message's type byte, checked against what the current step allows. */
export function messageType(msg: Uint8Array, expected: readonly number[], step: string): number {
  if (msg.length === 0) throw new EnrollError('ERR_FRAME_MALFORMED', `empty message during ${step}`);
  const t = msg[0]!;
  if (t === MSG_ERROR) throw decodeError(msg);
  if (!expected.includes(t)) {
    throw new EnrollError('ERR_PROTOCOL', `unexpected message type 0x${t.toString(16).padStart(2, '0')} during ${step}`);
  }
  return t;
}

export function reader(msg: Uint8Array, what: string): ByteReader {
  const r = new ByteReader(msg, 'ERR_FRAME_MALFORMED', what);
  r.u8('type');
  return r;
}

export function writer(type: number): ByteWriter {
  return new ByteWriter().u8(type, 'type');
}

/**
 * ERROR: `0x7f ‖ code_len u8 ‖ code ASCII ‖ msg_len u16 ‖ message UTF-8 ‖ hint_len u16 ‖ hint UTF-8`.
 * Only codes the sender chooses to reveal travel: crypto failures are sent as ERR_REJECTED.
 */
export function encodeError(err: EnrollError): Uint8Array {
  const code = err.code;
  const message = truncateUtf8(err.message, 1000);
  const hint = truncateUtf8(err.hint ?? '', 1000);
  return writer(MSG_ERROR)
    .u8(code.length, 'code_len')
    .utf8(code, 'code')
    .u16be(Buffer.byteLength(message), 'msg_len')
    .utf8(message, 'message')
    .u16be(Buffer.byteLength(hint), 'hint_len')
    .utf8(hint, 'hint')
    .finish();
}

/** At most `max` UTF-8 bytes of `s`, cut at a code point boundary. */
function truncateUtf8(s: string, max: number): string {
  let out = '';
  let n = 0;
  for (const ch of s) {
    n += Buffer.byteLength(ch);
    if (n > max) break;
    out += ch;
  }
  return out;
}

/**
 * What every client says when the service answers UNAVAILABLE (an ERROR with ERR_UNAVAILABLE,
 * the enrollment status UNAVAILABLE, HTTP 503): its store is unreachable, nothing was
 * recorded, and the same request may simply be sent again. The words are the client's own,
 * not the peer's, so every path says the same.
 */
export const UNAVAILABLE_MESSAGE = 'the service is temporarily unavailable; retry';
export function unavailableError(): EnrollError {
  return new EnrollError('ERR_UNAVAILABLE', UNAVAILABLE_MESSAGE, {
    hint: 'nothing was recorded: the service cannot reach its database right now; run the same command again in a moment',
  });
}

/** Turns a peer's ERROR message into an EnrollError with the peer's code (unknown codes become ERR_REJECTED). */
export function decodeError(msg: Uint8Array): EnrollError {
  const r = reader(msg, 'error message');
  const code = r.utf8(r.u8('code_len'), 'code');
  const message = r.utf8(r.u16be('msg_len'), 'message');
  const hint = r.utf8(r.u16be('hint_len'), 'hint');
  r.end();
  if (code === 'ERR_UNAVAILABLE') return unavailableError();
  const c: ErrorCode = isErrorCode(code) ? code : 'ERR_REJECTED';
  return new EnrollError(c, `the peer refused: ${message}`, hint ? { hint } : {});
}
