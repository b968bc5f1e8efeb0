/**
 * A bounds-checked reader over a byte string, for the v1 binary encodings (bundle, card).
 *
 * Every read checks the remaining length before slicing, so a short input becomes the
 * caller's EnrollError code (ERR_BUNDLE_MALFORMED, ERR_CARD_MALFORMED, …) and never a
 * RangeError or a silently short `subarray` (architecture.md: decoders throw only
 * EnrollError). Returned byte strings are copies: a decoded object never aliases, and so
 * never changes with, the buffer it came from.
 */
import { EnrollError, type ErrorCode } from '../../errors.js';
import { abytes } from '../../crypto/bytes.js';

/** The largest integer a JavaScript number holds exactly (2^53 - 1). */
export const MAX_SAFE_U64 = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Strict UTF-8: `fatal` rejects ill-formed sequences (overlong forms, surrogates, code
 * points above U+10FFFF, truncated sequences) instead of replacing them with U+FFFD, and
 * `ignoreBOM` keeps a leading U+FEFF as a character instead of silently dropping it. Both
 * matter for signed fields: decoding then re-encoding must give back the exact bytes the
 * signature covers.
 */
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class ByteReader {
  readonly #bytes: Uint8Array;
  readonly #code: ErrorCode;
  readonly #what: string;
  #pos = 0;

  /**
   * @param bytes the input; it is not copied, so it must not change while being read.
   * @param code the error code for any short, trailing or malformed input.
   * @param what the name of the structure, used in error messages ("bundle", "card").
   */
  constructor(bytes: Uint8Array, code: ErrorCode, what: string) {
    this.#bytes = abytes(bytes, undefined, what);
    this.#code = code;
    this.#what = what;
  }

  /** Bytes consumed so far. */
  get offset(): number {
    return this.#pos;
  }

  /** Bytes not yet consumed. */
  get remaining(): number {
    return this.#bytes.length - this.#pos;
  }

  /** Throws this reader's error code with a message naming the structure and field. */
  fail(message: string): never {
    throw new EnrollError(this.#code, `${this.#what}: ${message}`);
  }

  #take(n: number, name: string): Uint8Array {
    if (!Number.isInteger(n) || n < 0) this.fail(`"${name}" has an invalid length ${n}`);
    if (n > this.remaining) {
      this.fail(`truncated at "${name}": need ${n} bytes at offset ${this.#pos}, have ${this.remaining}`);
    }
    const view = this.#bytes.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return view;
  }

  u8(name: string): number {
    return this.#take(1, name)[0]!;
  }

  u16be(name: string): number {
    const b = this.#take(2, name);
    return (b[0]! << 8) | b[1]!;
  }

  u32be(name: string): number {
    const b = this.#take(4, name);
    return ((b[0]! << 24) >>> 0) + ((b[1]! << 16) | (b[2]! << 8) | b[3]!);
  }

  /** An unsigned 64-bit big-endian integer; values above 2^53 - 1 are rejected. */
  u64be(name: string): number {
    const b = this.#take(8, name);
    let v = 0n;
    for (const x of b) v = (v << 8n) | BigInt(x);
    if (v > MAX_SAFE_U64) this.fail(`"${name}" is larger than 2^53 - 1`);
    return Number(v);
  }

  /** `n` bytes, copied. */
  bytes(n: number, name: string): Uint8Array {
    return Uint8Array.from(this.#take(n, name));
  }

  /** `n` bytes of strict UTF-8 (see UTF8_STRICT). */
  utf8(n: number, name: string): string {
    const b = this.#take(n, name);
    try {
      return UTF8_STRICT.decode(b);
    } catch {
      this.fail(`"${name}" is not valid UTF-8`);
    }
  }

  /** Asserts the whole input was consumed: trailing bytes are an error, not ignored. */
  end(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} trailing bytes after the last field`);
  }
}
