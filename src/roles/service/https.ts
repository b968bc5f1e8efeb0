/**
 * `service start`'s HTTPS listener for token enrollment: the EST subset of RFC 7030 and two
 * small endpoints of our own (docs/token-enrollment.md).
 *
 *   GET  /.well-known/est/cacerts         the root CA, certs-only PKCS#7, base64 (§4.1)
 *   POST /.well-known/est/simpleenroll    Bearer token + base64 PKCS#10 → certs-only (§4.2)
 *   POST /.well-known/est/simplereenroll  client certificate + PKCS#10 → certs-only (§4.2.2)
 *   GET  /crl                             the CA's CRL, DER (application/pkix-crl)
 *   GET  /revocations                     the signed list of revoked enrollees (docs/protocol.md §4.7)
 *   GET  /whoami                          client certificate → its identity, JSON
 *
 * The server asks every client for a certificate (requestCert) but lets the handshake finish
 * without one, so enrollment works before the client has any; the two certificate endpoints
 * refuse a request whose certificate node:tls did not verify against the CA, then check the
 * store (tokens.ts authenticateClient) on every request, so a revocation applies at once.
 *
 * Against floods (issue #18 findings 5 and 6, docs/threat-model.md §5.14), before any TLS or
 * route work: at most `maxConnectionsPerIp` open connections per source address (IPv6: per
 * /64; the next is destroyed on arrival), a TLS handshake that has not finished within
 * `handshakeTimeoutMs` is cut, and every request takes a token from its address's bucket
 * (`ratePerIp`); one over it gets 429 with Retry-After and costs no store access or signature.
 *
 * Every request is bounded: header size and timeouts, a body cap checked against
 * Content-Length before reading and again while reading, and content types checked before
 * any decoding. Refusals are JSON `{"error": CODE, "message": …, "hint": …}` with a 4xx
 * status; internal failures are an opaque 500, with the precise reason in the decision log.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { EnrollError, isErrorCode } from '../../errors.js';
import { UNAVAILABLE_MESSAGE } from '../../protocol/messages/common.js';
import {
  CRL_PATH,
  CT_CRL,
  CT_PKCS10,
  CT_PKCS7,
  CT_PKCS7_CERTS_ONLY,
  EST_CACERTS,
  EST_SIMPLEENROLL,
  EST_SIMPLEREENROLL,
  REVOCATIONS_PATH,
  WHOAMI_PATH,
} from '../../protocol/token/est.js';
import { CT_REVOCATIONS } from '../../protocol/revocations.js';
import { RevocationListCache } from '../../revocation/issue.js';
import { buildCrl, DEFAULT_CRL_VALIDITY_SECONDS } from '../../x509/crl.js';
import { MAX_CSR_DER } from '../../x509/csr.js';
import { decodeBase64Body, encodeBase64Body, encodeCertsOnlyDer } from '../../x509/pkcs7.js';
import type { ServiceHome } from './home.js';
import type { DecisionLog } from './log.js';
import { recheckHttpsAddress, settleHttpsAddress, type HttpsAddressCheck, type SettledHttpsAddress } from './https-announce.js';
import { poolPki, type ServicePki } from './pki.js';
import type { EnrollPool } from '../../pool/pool.js';
import { authenticateClient, enrollWithToken, renewWithCertificate } from './tokens.js';
import { DEFAULT_RATE_PER_IP, LimitLog, parseRate, peerIpKey, TokenBuckets, type RateSpec } from './limits.js';

/** Base64 of a 4 KiB CSR with line breaks fits well within 8 KiB. */
export const MAX_BODY_BYTES = 8192;
export const DEFAULT_HTTPS_MAX_CONNECTIONS = 1024;
/**
 * Open connections per source address (IPv6: per /64). A device needs one; a NAT in front of
 * a fleet may hold a few dozen. 1,100 idle connections from one address used to starve
 * every other client for about 10 s (issue #18 finding 6).
 */
export const DEFAULT_HTTPS_MAX_CONNECTIONS_PER_IP = 32;
/** A TLS handshake takes one or two round trips; a peer that has not finished in 5 s is cut (was 10 s). */
export const DEFAULT_HTTPS_HANDSHAKE_TIMEOUT_MS = 5000;
/** HTTPS requests per source address, as the enrollment listener's --rate-per-ip default. */
export const DEFAULT_HTTPS_RATE_PER_IP = DEFAULT_RATE_PER_IP;

export interface HttpsServerOptions {
  host: string;
  port: number;
  log: DecisionLog;
  maxConnections?: number;
  /** Open connections per source address (IPv6: /64); default DEFAULT_HTTPS_MAX_CONNECTIONS_PER_IP. */
  maxConnectionsPerIp?: number;
  /** Requests per source address (IPv6: /64); null for no limit; default DEFAULT_HTTPS_RATE_PER_IP. */
  ratePerIp?: RateSpec | null;
  /** Cut a TLS handshake not finished after this long; default DEFAULT_HTTPS_HANDSHAKE_TIMEOUT_MS. */
  handshakeTimeoutMs?: number;
  /** Per-request timeout (headers and body), against slow clients. */
  requestTimeoutMs?: number;
  /** --https-address-check (https-announce.ts); default refuse on SQLite, warn on PostgreSQL. */
  addressCheck?: HttpsAddressCheck;
  /** The freshness window of the served revocation list (revocation/issue.ts), seconds. */
  revocationsValidity?: number;
  /** The service's worker pool: the token and renewal CPU work runs there (src/pool/cert-job.ts); without it, in this thread. */
  pool?: EnrollPool;
  now?: () => number;
}

export interface RunningHttpsServer {
  server: Server;
  address(): { host: string; port: number };
  /** The address tokens carry, settled against the bound listener (https-announce.ts). */
  announced: SettledHttpsAddress;
  close(): Promise<void>;
  /**
   * A graceful stop (SIGTERM, as the TCP listener's drain): stops accepting at once, lets
   * the requests in flight finish (their answers written, a redemption's commit durable) for
   * at most `timeoutMs`, then closes every connection.
   */
  drain(timeoutMs: number): Promise<void>;
}

interface Reply {
  status: number;
  type: string;
  body: string | Uint8Array;
  headers?: Record<string, string>;
}

/** HTTP status for each refusal code; anything else is a 500. */
const STATUS: Partial<Record<string, number>> = {
  ERR_TOKEN_INVALID: 401,
  ERR_TOKEN_SIGNATURE: 401,
  ERR_TOKEN_EXPIRED: 401,
  ERR_TOKEN_USED: 401,
  ERR_CERT_REQUIRED: 401,
  ERR_CERT_REVOKED: 403,
  ERR_CSR_IDENTITY: 403,
  ERR_ENROLLEE_REVOKED: 403,
  ERR_CSR_INVALID: 400,
};

function jsonReply(status: number, value: Record<string, unknown>, headers?: Record<string, string>): Reply {
  return { status, type: 'application/json', body: `${JSON.stringify(value)}\n`, ...(headers ? { headers } : {}) };
}

function errorReply(err: EnrollError, status = STATUS[err.code] ?? 500): Reply {
  // The store failed, or the pool worker running the request was lost: nothing was recorded.
  if (err.code === 'ERR_STORE' || err.code === 'ERR_UNAVAILABLE') return unavailableReply();
  const headers: Record<string, string> = {};
  // RFC 6750 §3: a refused bearer token is announced in WWW-Authenticate.
  if (status === 401 && err.code.startsWith('ERR_TOKEN_')) headers['WWW-Authenticate'] = 'Bearer error="invalid_token"';
  return jsonReply(status, { error: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) }, headers);
}

/**
 * The store failed (unreachable, restarting): nothing was redeemed or issued and the client
 * may retry (RFC 9110 §15.6.4); the store's own message (its host) stays in the log.
 */
function unavailableReply(): Reply {
  return jsonReply(503, { error: 'ERR_UNAVAILABLE', message: UNAVAILABLE_MESSAGE }, { 'Retry-After': '1' });
}

function httpError(status: number, message: string, hint?: string): Reply {
  return jsonReply(status, { error: 'ERR_HTTP', message, ...(hint ? { hint } : {}) });
}

/** The media type of a Content-Type header, lowercased, without parameters. */
function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Reads a request body of at most `max` bytes; undefined when it is larger. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      total += chunk.length;
      if (total > max) {
        done = true;
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks));
    });
    // A client that goes away mid-body (or is cut off by requestTimeout) never sends 'end'.
    req.on('close', () => {
      if (done) return;
      done = true;
      reject(new EnrollError('ERR_CONNECTION_CLOSED', 'the client closed the connection before the request body ended'));
    });
    req.on('error', (err) => {
      if (done) return;
      done = true;
      reject(new EnrollError('ERR_CONNECTION_CLOSED', `the request body could not be read: ${err.message}`, { cause: err }));
    });
  });
}

function peerCertificate(req: IncomingMessage): { der: Uint8Array | undefined; authorized: boolean } {
  const socket = req.socket as TLSSocket;
  const cert = socket.getPeerCertificate?.();
  const der = cert && cert.raw ? new Uint8Array(cert.raw) : undefined;
  return { der, authorized: socket.authorized === true };
}

function peerOf(req: IncomingMessage): string | undefined {
  const s = req.socket;
  return s.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : undefined;
}

function isoSeconds(s: number): string {
  return new Date(s * 1000).toISOString();
}

export async function startHttpsServer(svc: ServiceHome, pki: ServicePki, opts: HttpsServerOptions): Promise<RunningHttpsServer> {
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  const log = opts.log;
  const cacertsBody = encodeBase64Body(encodeCertsOnlyDer([pki.caDer]));
  // The CA key reaches the pool's workers once, here, sealed (pki.ts poolPki).
  const pool = opts.pool;
  pool?.setPki(poolPki(svc.keystore, pki), pki);

  /** Reads and decodes a base64 PKCS#10 body, after the method's cheap checks. */
  async function csrBody(req: IncomingMessage): Promise<Uint8Array | Reply> {
    if (mediaType(req.headers['content-type']) !== CT_PKCS10) {
      return httpError(415, `the request's Content-Type must be ${CT_PKCS10}`, 'send the CSR as base64 DER with Content-Type: application/pkcs10');
    }
    const declared = req.headers['content-length'];
    const tooLarge = (): Reply => ({ ...httpError(413, `the request body must be at most ${MAX_BODY_BYTES} bytes`), headers: { Connection: 'close' } });
    if (declared !== undefined && (!/^\d{1,9}$/.test(declared) || Number(declared) > MAX_BODY_BYTES)) return tooLarge();
    const body = await readBody(req, MAX_BODY_BYTES);
    if (body === undefined) return tooLarge();
    return decodeBase64Body(body.toString('latin1'), MAX_CSR_DER, 'ERR_CSR_INVALID', 'the certificate request body');
  }

  /**
   * The CRL, built when the revocation set changes (or when half of its validity has passed)
   * and served from memory otherwise (issue #18 finding 5): an unauthenticated GET used to
   * sign a new CRL and make a durable write (the CRL number) on the main thread per request.
   * The set is read from the store each time, so a revocation made on another replica shows
   * at once; concurrent requests share one build.
   */
  let crlCache: { key: string; builtAt: number; der: Uint8Array } | undefined;
  let crlBuilding: Promise<Uint8Array> | undefined;
  async function currentCrl(): Promise<Uint8Array> {
    const t = now();
    const entries = await svc.tokens.revokedCertificates(t);
    const key = JSON.stringify(entries);
    if (crlCache && crlCache.key === key && t - crlCache.builtAt < DEFAULT_CRL_VALIDITY_SECONDS / 2) return crlCache.der;
    crlBuilding ??= (async () => {
      try {
        const der = await buildCrl({ ca: pki.ca, caKey: pki.caKey, entries, now: t, crlNumber: await svc.tokens.nextCrlNumber() });
        crlCache = { key, builtAt: t, der };
        return der;
      } finally {
        crlBuilding = undefined;
      }
    })();
    return crlBuilding;
  }

  // Issue #18 finding 2: anyone may fetch the list (it is public and signed); it is served
  // from memory, so a request costs at most one store read a second and no signature.
  const revocations = new RevocationListCache(svc, { now, ...(opts.revocationsValidity ? { validity: opts.revocationsValidity } : {}) });

  async function route(req: IncomingMessage): Promise<Reply> {
    const url = req.url ?? '';
    if (url.length > 256) return httpError(414, 'the request URL is too long');
    const path = url.split('?')[0]!;
    const method = req.method ?? '';
    const allow = (m: string): Reply | undefined =>
      method === m || (m === 'GET' && method === 'HEAD') ? undefined : { ...httpError(405, `${path} accepts ${m} only`), headers: { Allow: m } };

    switch (path) {
      case EST_CACERTS:
        return allow('GET') ?? { status: 200, type: CT_PKCS7, body: cacertsBody, headers: { 'Content-Transfer-Encoding': 'base64' } };

      case CRL_PATH: {
        const refused = allow('GET');
        if (refused) return refused;
        return { status: 200, type: CT_CRL, body: await currentCrl() };
      }

      case REVOCATIONS_PATH: {
        const refused = allow('GET');
        if (refused) return refused;
        const list = await revocations.current();
        return { status: 200, type: CT_REVOCATIONS, body: list.bytes, headers: { Expires: new Date(list.nextUpdate * 1000).toUTCString() } };
      }

      case EST_SIMPLEENROLL: {
        const refused = allow('POST');
        if (refused) return refused;
        const peer = peerOf(req);
        try {
          // The token is checked before the body is read: no token, no parsing.
          const authorization = req.headers.authorization;
          if (authorization === undefined) throw new EnrollError('ERR_TOKEN_INVALID', 'the request has no Authorization header', { hint: 'send the token as `Authorization: Bearer <token>`' });
          const csrDer = await csrBody(req);
          if (!(csrDer instanceof Uint8Array)) {
            log('cert-refused', { peer, reason: `HTTP ${csrDer.status}: bad request body` });
            return csrDer;
          }
          const issued = await enrollWithToken(svc, pki, { authorization, csrDer, now: now(), ...(pool ? { pool } : {}) });
          log('cert-issued', { enrollee: issued.idHex, name: issued.name, ...attributesField(issued.attributes), serial: issued.serial, not_after: isoSeconds(issued.notAfter), peer });
          return { status: 200, type: CT_PKCS7_CERTS_ONLY, body: issued.body, headers: { 'Content-Transfer-Encoding': 'base64' } };
        } catch (err) {
          if (!(err instanceof EnrollError)) throw err;
          log('cert-refused', { peer, reason: `${err.code}: ${err.message}` });
          return errorReply(err);
        }
      }

      case EST_SIMPLEREENROLL: {
        const refused = allow('POST');
        if (refused) return refused;
        const peer = peerOf(req);
        try {
          const { der, authorized } = peerCertificate(req);
          // Authenticate before reading the body.
          const who = await authenticateClient(svc, pki, { peerCertDer: der, authorized, now: now() });
          const csrDer = await csrBody(req);
          if (!(csrDer instanceof Uint8Array)) {
            log('renew-refused', { peer, enrollee: who.idHex, reason: `HTTP ${csrDer.status}: bad request body` });
            return csrDer;
          }
          const issued = await renewWithCertificate(svc, pki, { who, csrDer, now: now(), ...(pool ? { pool } : {}) });
          log('cert-renewed', { enrollee: issued.idHex, name: issued.name, ...attributesField(issued.attributes), serial: issued.serial, previous: issued.previous, not_after: isoSeconds(issued.notAfter), peer });
          return { status: 200, type: CT_PKCS7_CERTS_ONLY, body: issued.body, headers: { 'Content-Transfer-Encoding': 'base64' } };
        } catch (err) {
          if (!(err instanceof EnrollError)) throw err;
          log('renew-refused', { peer, reason: `${err.code}: ${err.message}` });
          return errorReply(err);
        }
      }

      case WHOAMI_PATH: {
        const refused = allow('GET');
        if (refused) return refused;
        const { der, authorized } = peerCertificate(req);
        try {
          const who = await authenticateClient(svc, pki, { peerCertDer: der, authorized, now: now() });
          return jsonReply(200, { id: who.idHex, name: who.name, serial: who.serial, not_after: isoSeconds(who.notAfter), method: 'token', attributes: who.attributes });
        } catch (err) {
          if (!(err instanceof EnrollError)) throw err;
          log('whoami-refused', { peer: peerOf(req), reason: `${err.code}: ${err.message}` });
          return errorReply(err);
        }
      }

      default:
        return httpError(404, `no such endpoint: ${JSON.stringify(path.slice(0, 64))}`);
    }
  }

  // Issue #18 findings 5 and 6: per-address limits, checked before any route work.
  const limitLog = new LimitLog(log);
  const ratePerIp = opts.ratePerIp === undefined ? parseRate(DEFAULT_HTTPS_RATE_PER_IP, '--https-rate-per-ip') : opts.ratePerIp;
  const requestBuckets = ratePerIp ? new TokenBuckets(ratePerIp) : undefined;
  const maxPerIp = opts.maxConnectionsPerIp ?? DEFAULT_HTTPS_MAX_CONNECTIONS_PER_IP;
  const openPerIp = new Map<string, number>();

  function rateLimited(req: IncomingMessage): Reply | undefined {
    if (!requestBuckets) return undefined;
    const wait = requestBuckets.take(peerIpKey(req.socket.remoteAddress));
    if (wait === 0) return undefined;
    limitLog.limited('https-rate-per-ip', { peer: peerOf(req), limit_value: requestBuckets.spec.text });
    const seconds = String(Math.max(1, Math.ceil(wait / 1000)));
    // RFC 6585 §4: 429 Too Many Requests, with how long to wait.
    return jsonReply(
      429,
      { error: 'ERR_RATE_LIMITED', message: `too many requests from this address (limit ${requestBuckets.spec.text})`, hint: `wait ${seconds} s and try again` },
      { 'Retry-After': seconds },
    );
  }

  /** A raw TCP connection, before TLS: refused when its address already holds maxPerIp. */
  function admit(socket: Socket): void {
    const key = peerIpKey(socket.remoteAddress);
    const open = openPerIp.get(key) ?? 0;
    if (open >= maxPerIp) {
      limitLog.limited('https-connections-per-ip', { peer: socket.remoteAddress, limit_value: maxPerIp });
      socket.destroy();
      return;
    }
    openPerIp.set(key, open + 1);
    socket.once('close', () => {
      const n = (openPerIp.get(key) ?? 1) - 1;
      if (n <= 0) openPerIp.delete(key);
      else openPerIp.set(key, n);
    });
  }

  function send(req: IncomingMessage, res: ServerResponse, reply: Reply): void {
    const body = typeof reply.body === 'string' ? Buffer.from(reply.body, 'utf8') : Buffer.from(reply.body);
    res.writeHead(reply.status, {
      'Content-Type': reply.type,
      'Content-Length': String(body.length),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      ...(reply.headers ?? {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  const keyPem = pki.httpsKey.keyObject.export({ type: 'pkcs8', format: 'pem' }) as string;
  /** Requests whose response has not closed yet, and who waits for there to be none (drain). */
  let inFlight = 0;
  let draining = false;
  const idle: (() => void)[] = [];
  const server = createServer(
    {
      key: keyPem,
      cert: pki.httpsPem,
      ca: [pki.caPem],
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      handshakeTimeout: opts.handshakeTimeoutMs ?? DEFAULT_HTTPS_HANDSHAKE_TIMEOUT_MS,
      maxHeaderSize: 8192,
      requestTimeout: opts.requestTimeoutMs ?? 15_000,
      headersTimeout: Math.min(opts.requestTimeoutMs ?? 15_000, 10_000),
      keepAliveTimeout: 5_000,
    },
    (req, res) => {
      inFlight++;
      // A request that arrives on a kept-alive connection while draining is still answered;
      // the answer tells the client to close, and no new connection is accepted.
      if (draining) res.setHeader('Connection', 'close');
      res.once('close', () => {
        inFlight--;
        if (inFlight === 0) for (const w of idle.splice(0)) w();
      });
      const limited = rateLimited(req);
      if (limited) {
        send(req, res, limited);
        return;
      }
      route(req)
        .then((reply) => send(req, res, reply))
        .catch((err: unknown) => {
          const e = err instanceof EnrollError ? `${err.code}: ${err.message}` : `internal: ${(err as Error)?.message ?? String(err)}`;
          log('error', { peer: peerOf(req), reason: e, path: (req.url ?? '').slice(0, 64) });
          if (!res.headersSent) {
            const known = err instanceof EnrollError && isErrorCode(err.code) && STATUS[err.code] !== undefined;
            // The store failed (unreachable, restarting): nothing was redeemed or issued, and
            // the client may retry; the store's own message (its host) stays in the log.
            const unavailable = err instanceof EnrollError && err.code === 'ERR_STORE';
            send(
              req,
              res,
              unavailable
                ? jsonReply(503, { error: 'ERR_STORE', message: 'the service cannot reach its store; nothing was recorded, retry later' }, { 'Retry-After': '1' })
                : known
                  ? errorReply(err as EnrollError)
                  : jsonReply(500, { error: 'ERR_INTERNAL', message: 'the service failed to answer this request' }),
            );
          } else res.destroy();
        });
    },
  );
  server.maxConnections = opts.maxConnections ?? DEFAULT_HTTPS_MAX_CONNECTIONS;
  // 'connection' is the raw socket, before the TLS handshake: a refused one costs no crypto.
  // Prepended, so that it runs before the TLS listener starts reading from the socket.
  server.prependListener('connection', admit);
  // A failed TLS handshake (a scanner, a client that does not trust the CA) is not a decision.
  server.on('tlsClientError', () => undefined);

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new EnrollError('ERR_LISTEN', `cannot listen for HTTPS on ${opts.host}:${opts.port}: ${err.code ?? err.message}`, {
          cause: err,
          hint: err.code === 'EADDRINUSE' ? 'another process holds that port: choose another --https-listen' : 'check --https-listen',
        }),
      );
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = () => {
    const a = server.address();
    return typeof a === 'object' && a ? { host: a.address, port: a.port } : { host: opts.host, port: opts.port };
  };
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  // Tokens must lead devices here: the address follows the bound port, or is refused when a
  // device could certainly not reach this listener through it (https-announce.ts).
  let announced: SettledHttpsAddress;
  try {
    announced = await settleHttpsAddress(svc, pki, address(), opts.addressCheck ? { check: opts.addressCheck } : {});
  } catch (err) {
    await close();
    throw err;
  }
  const stopRecheck = announced.recheck
    ? recheckHttpsAddress(svc, pki, () => log('https-address-served', { https_address: svc.settings.httpsAddress }))
    : () => undefined;
  log('https-listening', {
    address: `${address().host}:${address().port}`,
    https_address: svc.settings.httpsAddress,
    ...(announced.followed ? { https_address_from: 'listen' } : {}),
    ca_fp: pki.caFingerprint,
  });
  return {
    server,
    address,
    announced,
    close: () => {
      stopRecheck();
      return close();
    },
    drain: async (timeoutMs: number) => {
      stopRecheck();
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((resolve) => idle.push(resolve)), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
        clearTimeout(timer);
      }
      server.closeAllConnections();
      await closed;
    },
  };
}

/** The attributes a certificate carries, as a log field (left out when there are none, as in the `approved` entry). */
function attributesField(a: Readonly<Record<string, string>>): { attributes?: Readonly<Record<string, string>> } {
  return Object.keys(a).length > 0 ? { attributes: a } : {};
}
