/**
 * Where the service's store lives: the SQLite file in the service's home (the default), or a
 * PostgreSQL database shared by several `service start` replicas (README "Running several
 * replicas"). Chosen by `--store`, else OCKAM_ENROLL_STORE, else the home's `store` setting.
 *
 * A PostgreSQL URL may carry a password: it is never printed or logged. Everything that
 * shows a location shows `masked` (the password replaced by `***`), and every error of the
 * PostgreSQL store has it scrubbed from its message (maskSecret).
 */
import { EnrollError } from '../errors.js';

export type StoreLocation =
  | { kind: 'sqlite'; masked: string }
  | { kind: 'postgres'; url: string; masked: string; password: string | undefined };

/** The env variable naming the store (as `--store` does). */
export const STORE_ENV = 'OCKAM_ENROLL_STORE';

/** Longest store URL accepted. */
const MAX_URL_LEN = 2048;

/**
 * Parses `--store` / OCKAM_ENROLL_STORE / the `store` setting: `sqlite` (the home's
 * store.db) or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]` (also postgresql://).
 */
export function parseStoreLocation(value: string, source: string): StoreLocation {
  const v = String(value).trim();
  if (v === '' || v === 'sqlite') return { kind: 'sqlite', masked: 'sqlite' };
  if (v.length > MAX_URL_LEN) throw new EnrollError('ERR_USAGE', `${source} is longer than ${MAX_URL_LEN} characters`);
  if (!/^postgres(ql)?:\/\//i.test(v)) {
    throw new EnrollError('ERR_USAGE', `${source} must be "sqlite" or a postgres:// URL`, {
      hint: 'e.g. --store postgres://ockam@127.0.0.1:5432/enroll (the password from PGPASSWORD or ~/.pgpass)',
    });
  }
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new EnrollError('ERR_USAGE', `${source} is not a valid postgres:// URL`);
  }
  if (u.hostname === '' || u.pathname.length <= 1) {
    throw new EnrollError('ERR_USAGE', `${source} must name a host and a database: postgres://USER@HOST:PORT/DB`);
  }
  const password = u.password === '' ? undefined : decodeURIComponent(u.password);
  if (u.password !== '') u.password = '***';
  return { kind: 'postgres', url: v, masked: u.toString(), password };
}

/** `text` with every occurrence of the location's password (raw or URL-encoded) replaced by ***. */
export function maskSecret(text: string, loc: StoreLocation): string {
  if (loc.kind !== 'postgres' || loc.password === undefined || loc.password === '') return text;
  let out = text;
  for (const s of new Set([loc.password, encodeURIComponent(loc.password)])) out = out.split(s).join('***');
  return out;
}
