/**
 * A strict, minimal DER reader and writer (X.690 §10) for the token flow's hot path: the
 * CSR the service checks, the certificate it builds and the certs-only PKCS#7 it answers
 * with. Pure functions over bytes; the reader throws only DerError, which callers map to
 * their own EnrollError.
 *
 * Strict means only DER is read, so that what is accepted re-encodes byte for byte:
 * - definite lengths only, in the shortest form (X.690 §10.1), never past the enclosing end;
 * - low tag numbers only (< 31: everything X.509 and CMS use);
 * - constructed values are walked to their end, every child read the same way, nothing after
 *   the outermost value;
 * - BOOLEAN is 0x00 or 0xFF (§11.1), INTEGER minimal (§8.3.2), BIT STRING without unused bits
 *   where a key or a signature is expected, OBJECT IDENTIFIER arcs minimal (§8.19.2).
 */

export class DerError extends Error {}

export const TAG_BOOLEAN = 0x01;
export const TAG_INTEGER = 0x02;
export const TAG_BIT_STRING = 0x03;
export const TAG_OCTET_STRING = 0x04;
export const TAG_NULL = 0x05;
export const TAG_OID = 0x06;
export const TAG_UTF8 = 0x0c;
export const TAG_PRINTABLE = 0x13;
export const TAG_TELETEX = 0x14;
export const TAG_IA5 = 0x16;
export const TAG_UTC_TIME = 0x17;
export const TAG_GENERALIZED_TIME = 0x18;
export const TAG_UNIVERSAL_STRING = 0x1c;
export const TAG_BMP = 0x1e;
export const TAG_SEQUENCE = 0x30;
export const TAG_SET = 0x31;

/** One value: its tag byte, where it starts (the tag), where its contents start and end. */
export interface Tlv {
  tag: number;
  start: number;
  body: number;
  end: number;
}

/** Most nesting the reader follows (a CSR needs 8). */
const MAX_DEPTH = 16;

/** Reads the value at `at`, which must end by `limit`. */
export function readTlv(buf: Uint8Array, at: number, limit = buf.length): Tlv {
  if (at + 2 > limit) throw new DerError('truncated value');
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used here');
  let len = buf[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    // 0x80 is BER's indefinite length; more than 3 length bytes is far past any cap here.
    if (n === 0 || n > 3) throw new DerError('indefinite or oversized length');
    if (body + n > limit) throw new DerError('truncated length');
    if (buf[body] === 0) throw new DerError('non-minimal length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i]!;
    if (len < 0x80) throw new DerError('non-minimal length');
    body += n;
  }
  const end = body + len;
  if (end > limit) throw new DerError('length past the end');
  return { tag, start: at, body, end };
}

/** Reads and checks the whole of `buf` as one DER value, recursing into constructed ones. */
export function readDer(buf: Uint8Array): Tlv {
  const top = readTlv(buf, 0);
  if (top.end !== buf.length) throw new DerError('bytes after the value');
  checkTree(buf, top, 0);
  return top;
}

function checkTree(buf: Uint8Array, t: Tlv, depth: number): void {
  if (depth > MAX_DEPTH) throw new DerError('nested too deep');
  if (t.tag & 0x20) {
    for (let at = t.body; at < t.end; ) {
      const c = readTlv(buf, at, t.end);
      checkTree(buf, c, depth + 1);
      at = c.end;
    }
    return;
  }
  checkPrimitive(buf, t);
}

function checkPrimitive(buf: Uint8Array, t: Tlv): void {
  const n = t.end - t.body;
  switch (t.tag) {
    case TAG_BOOLEAN:
      if (n !== 1 || (buf[t.body] !== 0 && buf[t.body] !== 0xff)) throw new DerError('BOOLEAN is not DER');
      return;
    case TAG_INTEGER:
      if (n === 0) throw new DerError('empty INTEGER');
      if (n > 1 && ((buf[t.body] === 0 && buf[t.body + 1]! < 0x80) || (buf[t.body] === 0xff && buf[t.body + 1]! >= 0x80))) {
        throw new DerError('non-minimal INTEGER');
      }
      return;
    case TAG_BIT_STRING:
      if (n === 0 || buf[t.body]! > 7 || (n === 1 && buf[t.body] !== 0)) throw new DerError('BIT STRING is not DER');
      // X.690 §11.2.1: the unused bits are zero.
      if (n > 1 && (buf[t.end - 1]! & ((1 << buf[t.body]!) - 1)) !== 0) throw new DerError('BIT STRING unused bits are set');
      return;
    case TAG_NULL:
      if (n !== 0) throw new DerError('NULL with contents');
      return;
    case TAG_OID:
      oidText(buf, t);
      return;
    default:
      return;
  }
}

/** The children of a constructed value. */
export function children(buf: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = t.body; at < t.end; ) {
    const c = readTlv(buf, at, t.end);
    out.push(c);
    at = c.end;
  }
  return out;
}

/** The children of `t`, which must have tag `tag` and exactly `count` children (or any number when undefined). */
export function expect(buf: Uint8Array, t: Tlv, tag: number, what: string, count?: number): Tlv[] {
  if (t.tag !== tag) throw new DerError(`${what}: unexpected tag 0x${t.tag.toString(16)}`);
  const c = children(buf, t);
  if (count !== undefined && c.length !== count) throw new DerError(`${what}: ${c.length} elements, expected ${count}`);
  return c;
}

export function bytesOf(buf: Uint8Array, t: Tlv): Uint8Array {
  return buf.subarray(t.body, t.end);
}

export function rawOf(buf: Uint8Array, t: Tlv): Uint8Array {
  return buf.subarray(t.start, t.end);
}

/** The largest arc read: 128 bits, for UUID OIDs (2.25.<UUID>, X.667 §8) a peer may send. */
const MAX_OID_ARC = 1n << 128n;

/**
 * Dotted text of an OBJECT IDENTIFIER (X.690 §8.19), minimal arcs only, each below 2^128.
 * Arcs are read as doubles while they stay exact, and as BigInt beyond (a UUID arc only).
 */
export function oidText(buf: Uint8Array, t: Tlv): string {
  if (t.tag !== TAG_OID) throw new DerError('expected an OBJECT IDENTIFIER');
  if (t.end === t.body) throw new DerError('empty OBJECT IDENTIFIER');
  const arcs: (number | bigint)[] = [];
  let v = 0;
  let big: bigint | undefined;
  let fresh = true;
  for (let i = t.body; i < t.end; i++) {
    const b = buf[i]!;
    if (fresh && b === 0x80) throw new DerError('non-minimal OBJECT IDENTIFIER arc');
    fresh = false;
    if (big !== undefined) {
      big = big * 128n + BigInt(b & 0x7f);
      if (big >= MAX_OID_ARC) throw new DerError('OBJECT IDENTIFIER arc too large');
    } else {
      v = v * 128 + (b & 0x7f);
      if (v > Number.MAX_SAFE_INTEGER / 256) big = BigInt(v);
    }
    if ((b & 0x80) === 0) {
      arcs.push(big ?? v);
      v = 0;
      big = undefined;
      fresh = true;
    }
  }
  if (!fresh) throw new DerError('truncated OBJECT IDENTIFIER');
  const first = arcs[0]!;
  const head = typeof first === 'bigint' ? [2, first - 80n] : first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

/** The contents of a BIT STRING with no unused bits (keys, signatures). */
export function bitStringBytes(buf: Uint8Array, t: Tlv): Uint8Array {
  if (t.tag !== TAG_BIT_STRING) throw new DerError('expected a BIT STRING');
  if (t.end === t.body || buf[t.body] !== 0) throw new DerError('BIT STRING with unused bits');
  return buf.subarray(t.body + 1, t.end);
}

// ---- writing

/** The DER length octets of `n` (X.690 §8.1.3, shortest form). */
export function lengthBytes(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  if (n < 0x100) return Uint8Array.of(0x81, n);
  if (n < 0x10000) return Uint8Array.of(0x82, n >> 8, n & 0xff);
  if (n < 0x1000000) return Uint8Array.of(0x83, n >> 16, (n >> 8) & 0xff, n & 0xff);
  throw new DerError('value too long');
}

/** One value: tag, length, then the parts as its contents. */
export function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const len = lengthBytes(n);
  const out = new Uint8Array(1 + len.length + n);
  out[0] = tag;
  out.set(len, 1);
  let at = 1 + len.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** OBJECT IDENTIFIER from dotted text. */
export function oid(text: string): Uint8Array {
  const arcs = text.split('.').map(Number);
  const out: number[] = [];
  const push = (v: number) => {
    const tmp = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) tmp.unshift((v & 0x7f) | 0x80);
    out.push(...tmp);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(TAG_OID, Uint8Array.from(out));
}

/**
 * UTCTime for years 1950..2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5), to the
 * second, 'Z'.
 */
export function time(seconds: number): Uint8Array {
  const d = new Date(seconds * 1000);
  const y = d.getUTCFullYear();
  const p2 = (n: number) => String(n).padStart(2, '0');
  const rest = `${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(TAG_UTC_TIME, Buffer.from(`${p2(y % 100)}${rest}`, 'latin1'));
  return tlv(TAG_GENERALIZED_TIME, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'latin1'));
}
