/**
 * DEVICE_OUTLETS (docs/protocol.md §11.10.1): the session message with which an enrolled device
 * switches its session (KIND_SESSION, Noise XX IK_B ↔ IK_A) into a portal link, as PORTAL
 * does (§11.8), and registers the names of the outlets it serves. The service answers
 * PORTAL_READY (or ERROR); from then on the channel carries mux frames, and the service opens
 * streams on it (even ids) for the inlets of other devices.
 *
 *   0x3a DEVICE_OUTLETS   device → service   version u8 (1) ‖ count u8 (1..16) ‖ count × (u8 len (1..64) ‖ name UTF-8)
 *
 * Names follow the service outlets' rule (letters, digits, `.`, `_`, `-`; 1..64 bytes), and
 * must be distinct. Pure codec; ERR_FRAME_MALFORMED for anything else.
 */
import { EnrollError } from '../../errors.js';

export const MSG_DEVICE_OUTLETS = 0x3a;
export const DEVICE_OUTLETS_VERSION = 1;
/** Outlets one device registers on one session, at most. */
export const MAX_DEVICE_OUTLETS = 16;
export const MAX_OUTLET_NAME_LEN = 64;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Why `name` is not a valid outlet name, or undefined. */
export function outletNameProblem(name: string): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'is empty';
  if (Buffer.byteLength(name, 'utf8') > MAX_OUTLET_NAME_LEN) return `is longer than ${MAX_OUTLET_NAME_LEN} bytes`;
  if (!NAME_RE.test(name)) return 'must start with a letter or digit and hold only letters, digits, ".", "_" and "-"';
  return undefined;
}

export function encodeDeviceOutlets(names: readonly string[]): Uint8Array {
  if (!Array.isArray(names) || names.length < 1 || names.length > MAX_DEVICE_OUTLETS) {
    throw new EnrollError('ERR_INVALID_ARG', `a device registers 1..${MAX_DEVICE_OUTLETS} outlets, got ${Array.isArray(names) ? names.length : 'none'}`);
  }
  const parts: Buffer[] = [Buffer.from([MSG_DEVICE_OUTLETS, DEVICE_OUTLETS_VERSION, names.length])];
  const seen = new Set<string>();
  for (const n of names) {
    const p = outletNameProblem(n);
    if (p !== undefined) throw new EnrollError('ERR_INVALID_ARG', `outlet name ${JSON.stringify(n)} ${p}`);
    if (seen.has(n)) throw new EnrollError('ERR_INVALID_ARG', `outlet name ${JSON.stringify(n)} is given twice`);
    seen.add(n);
    const b = Buffer.from(n, 'utf8');
    parts.push(Buffer.from([b.length]), b);
  }
  return Buffer.concat(parts);
}

export function decodeDeviceOutlets(msg: Uint8Array): string[] {
  const bad = (m: string): never => {
    throw new EnrollError('ERR_FRAME_MALFORMED', `device outlets: ${m}`);
  };
  if (msg.length < 3 || msg[0] !== MSG_DEVICE_OUTLETS) bad('not a DEVICE_OUTLETS message');
  if (msg[1] !== DEVICE_OUTLETS_VERSION) bad(`version ${msg[1]} is not ${DEVICE_OUTLETS_VERSION}`);
  const count = msg[2]!;
  if (count < 1 || count > MAX_DEVICE_OUTLETS) bad(`count ${count} is outside 1..${MAX_DEVICE_OUTLETS}`);
  const names: string[] = [];
  let off = 3;
  const fatal = new TextDecoder('utf-8', { fatal: true });
  for (let i = 0; i < count; i++) {
    if (off >= msg.length) bad(`truncated at name ${i + 1}`);
    const len = msg[off]!;
    if (len < 1 || len > MAX_OUTLET_NAME_LEN) bad(`name ${i + 1} has length ${len}`);
    if (off + 1 + len > msg.length) bad(`truncated in name ${i + 1}`);
    let name = '';
    try {
      name = fatal.decode(msg.subarray(off + 1, off + 1 + len));
    } catch {
      bad(`name ${i + 1} is not UTF-8`);
    }
    const p = outletNameProblem(name);
    if (p !== undefined) bad(`name ${JSON.stringify(name)} ${p}`);
    if (names.includes(name)) bad(`name ${JSON.stringify(name)} is given twice`);
    names.push(name);
    off += 1 + len;
  }
  if (off !== msg.length) bad(`${msg.length - off} trailing bytes`);
  return names;
}
