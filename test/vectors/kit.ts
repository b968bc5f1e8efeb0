/**
 * What the vector generators share: hex output, deterministic byte runs (no randomness, so
 * each file is reproduced byte for byte), and the code an input that must fail fails with.
 */
import { writeFileSync } from 'node:fs';
import { isEnrollError } from '../../src/errors.js';

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** n bytes counting up from `start` (mod 256): a recognisable stand-in for a key or id. */
export const seq = (start: number, n = 32): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);

/** The EnrollError code `f` throws; anything else, or no failure, breaks the generator. */
export function failsWith(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (isEnrollError(e)) return e.code;
    throw e;
  }
  throw new Error('expected a failure');
}

/** Writes a generator's file and says so on stdout (`npm run vectors`). */
export function writeVectors(file: string, text: string): void {
  writeFileSync(file, text);
  process.stdout.write(`wrote ${file}\n`);
}
