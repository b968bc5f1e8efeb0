/**
 * Byte helpers shared by every layer. Validation helpers return their input so that checks
 * read inline (noble style): `abytes(key, 32, 'IK_A')`.
 */
import { timingSafeEqual } from 'node:crypto';
import { EnrollError } from '../errors.js';

/** Asserts `value` is a Uint8Array, optionally of exactly `length` bytes; returns it. */
export function abytes(value: unknown, length?: number, name = 'value'): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}" expected Uint8Array, got ${typeof value}`);
  }
  if (length !== undefined && value.length !== length) {
    throw new EnrollError(
      'ERR_INVALID_ARG',
      `"${name}" expected Uint8Array of length ${length}, got length=${value.length}`,
    );
  }
  return value;
}

/** Concatenates byte arrays into a new array. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  return concatAll(parts);
}

/** The same for a list of parts (slices of frames, sealed pieces): always a new array. */
export function concatAll(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Constant-time equality for secrets and MACs. Length is not secret. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** True when every byte is zero, without an early exit (RFC 7748 §6.1 all-zero check). */
export function isAllZero(a: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc |= a[i]!;
  return acc === 0;
}

/** Zero-fills intermediate secrets once they are no longer needed. */
export function wipe(...arrays: (Uint8Array | undefined)[]): void {
  for (const a of arrays) a?.fill(0);
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
}

export function fromHex(s: string, name = 'hex'): Uint8Array {
  if (typeof s !== 'string' || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new EnrollError('ERR_DECODE', `"${name}" is not an even-length hex string`);
  }
  return new Uint8Array(Buffer.from(s, 'hex'));
}

export function toBase64Url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');
}

export function utf8(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** A view of `b` as a Node Buffer, without copying. */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.length);
}
