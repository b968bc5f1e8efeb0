/**
 * The CPU work of a token enrollment or a renewal (issue 23 item 5), as a pool job beside
 * the enrollment jobs (job.ts): the token's signature and claims (docs/token-enrollment.md
 * checks 2–3), the CSR's DER, key and proof of possession and its identity (check 5), the
 * certificate built from the CA's template and signed, and the certs-only PKCS#7 body
 * (RFC 7030 §4.2.3). Bytes in, bytes out: no I/O, no store. The main thread keeps the HTTP
 * and TLS, the store read (check 4), the redemption's durable commit and so the one-time
 * use of a token: a certificate made here is sent only after its jti is durably redeemed.
 *
 * Nothing secret crosses a message: a job carries the token (a bearer secret the client
 * sent, as the main thread holds it anyway; never logged), the CSR and public fields; a
 * result carries the certificate and the refusal's code, message and hint (fixed texts and
 * the request's own names). The CA key reaches a worker sealed under the store key (pool.ts).
 */
import type { KeyObject } from 'node:crypto';
import { EnrollError } from '../errors.js';
import type { Attributes } from '../protocol/codec/attributes.js';
import type { TokenAlg, TokenClaims } from '../protocol/token/claims.js';
import { verifyTokenSync } from '../protocol/token/jwt.js';
import { attributesExtension } from '../x509/attributes-ext.js';
import type { IssuedCertificate } from '../x509/ca.js';
import { buildClientCertificate, type ClientCertTemplate } from '../x509/cert-template.js';
// For the pool's workers, which load this module at their first token job (worker.ts).
export { clientCertTemplate } from '../x509/cert-template.js';
import { parseCsrDer } from '../x509/csr-der.js';
import { checkCsrIdentity } from '../x509/csr.js';
import { encodeBase64Body, encodeCertsOnlyDer } from '../x509/pkcs7.js';

/** What a worker (or the main thread, without a pool) holds for token enrollment: made once per CA and HTTPS key. */
export interface CertKeys {
  /** The CA's parts of every client certificate, with its private key (cert-template.ts). */
  clientTemplate: ClientCertTemplate;
  /** The HTTPS key's public half: it verifies every token. */
  httpsPublicKey: KeyObject;
  tokenAlg: TokenAlg;
  caFingerprint: string;
}

/** The token checks of a simpleenroll (2–3): the service's issuer and CA, at `now`. */
export interface TokenCheck {
  jwt: string;
  issuer: string;
  now: number;
}

/** The certificate to make when the checks pass. */
export interface CertRequest {
  csrDer: Uint8Array;
  name: string;
  idHex: string;
  now: number;
  days: number;
  serial: string;
  attributes?: Attributes;
}

export interface CertJob {
  kind: 'cert';
  id: number;
  /** Checked first; absent for a renewal (its client certificate was authenticated on the main thread). */
  token?: TokenCheck;
  /** Absent: the token is only checked (the store already refused it, and its verdict must not precede the token's). */
  request?: CertRequest;
}

export type CertResult =
  | { id: number; ok: true; claims?: TokenClaims; issued?: IssuedCertificate; body?: string }
  /** An EnrollError's code, message and hint: fixed texts and the request's own fields, never key material. */
  | { id: number; ok: false; code: string; message: string; hint?: string };

/**
 * The hot path of enrollment and renewal, pure (bytes and keys in, bytes out): the CSR's
 * checks (csr-der.ts: DER, key, proof of possession; then exactly this identity), and the
 * certificate built from the CA's template and signed with node:crypto (cert-template.ts).
 * The identity's attributes, if it has any, go into the attributes extension
 * (x509/attributes-ext.ts).
 */
export function certificateForRequest(pki: Pick<CertKeys, 'clientTemplate'>, o: CertRequest): IssuedCertificate {
  const csr = parseCsrDer(o.csrDer);
  checkCsrIdentity(csr, { name: o.name, idHex: o.idHex });
  const extraExtension = attributesExtension(o.attributes);
  return buildClientCertificate(pki.clientTemplate, {
    spki: csr.spki,
    name: o.name,
    idHex: o.idHex,
    now: o.now,
    days: o.days,
    serial: o.serial,
    ...(extraExtension ? { extraExtension } : {}),
  });
}

/** Checks 2–3 of a token (tokens.ts): its form, alg and issuer, signature, times, and CA. */
export function checkToken(keys: CertKeys, t: TokenCheck): TokenClaims {
  const claims = verifyTokenSync(t.jwt, keys.httpsPublicKey, { alg: keys.tokenAlg, now: t.now, issuer: t.issuer });
  if (claims.ca_fp !== keys.caFingerprint) {
    throw new EnrollError('ERR_TOKEN_INVALID', 'the token names another CA than this service\'s', { hint: 'ask the enroller for a new token' });
  }
  return claims;
}

export function runCertJob(keys: CertKeys, job: CertJob): CertResult {
  try {
    const claims = job.token === undefined ? undefined : checkToken(keys, job.token);
    if (job.request === undefined) return { id: job.id, ok: true, ...(claims ? { claims } : {}) };
    const issued = certificateForRequest(keys, job.request);
    const body = encodeBase64Body(encodeCertsOnlyDer([issued.der]));
    return { id: job.id, ok: true, ...(claims ? { claims } : {}), issued, body };
  } catch (err) {
    if (err instanceof EnrollError) return { id: job.id, ok: false, code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
    return { id: job.id, ok: false, code: 'ERR_INTERNAL', message: (err as Error)?.message ?? String(err) };
  }
}
