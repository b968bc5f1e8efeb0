/**
 * The verifier's side of the signed revocation list (docs/protocol.md §4.7): reads one from
 * a file or fetches it from a URL (the service's `GET /revocations`), bounded in size and
 * time, then decodes and verifies it (protocol/revocations.ts).
 *
 * The fetch does not authenticate the server: the list authenticates itself (IK_A's
 * signature, its issuer and its freshness are checked after the read), as a CRL does over
 * plain HTTP (RFC 5280 §4.2.1.13), and the service's HTTPS certificate chains to a CA that
 * a verifier holding only the service key does not know. A network attacker can withhold
 * the list (the verifier then fails: no list, no verdict) or replay an older one that is
 * still fresh: the freshness window bounds that (docs/threat-model.md §5.13).
 */
import { readFileSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { EnrollError } from '../errors.js';
import { CT_REVOCATIONS, decodeRevocationList, REVOCATIONS_MAX_LEN, verifyRevocationList, type RevocationList } from '../protocol/revocations.js';

export const REVOCATIONS_FETCH_TIMEOUT_MS = 10_000;

export interface LoadedRevocationList {
  list: RevocationList;
  /** The file or URL it came from, for the output. */
  source: string;
}

function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

function readListFile(path: string): Uint8Array {
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new EnrollError('ERR_USAGE', `--revocations ${path} is not a file`);
    // Checked before reading: a list can be at most REVOCATIONS_MAX_LEN bytes.
    if (st.size > REVOCATIONS_MAX_LEN) throw new EnrollError('ERR_REVOCATIONS_MALFORMED', `revocation list: ${path} holds ${st.size} bytes, at most ${REVOCATIONS_MAX_LEN}`);
    return new Uint8Array(readFileSync(path));
  } catch (cause) {
    if (cause instanceof EnrollError) throw cause;
    throw new EnrollError('ERR_USAGE', `cannot read the revocation list from ${path}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, {
      hint: 'write one with `ockam-enroll service revocations --out FILE`, or pass the service\'s https://HOST:PORT/revocations',
    });
  }
}

function fetchList(url: URL, timeoutMs: number): Promise<Uint8Array> {
  const fail = (message: string, cause?: unknown) =>
    new EnrollError('ERR_REVOCATIONS_FETCH', `cannot fetch the revocation list from ${url.origin}${url.pathname}: ${message}`, {
      ...(cause !== undefined ? { cause } : {}),
      hint: 'check the URL (the service\'s https://HOST:PORT/revocations) and that the service is running, or pass a file from `service revocations --out`',
    });
  return new Promise((resolve, reject) => {
    const options = { method: 'GET', headers: { Accept: CT_REVOCATIONS }, timeout: timeoutMs };
    // See the module comment: the list's signature authenticates it, not the TLS certificate.
    const req = url.protocol === 'https:' ? httpsRequest(url, { ...options, rejectUnauthorized: false }) : httpRequest(url, options);
    const timer = setTimeout(() => req.destroy(fail(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    req.on('timeout', () => req.destroy(fail(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err instanceof EnrollError ? err : fail((err as NodeJS.ErrnoException).code ?? err.message, err));
    });
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        clearTimeout(timer);
        res.resume();
        reject(fail(`HTTP ${res.statusCode}`));
        return;
      }
      const declared = res.headers['content-length'];
      if (declared !== undefined && !(Number(declared) <= REVOCATIONS_MAX_LEN)) {
        clearTimeout(timer);
        res.destroy();
        reject(new EnrollError('ERR_REVOCATIONS_MALFORMED', `revocation list: the answer declares ${declared.slice(0, 20)} bytes, at most ${REVOCATIONS_MAX_LEN}`));
        return;
      }
      const chunks: Buffer[] = [];
      let total = 0;
      res.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > REVOCATIONS_MAX_LEN) {
          clearTimeout(timer);
          res.destroy();
          reject(new EnrollError('ERR_REVOCATIONS_MALFORMED', `revocation list: the answer is over ${REVOCATIONS_MAX_LEN} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve(new Uint8Array(Buffer.concat(chunks)));
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(fail(err.message, err));
      });
    });
    req.end();
  });
}

/** Reads (FILE) or fetches (http(s) URL) a list, decodes it and verifies it against `issuer` at `now`. */
export async function loadRevocationList(source: string, opts: { issuer: Uint8Array; now: number; timeoutMs?: number }): Promise<LoadedRevocationList> {
  if (typeof source !== 'string' || source.length === 0 || source.length > 2048) throw new EnrollError('ERR_USAGE', '--revocations needs a FILE or an https:// URL');
  let bytes: Uint8Array;
  let shown = source;
  if (isUrl(source)) {
    let url: URL;
    try {
      url = new URL(source);
    } catch {
      throw new EnrollError('ERR_USAGE', `--revocations ${JSON.stringify(source.slice(0, 80))} is not a URL`);
    }
    // Userinfo is never sent nor shown.
    if (url.username || url.password) throw new EnrollError('ERR_USAGE', '--revocations: a URL with a user or password is not supported');
    shown = `${url.origin}${url.pathname}`;
    bytes = await fetchList(url, opts.timeoutMs ?? REVOCATIONS_FETCH_TIMEOUT_MS);
  } else {
    bytes = readListFile(source.startsWith('@') ? source.slice(1) : source);
  }
  const list = verifyRevocationList(decodeRevocationList(bytes), { issuer: opts.issuer, now: opts.now });
  return { list, source: shown };
}
