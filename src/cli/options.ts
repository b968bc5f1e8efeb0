/**
 * Flags every command shares, and parsers for flag values. Every value from a flag is
 * checked for type and range here, before a role sees it.
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { EnrollError } from '../errors.js';
import type { PassphraseSource } from '../keystore/passphrase.js';

export interface CommonOptions {
  home?: string;
  json?: boolean;
  quiet?: boolean;
  passphraseFile?: string;
  passphraseEnv?: string;
  passphrasePrompt?: boolean;
}

export const DEFAULT_HOME = join(homedir(), '.ockam-enroll');

/**
 * The home directory: `--home`, else OCKAM_ENROLL_HOME, else the `home` setting in conf's
 * user config file (~/.config/ockam-enroll/config.json: `{"home": "/path"}`), else
 * ~/.ockam-enroll.
 */
export async function resolveHome(flag: string | undefined): Promise<string> {
  if (flag) return resolve(flag);
  if (process.env.OCKAM_ENROLL_HOME) return resolve(process.env.OCKAM_ENROLL_HOME);
  const { configuredHome } = await import('./settings.js');
  const configured = configuredHome();
  return configured ? resolve(configured) : DEFAULT_HOME;
}

export function passphraseSource(o: CommonOptions): PassphraseSource {
  if (o.passphraseFile) return { kind: 'file', path: resolve(o.passphraseFile) };
  if (o.passphrasePrompt) return { kind: 'prompt' };
  const name = o.passphraseEnv ?? 'OCKAM_ENROLL_PASSPHRASE';
  if (o.passphraseEnv || process.env[name] !== undefined) return { kind: 'env', name };
  return { kind: 'none' };
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Parses `90s`, `15m`, `1h`, `7d` (or bare seconds) into seconds, within [min, max]. */
export function parseDuration(value: string, flag: string, min = 1, max = 365 * 86400): number {
  const m = /^(\d{1,9})([smhd]?)$/.exec(value.trim());
  if (!m) {
    throw new EnrollError('ERR_USAGE', `${flag} "${value}" is not a duration`, { hint: 'use e.g. 90s, 15m, 1h or 7d' });
  }
  const seconds = Number(m[1]) * UNITS[m[2] || 's']!;
  if (seconds < min || seconds > max) {
    throw new EnrollError('ERR_USAGE', `${flag} must be between ${min}s and ${max}s, got ${seconds}s`);
  }
  return seconds;
}

export function parseCount(value: string, flag: string, min: number, max: number): number {
  if (!/^\d{1,9}$/.test(value.trim())) throw new EnrollError('ERR_USAGE', `${flag} "${value}" is not a whole number`);
  const n = Number(value);
  if (n < min || n > max) throw new EnrollError('ERR_USAGE', `${flag} must be ${min}..${max}, got ${n}`);
  return n;
}

/** `--eka v1|v2` (also `1`, `2`): the Enrollment Key Agreement version (docs/protocol.md §5A.3). */
export function parseEka(value: string | undefined, flag = '--eka'): 1 | 2 {
  const v = (value ?? 'v2').trim().toLowerCase();
  if (v === 'v1' || v === '1') return 1;
  if (v === 'v2' || v === '2') return 2;
  throw new EnrollError('ERR_USAGE', `${flag} must be v1 or v2, got "${value}"`, {
    hint: 'v2 (the default) is X3DH with ML-KEM-768, resistant to recording now and decrypting later; v1 is X3DH alone',
  });
}

/** A 32-byte public key given as 64 hex characters. */
export function parseKeyHex(value: string, what: string): Uint8Array {
  const v = value.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(v)) {
    throw new EnrollError('ERR_USAGE', `${what} must be 64 hex characters (a 32-byte key), got ${v.length} characters`);
  }
  return new Uint8Array(Buffer.from(v, 'hex'));
}

/** Pet names: 1..64 bytes of UTF-8 without control characters. */
export function parsePetName(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (Buffer.byteLength(value) > 64 || value.length === 0 || /\p{Cc}/u.test(value)) {
    throw new EnrollError('ERR_USAGE', '--name must be 1 to 64 bytes of printable text');
  }
  return value;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** `--store` as ServiceHome.open's option (absent when the flag is). */
export function storeOption(o: Record<string, unknown>): { store?: string } {
  return typeof o.store === 'string' ? { store: o.store } : {};
}
