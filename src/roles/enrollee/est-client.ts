/**
 * The enrollee's HTTPS client for token enrollment: reading the service's certificate before
 * anything is trusted, and EST requests afterwards, trusting only the service's CA.
 *
 * Trust is bootstrapped in this order (docs/token-enrollment.md):
 * 1. `fetchServerCertificate`: a TLS handshake to the token's iss with verification off, only
 *    to read the leaf certificate whose key must verify the token;
 * 2. `httpsRequest` with `{ pinnedLeaf }`: GET cacerts from the server presenting that same
 *    leaf (nothing secret is sent on such a connection);
 * 3. once the CA matches the token's ca_fp, `httpsRequest` with `{ ca }`: full verification
 *    against that CA alone, host name included, for every request that carries a secret.
 *
 * Every response is capped in size and time; errors map to EnrollError codes.
 */
import { request } from 'node:https';
import { connect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { equalBytes } from '../../crypto/bytes.js';
import { EnrollError, type ErrorCode } from '../../errors.js';
import { unavailableError } from '../../protocol/messages/common.js';

export interface HttpsTarget {
  host: string;
  port: number;
  /** https://HOST:PORT, for messages. */
  url: string;
}

export const DEFAULT_HTTPS_TIMEOUT_MS = 15_000;
/** Our largest response (a certs-only body with one certificate) is about 1 KiB. */
export const MAX_RESPONSE_BYTES = 64 * 1024;

/** Codes a service's JSON refusal may carry through to the user; others become ERR_HTTP. */
const SERVICE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'ERR_TOKEN_INVALID',
  'ERR_TOKEN_EXPIRED',
  'ERR_TOKEN_USED',
  'ERR_TOKEN_SIGNATURE',
  'ERR_CSR_INVALID',
  'ERR_CSR_IDENTITY',
  'ERR_CERT_REQUIRED',
  'ERR_CERT_REVOKED',
  'ERR_ENROLLEE_REVOKED',
  'ERR_RATE_LIMITED',
  'ERR_HTTP',
]);

const TLS_TRUST_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Printable ASCII only, cut short: service text must not rewrite the user's terminal. */
export function cleanText(s: unknown, max = 300): string {
  const t = String(s ?? '').replace(/[^\x20-\x7e]/g, '?');
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

function networkError(err: NodeJS.ErrnoException, target: HttpsTarget): EnrollError {
  const code = err.code ?? '';
  if (TLS_TRUST_ERRORS.has(code)) {
    return new EnrollError('ERR_CA_MISMATCH', `the service at ${target.url} presented a certificate its CA does not vouch for (${code})`, {
      cause: err,
      hint: 'the service may have been re-initialised, or something else answers at this address',
    });
  }
  if (code === 'ETIMEDOUT' || code === 'ERR_TIMEOUT') {
    return new EnrollError('ERR_TIMEOUT', `the service at ${target.url} did not answer in time`, { cause: err });
  }
  return new EnrollError('ERR_UNREACHABLE', `cannot reach the service at ${target.url}: ${cleanText(code || err.message, 80)}`, {
    cause: err,
    hint: 'check the service is running (`ockam-enroll service start`) and its HTTPS port is reachable',
  });
}

function servername(host: string): string | undefined {
  // SNI carries DNS names only (RFC 6066 §3).
  return isIP(host) ? undefined : host;
}

/**
 * The leaf certificate (DER) the server at `target` presents. Verification is off: the
 * certificate is not trusted for anything but checking the token's signature with its key.
 */
export function fetchServerCertificate(target: HttpsTarget, timeoutMs = DEFAULT_HTTPS_TIMEOUT_MS): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sni = servername(target.host);
    const socket: TLSSocket = connect({
      host: target.host,
      port: target.port,
      ...(sni ? { servername: sni } : {}),
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new EnrollError('ERR_TIMEOUT', `the service at ${target.url} did not complete a TLS handshake in time`));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const cert: PeerCertificate | undefined = socket.getPeerCertificate();
      socket.end();
      if (!cert || !cert.raw || cert.raw.length === 0) {
        reject(new EnrollError('ERR_CA_MISMATCH', `the service at ${target.url} presented no certificate`));
        return;
      }
      resolve(new Uint8Array(cert.raw));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(networkError(err, target));
    });
  });
}

export type Trust = { ca: string } | { pinnedLeaf: Uint8Array };

export interface HttpsRequestOptions {
  method: 'GET' | 'POST';
  path: string;
  trust: Trust;
  headers?: Record<string, string>;
  body?: string;
  /** A client certificate and key for mutual TLS (PEM certificate, private key). */
  client?: { cert: string; key: KeyObject };
  maxBytes?: number;
  timeoutMs?: number;
}

export interface HttpsResponse {
  status: number;
  /** The media type, lowercased, without parameters; and the full header. */
  mediaType: string;
  contentType: string;
  body: Buffer;
}

export function httpsRequest(target: HttpsTarget, opts: HttpsRequestOptions): Promise<HttpsResponse> {
  const maxBytes = opts.maxBytes ?? MAX_RESPONSE_BYTES;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_HTTPS_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: EnrollError) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(e);
    };
    const sni = servername(target.host);
    const body = opts.body === undefined ? undefined : Buffer.from(opts.body, 'utf8');
    const req = request({
      host: target.host,
      port: target.port,
      method: opts.method,
      path: opts.path,
      ...(sni ? { servername: sni } : {}),
      agent: false,
      minVersion: 'TLSv1.2',
      headers: { ...(opts.headers ?? {}), ...(body ? { 'Content-Length': String(body.length) } : {}) },
      ...('ca' in opts.trust ? { ca: [opts.trust.ca], rejectUnauthorized: true } : { rejectUnauthorized: false }),
      ...(opts.client ? { cert: opts.client.cert, key: opts.client.key.export({ type: 'pkcs8', format: 'pem' }) as string } : {}),
      timeout: timeoutMs,
    });
    req.on('timeout', () => fail(new EnrollError('ERR_TIMEOUT', `the service at ${target.url} did not answer ${opts.path} in time`)));
    req.on('error', (err: NodeJS.ErrnoException) => fail(err instanceof EnrollError ? err : networkError(err, target)));
    req.on('response', (res) => {
      if ('pinnedLeaf' in opts.trust) {
        const cert = (res.socket as TLSSocket).getPeerCertificate();
        if (!cert?.raw || !equalBytes(new Uint8Array(cert.raw), opts.trust.pinnedLeaf)) {
          fail(new EnrollError('ERR_CA_MISMATCH', `the service at ${target.url} presented a different certificate from one connection to the next`));
          return;
        }
      }
      const declared = res.headers['content-length'];
      if (declared !== undefined && Number(declared) > maxBytes) {
        fail(new EnrollError('ERR_HTTP', `the service's answer to ${opts.path} is larger than ${maxBytes} bytes`));
        return;
      }
      const chunks: Buffer[] = [];
      let total = 0;
      res.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > maxBytes) {
          fail(new EnrollError('ERR_HTTP', `the service's answer to ${opts.path} is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        const contentType = String(res.headers['content-type'] ?? '');
        resolve({
          status: res.statusCode ?? 0,
          contentType,
          mediaType: contentType.split(';')[0]!.trim().toLowerCase(),
          body: Buffer.concat(chunks),
        });
      });
      res.on('error', (err: NodeJS.ErrnoException) => fail(networkError(err, target)));
    });
    req.end(body);
  });
}

/**
 * The EnrollError for a non-2xx answer: the service's own code when its JSON body names one
 * a service may send, else ERR_HTTP with the status.
 */
export function serviceError(res: HttpsResponse, what: string): EnrollError {
  // 503: the service cannot reach its store (RFC 9110 §15.6.4), in the client's own words.
  if (res.status === 503) return unavailableError();
  if (res.mediaType === 'application/json' && res.body.length <= 8192) {
    try {
      const j = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
      if (typeof j.error === 'string' && SERVICE_CODES.has(j.error as ErrorCode)) {
        return new EnrollError(j.error as ErrorCode, `the service refused ${what}: ${cleanText(j.message)}`, typeof j.hint === 'string' ? { hint: cleanText(j.hint) } : {});
      }
    } catch {
      // fall through to the generic error
    }
  }
  return new EnrollError('ERR_HTTP', `the service answered ${what} with HTTP ${res.status}`, {
    hint: 'check the token names the right service, and see the service\'s log',
  });
}
