/**
 * fast-check arbitraries for hostile inputs: random bytes, and valid encodings mutated the
 * way a fuzzer mutates (bit flips, byte changes, truncation, insertion, deletion, appended
 * garbage, length fields pushed to their extremes), and the same for text forms.
 */
import fc from 'fast-check';
import { EnrollError } from '../../src/errors.js';
import { FUZZ_RUNS, FUZZ_SEED } from '../helpers/lab.js';

type ByteMutation =
  | { op: 'flip'; pos: number; bit: number }
  | { op: 'set'; pos: number; value: number }
  | { op: 'truncate'; pos: number }
  | { op: 'insert'; pos: number; bytes: Uint8Array }
  | { op: 'delete'; pos: number; n: number }
  | { op: 'append'; bytes: Uint8Array }
  | { op: 'u16'; pos: number; value: number };

const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('set' as const), pos: fc.nat(), value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x10, 0x20) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), pos: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('insert' as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), pos: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('u16' as const), pos: fc.nat(), value: fc.constantFrom(0, 1, 0xff, 0x100, 0x7fff, 0xffff) }) },
);

function applyByteMutation(b: Uint8Array, m: ByteMutation): Uint8Array {
  const n = b.length;
  switch (m.op) {
    case 'flip': {
      if (n === 0) return b;
      const out = b.slice();
      out[m.pos % n] ^= 1 << m.bit;
      return out;
    }
    case 'set': {
      if (n === 0) return b;
      const out = b.slice();
      out[m.pos % n] = m.value;
      return out;
    }
    case 'truncate':
      return b.slice(0, n === 0 ? 0 : m.pos % n);
    case 'insert': {
      const p = m.pos % (n + 1);
      const out = new Uint8Array(n + m.bytes.length);
      out.set(b.subarray(0, p));
      out.set(m.bytes, p);
      out.set(b.subarray(p), p + m.bytes.length);
      return out;
    }
    case 'delete': {
      if (n === 0) return b;
      const p = m.pos % n;
      const out = new Uint8Array(n - Math.min(m.n, n - p));
      out.set(b.subarray(0, p));
      out.set(b.subarray(p + m.n), p);
      return out;
    }
    case 'append': {
      const out = new Uint8Array(n + m.bytes.length);
      out.set(b);
      out.set(m.bytes, n);
      return out;
    }
    case 'u16': {
      if (n < 2) return b;
      const out = b.slice();
      const p = m.pos % (n - 1);
      out[p] = m.value >>> 8;
      out[p + 1] = m.value & 0xff;
      return out;
    }
  }
}

/** One of `valid`, with 1 to 4 mutations applied. */
export function mutatedBytes(valid: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(fc.integer({ min: 0, max: valid.length - 1 }), fc.array(byteMutation, { minLength: 1, maxLength: 4 }))
    .map(([i, muts]) => muts.reduce(applyByteMutation, valid[i]!));
}

/** Hostile bytes for a decoder whose valid inputs include `valid`: random, mutated, or valid as is. */
export function hostileBytes(valid: readonly Uint8Array[], maxRandom = 1024): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: maxRandom }) },
    { weight: 6, arbitrary: mutatedBytes(valid) },
    { weight: 1, arbitrary: fc.constantFrom(...valid) },
  );
}

type TextMutation =
  | { op: 'replace'; pos: number; char: string }
  | { op: 'insert'; pos: number; text: string }
  | { op: 'delete'; pos: number; n: number }
  | { op: 'truncate'; pos: number }
  | { op: 'case'; lower: boolean }
  | { op: 'swap'; pos: number }
  | { op: 'repeat'; times: number };

/** Characters a hostile or clumsy user can put in a text form. */
const TRICKY = fc.constantFrom(
  'A', 'Z', '2', '7', '0', '1', '8', 'O', 'I', 'B', 'a', 'z', ':', ' ', '\n', '\t', '\r', '\u00a0', '\u2028', '\u0000',
  '\u001b', '\ufeff', '\u200e', '\u202e', '\ud800', '\udc00', '😀', 'é', '=', '-', '_', '.', '+', '/', '"', '\\',
);

const textMutation: fc.Arbitrary<TextMutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('replace' as const), pos: fc.nat(), char: TRICKY }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('insert' as const), pos: fc.nat(), text: fc.oneof(TRICKY, fc.string({ maxLength: 6 })) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), pos: fc.nat(), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), pos: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('case' as const), lower: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('swap' as const), pos: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('repeat' as const), times: fc.integer({ min: 2, max: 5 }) }) },
);

function applyTextMutation(s: string, m: TextMutation): string {
  const n = s.length;
  switch (m.op) {
    case 'replace': {
      if (n === 0) return m.char;
      const p = m.pos % n;
      return s.slice(0, p) + m.char + s.slice(p + 1);
    }
    case 'insert': {
      const p = m.pos % (n + 1);
      return s.slice(0, p) + m.text + s.slice(p);
    }
    case 'delete': {
      if (n === 0) return s;
      const p = m.pos % n;
      return s.slice(0, p) + s.slice(p + m.n);
    }
    case 'truncate':
      return s.slice(0, n === 0 ? 0 : m.pos % n);
    case 'case':
      return m.lower ? s.toLowerCase() : s.toUpperCase();
    case 'swap': {
      if (n < 2) return s;
      const p = m.pos % (n - 1);
      return s.slice(0, p) + s[p + 1] + s[p] + s.slice(p + 2);
    }
    case 'repeat':
      return s.repeat(m.times);
  }
}

/** Hostile text for a decoder whose valid inputs include `valid`. */
export function hostileText(valid: readonly string[], maxRandom = 300): fc.Arbitrary<string> {
  const mutated = fc
    .tuple(fc.integer({ min: 0, max: valid.length - 1 }), fc.array(textMutation, { minLength: 1, maxLength: 4 }))
    .map(([i, muts]) => muts.reduce(applyTextMutation, valid[i]!));
  return fc.oneof(
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: maxRandom }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: maxRandom }) },
    { weight: 6, arbitrary: mutated },
    { weight: 1, arbitrary: fc.constantFrom(...valid) },
  );
}

/**
 * Runs `fn`; returns 'ok' or the EnrollError it threw. Anything else thrown fails the property
 * with the input's description: decoders throw only EnrollError (architecture.md).
 */
export function typed<T>(fn: () => T): { ok: true; value: T } | { ok: false; error: EnrollError } {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof EnrollError) return { ok: false, error: e };
    throw new Error(`threw a non-EnrollError: ${(e as Error)?.stack ?? String(e)}`);
  }
}

export async function typedAsync<T>(fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: EnrollError }> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    if (e instanceof EnrollError) return { ok: false, error: e };
    throw new Error(`threw a non-EnrollError: ${(e as Error)?.stack ?? String(e)}`);
  }
}

/** Asserts a rejection's code is one of `codes`. */
export function expectCode(r: { ok: boolean; error?: EnrollError }, codes: readonly string[], what: string): void {
  if (r.ok) return;
  const code = r.error!.code;
  if (!codes.includes(code)) throw new Error(`${what}: unexpected code ${code} (${r.error!.message}); allowed: ${codes.join(', ')}`);
}

/** fc.assert with the suite's seed and run count; the seed is in every failure message. */
export function check(prop: fc.IRawProperty<any, any>, runs: number = FUZZ_RUNS): void | Promise<void> {
  const params = { seed: FUZZ_SEED, numRuns: runs, endOnFailure: false };
  const report = (e: unknown): never => {
    throw new Error(`fuzz failure (seed ${FUZZ_SEED}, ${runs} runs; rerun with OCKAM_ENROLL_FUZZ_SEED=${FUZZ_SEED}):\n${(e as Error)?.message ?? String(e)}`, { cause: e });
  };
  try {
    const r = fc.assert(prop as fc.IRawProperty<unknown, boolean>, params) as void | Promise<void>;
    if (r instanceof Promise) return r.catch(report);
    return r;
  } catch (e) {
    return report(e);
  }
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
