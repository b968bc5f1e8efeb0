/**
 * Randomness is injected, never fetched inside the protocol core, so that tests and the
 * known-answer generator can pin every random input.
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';

/** Returns `n` fresh random bytes. */
export type RandomSource = (n: number) => Uint8Array;

export const systemRandom: RandomSource = (n) => new Uint8Array(nodeRandomBytes(n));
