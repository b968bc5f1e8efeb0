/**
 * Where the service's store lives: the SQLite file in the service's home (the default), or a
 * PostgreSQL database shared by several `service start` replicas (docs/walkthrough.md "Running several
 * replicas"). Chosen by `--store`, else OCKAM_ENROLL_STORE, else the home's `store` setting.
 *
 * A PostgreSQL URL may carry a password: it is never printed or logged. Everything that
 * shows a location shows `masked` (the password replaced by `***`), and every error of the
 * PostgreSQL store has it scrubbed from its message (maskSecret).
 */
import { parse as parseConnectionString } from 'pg-connection-string';
import { EnrollError } from '../errors.js';

export type StoreLocation =
  | { kind: 'sqlite'; masked: string }
  | {
      kind: 'postgres';
      url: string;
      masked: string;
      /** The password, from `user:pw@` or `?password=` (as node-postgres reads it). */
      password: string | undefined;
      /** Every secret value the URL carries (password, sslpassword, …), for maskSecret. */
      secrets: string[];
    };

/**
 * Query parameters of a PostgreSQL URL that carry a secret or point at one (issue #18
 * finding 3): pg-connection-string reads `password` and `sslpassword` as such, and `sslkey`
 * names the client's private key. Their values are masked wherever a location is shown, and
 * they are never saved in settings.json.
 */
export const SECRET_PARAMS = ['password', 'sslpassword', 'sslkey'] as const;
/** Parameters pg-connection-string opens as files while it parses (not wanted here). */
const FILE_PARAMS = ['sslcert', 'sslkey', 'sslrootcert'];

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
  // What node-postgres will take as the password: pg-connection-string's own reading (the
  // userinfo's, or ?password=, which wins), without letting it open the ssl* files.
  const probe = new URL(v);
  for (const f of FILE_PARAMS) probe.searchParams.delete(f);
  let parsed: { password?: string | undefined; sslpassword?: unknown };
  try {
    parsed = parseConnectionString(probe.toString()) as typeof parsed;
  } catch {
    throw new EnrollError('ERR_USAGE', `${source} is not a valid postgres:// URL`);
  }
  const secrets = new Set<string>();
  if (u.password !== '') secrets.add(decodeURIComponent(u.password));
  for (const name of SECRET_PARAMS) for (const value of u.searchParams.getAll(name)) if (value !== '') secrets.add(value);
  if (typeof parsed.password === 'string' && parsed.password !== '') secrets.add(parsed.password);
  const password = typeof parsed.password === 'string' && parsed.password !== '' ? parsed.password : undefined;
  if (u.password !== '') u.password = '***';
  for (const name of SECRET_PARAMS) if (u.searchParams.has(name)) u.searchParams.set(name, '***');
  return { kind: 'postgres', url: v, masked: u.toString(), password, secrets: [...secrets] };
}

/** A postgres:// URL without its password or any secret-bearing parameter (for settings.json). */
export function withoutSecrets(url: string): string {
  const u = new URL(url);
  u.password = '';
  for (const name of SECRET_PARAMS) u.searchParams.delete(name);
  return u.toString();
}

/** Whether the location carries a secret that is not saved (the CLI warns). */
export function hasInlineSecret(loc: StoreLocation): boolean {
  return loc.kind === 'postgres' && loc.secrets.length > 0;
}

/** `text` with every occurrence of the location's secrets (raw or URL-encoded) replaced by ***. */
export function maskSecret(text: string, loc: StoreLocation): string {
  if (loc.kind !== 'postgres' || loc.secrets.length === 0) return text;
  let out = text;
  // Longest first, so a secret that contains another is masked whole.
  const all = new Set(loc.secrets.flatMap((s) => [s, encodeURIComponent(s), new URLSearchParams({ s }).toString().slice(2)]));
  for (const s of [...all].filter((x) => x !== '').sort((a, b) => b.length - a.length)) out = out.split(s).join('***');
  return out;
}
