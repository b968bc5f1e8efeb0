/**
 * The writer matching reader.ts. Values out of range are programming errors on our side
 * (the caller built a bad structure), so they throw ERR_INVALID_ARG rather than a format
 * code: an encoder never emits bytes its own decoder would refuse.
 */
import { EnrollError } from '../../errors.js';
import { abytes, concat, utf8 } from '../../crypto/bytes.js';

export class ByteWriter {
  readonly #parts: Uint8Array[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  #push(b: Uint8Array): this {
    this.#parts.push(b);
    this.#length += b.length;
    return this;
  }

  #uint(value: number, max: number, name: string): void {
    if (!Number.isSafeInteger(value) || value < 0 || value > max) {
      throw new EnrollError('ERR_INVALID_ARG', `"${name}" must be an integer in 0..${max}, got ${String(value)}`);
    }
  }

  u8(value: number, name: string): this {
    this.#uint(value, 0xff, name);
    return this.#push(Uint8Array.of(value));
  }

  u16be(value: number, name: string): this {
    this.#uint(value, 0xffff, name);
    return this.#push(Uint8Array.of(value >>> 8, value & 0xff));
  }

  u32be(value: number, name: string): this {
    this.#uint(value, 0xffffffff, name);
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, value, false);
    return this.#push(out);
  }

  /** Unsigned 64-bit big-endian; only 0..2^53 - 1 is accepted, as the reader does. */
  u64be(value: number, name: string): this {
    this.#uint(value, Number.MAX_SAFE_INTEGER, name);
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, BigInt(value), false);
    return this.#push(out);
  }

  /** Raw bytes, of exactly `length` bytes when given. Copied at `finish()`. */
  bytes(value: Uint8Array, length: number | undefined, name: string): this {
    return this.#push(abytes(value, length, name));
  }

  /** UTF-8 bytes of a string (callers write the length prefix themselves). */
  utf8(value: string, name: string): this {
    return this.#push(strictUtf8(value, name));
  }

  finish(): Uint8Array {
    return concat(...this.#parts);
  }
}

/**
 * UTF-8 encodes `value`, refusing lone surrogates: TextEncoder would turn them into
 * U+FFFD, so the bytes would not decode back to the same string.
 */
export function strictUtf8(value: string, name: string): Uint8Array {
  if (typeof value !== 'string') {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}" expected string, got ${typeof value}`);
  }
  // With the u flag, a surrogate range matches only code units that are not half of a pair.
  if (/[\uD800-\uDFFF]/u.test(value)) {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}" holds a lone UTF-16 surrogate`);
  }
  return utf8(value);
}
