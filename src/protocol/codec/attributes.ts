/**
 * Enrollee attributes (docs/protocol.md §4.5, docs/policies.md): what a fleet operator says
 * about a device — `role=sensor`, `site=berlin` — carried in the credential v2, the approve
 * request and the store, and checked by CEL policies (src/policy).
 *
 *   attributes = count u8 (0..ATTR_MAX_COUNT) |
 *                count × ( key_len u8 (1..32) | key ASCII | value_len u8 (1..64) | value UTF-8 )
 *
 * Keys are lower-case identifiers (`[a-z][a-z0-9_]*`), so that `subject.attributes.role`
 * is a CEL field selection; values are bounded UTF-8 strings with no control or
 * bidirectional-override character (the same rule as pet names: they end up in logs and
 * terminals). Entries are sorted by key, strictly: one encoding per set, so the bytes a
 * signature covers are canonical and a duplicated key cannot be smuggled past a verifier that
 * keeps the first (or the last) of two.
 *
 * Pure: bytes in, bytes out.
 */
import { EnrollError, type ErrorCode } from '../../errors.js';
import { ByteReader } from './reader.js';
import { ByteWriter, strictUtf8 } from './writer.js';

export const ATTR_MAX_COUNT = 16;
export const ATTR_MAX_KEY_LEN = 32;
export const ATTR_MAX_VALUE_LEN = 64;
/** The longest encoding: 1 + 16 × (1 + 32 + 1 + 64). */
export const ATTR_MAX_ENCODED_LEN = 1 + ATTR_MAX_COUNT * (2 + ATTR_MAX_KEY_LEN + ATTR_MAX_VALUE_LEN);

/** Attributes as a plain object, keys in ascending order. */
export type Attributes = Readonly<Record<string, string>>;

const KEY_RE = /^[a-z][a-z0-9_]*$/;
const FORBIDDEN_VALUE_CHARS = /[\p{Cc}\u2028\u2029\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;

/** Why `key` is not a valid attribute key, or undefined. */
export function attributeKeyProblem(key: string): string | undefined {
  if (typeof key !== 'string') return 'must be a string';
  if (key.length === 0) return 'is empty';
  if (key.length > ATTR_MAX_KEY_LEN) return `is ${key.length} characters, at most ${ATTR_MAX_KEY_LEN}`;
  if (!KEY_RE.test(key)) return 'must be a lower-case identifier: a-z, then a-z, 0-9 or _';
  return undefined;
}

/** Why `value` is not a valid attribute value, or undefined. */
export function attributeValueProblem(value: string): string | undefined {
  if (typeof value !== 'string') return 'must be a string';
  let bytes: Uint8Array;
  try {
    bytes = strictUtf8(value, 'value');
  } catch {
    return 'holds a lone surrogate';
  }
  if (bytes.length === 0) return 'is empty';
  if (bytes.length > ATTR_MAX_VALUE_LEN) return `is ${bytes.length} bytes of UTF-8, at most ${ATTR_MAX_VALUE_LEN}`;
  const bad = FORBIDDEN_VALUE_CHARS.exec(value);
  if (bad) return `holds a control character (U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`;
  return undefined;
}

function byteOrder(a: string, b: string): number {
  // Keys are ASCII, so UTF-16 order is byte order.
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Checks an attribute set and returns a frozen copy with its keys sorted. `code` is the error
 * code of a problem (ERR_INVALID_ARG for library callers, ERR_USAGE for flags).
 */
export function checkAttributes(attrs: unknown, code: ErrorCode = 'ERR_INVALID_ARG'): Attributes {
  if (attrs === null || typeof attrs !== 'object' || Array.isArray(attrs)) {
    throw new EnrollError(code, 'attributes: expected an object of key → value');
  }
  const keys = Object.keys(attrs).sort(byteOrder);
  if (keys.length > ATTR_MAX_COUNT) throw new EnrollError(code, `attributes: ${keys.length} attributes, at most ${ATTR_MAX_COUNT}`);
  const out: Record<string, string> = {};
  for (const k of keys) {
    const kp = attributeKeyProblem(k);
    if (kp !== undefined) throw new EnrollError(code, `attribute key "${k.slice(0, 40)}" ${kp}`);
    const v = (attrs as Record<string, unknown>)[k];
    const vp = typeof v === 'string' ? attributeValueProblem(v) : 'must be a string';
    if (vp !== undefined) throw new EnrollError(code, `attribute "${k}": the value ${vp}`);
    out[k] = v as string;
  }
  return Object.freeze(out);
}

/**
 * Parses `KEY=VALUE` arguments (`--attr`, `set-attr`). A key given twice is refused rather
 * than one of them silently winning.
 */
export function parseAttributeArgs(args: readonly string[], what = '--attr'): Attributes {
  const out: Record<string, string> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq <= 0) {
      throw new EnrollError('ERR_USAGE', `${what} expects KEY=VALUE, got "${a.slice(0, 80)}"`, { hint: 'for example: --attr role=sensor --attr site=berlin' });
    }
    const k = a.slice(0, eq);
    if (Object.hasOwn(out, k)) throw new EnrollError('ERR_USAGE', `attribute "${k.slice(0, 40)}" is given twice`);
    out[k] = a.slice(eq + 1);
  }
  return checkAttributes(out, 'ERR_USAGE');
}

/** Encodes a set (checked; sorted by key). */
export function encodeAttributes(attrs: Attributes): Uint8Array {
  const checked = checkAttributes(attrs);
  const keys = Object.keys(checked);
  const w = new ByteWriter().u8(keys.length, 'count');
  for (const k of keys) {
    const kb = strictUtf8(k, 'key');
    const vb = strictUtf8(checked[k]!, 'value');
    w.u8(kb.length, 'key_len').bytes(kb, undefined, 'key').u8(vb.length, 'value_len').bytes(vb, undefined, 'value');
  }
  return w.finish();
}

/**
 * Reads an attribute list from `r` (inside a credential or a message); any deviation — a
 * count over 16, a length out of range, a key that is not an identifier, a value with a
 * control character, keys not in strictly ascending order (so also a duplicate) — fails `r`.
 */
export function readAttributes(r: ByteReader): Attributes {
  const count = r.u8('attribute count');
  if (count > ATTR_MAX_COUNT) r.fail(`${count} attributes, at most ${ATTR_MAX_COUNT}`);
  const out: Record<string, string> = {};
  let prev: string | undefined;
  for (let i = 0; i < count; i++) {
    const kl = r.u8('key_len');
    if (kl < 1 || kl > ATTR_MAX_KEY_LEN) r.fail(`attribute ${i}: key_len ${kl} is not in 1..${ATTR_MAX_KEY_LEN}`);
    const k = r.utf8(kl, 'attribute key');
    const kp = attributeKeyProblem(k);
    if (kp !== undefined) r.fail(`attribute ${i}: the key ${kp}`);
    if (prev !== undefined && byteOrder(prev, k) >= 0) r.fail(`attribute "${k}": keys must be unique and in ascending order`);
    const vl = r.u8('value_len');
    if (vl < 1 || vl > ATTR_MAX_VALUE_LEN) r.fail(`attribute "${k}": value_len ${vl} is not in 1..${ATTR_MAX_VALUE_LEN}`);
    const v = r.utf8(vl, 'attribute value');
    const vp = attributeValueProblem(v);
    if (vp !== undefined) r.fail(`attribute "${k}": the value ${vp}`);
    out[k] = v;
    prev = k;
  }
  return Object.freeze(out);
}

/** Decodes a whole buffer holding exactly one attribute list; failures are `code`. */
export function decodeAttributes(bytes: Uint8Array, code: ErrorCode = 'ERR_DECODE'): Attributes {
  const r = new ByteReader(bytes, code, 'attributes');
  const a = readAttributes(r);
  r.end();
  return a;
}

/** Two sets hold the same keys and values. */
export function sameAttributes(a: Attributes, b: Attributes): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && b[k] === a[k]);
}

/** `key=value,key=value` for human output ('' for none). */
export function formatAttributes(a: Attributes | undefined): string {
  return a === undefined ? '' : Object.entries(a).map(([k, v]) => `${k}=${v}`).join(',');
}
