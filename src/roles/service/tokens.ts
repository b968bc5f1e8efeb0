/**
 * The service's side of token enrollment (docs/token-enrollment.md): making one-time tokens
 * for allowed enrollers, and the checks run before any certificate is signed.
 *
 * Enrollment (POST /.well-known/est/simpleenroll), cheapest checks first:
 *  1. an `Authorization: Bearer <token>` header, at most MAX_TOKEN_LEN characters;
 *  2. the token parses (claims.ts) and names this service (iss) and this CA (ca_fp);
 *  3. its signature verifies with the service's HTTPS key, and it is not expired;
 *  4. its jti is known, unused and unexpired, for the identity named by sub and name, which
 *     is still pending;
 *  5. the CSR parses, its signature verifies, and it names exactly that identity;
 * then the certificate is signed and, in ONE store transaction, the token is marked used,
 * the identity enrolled and the certificate recorded. A lost race (the same token twice at
 * once) fails that transaction, and its certificate is never sent.
 *
 * Renewal (POST /.well-known/est/simplereenroll) and /whoami authenticate the client's TLS
 * certificate against the store on every request: it must be one the CA issued, unrevoked,
 * unexpired, of an enrolled identity.
 */
import { equalBytes, fromHex, toHex } from '../../crypto/bytes.js';
import { systemRandom, type RandomSource } from '../../crypto/random.js';
import { EnrollError, type ErrorCode } from '../../errors.js';
import { MAX_TOKEN_LEN, type TokenClaims } from '../../protocol/token/claims.js';
import { signToken } from '../../protocol/token/jwt.js';
import type { EnrollerRecord } from '../../store/types.js';
import {
  certificateIdentity,
  parseCertificate,
  randomSerial,
  serialHex,
  whyNotIssuedBy,
  type IssuedCertificate,
} from '../../x509/ca.js';
import { runCertJob, type CertJob, type CertResult } from '../../pool/cert-job.js';
import type { EnrollPool } from '../../pool/pool.js';
import { decodeTokenUnverified } from '../../protocol/token/claims.js';
import { UNAVAILABLE_MESSAGE } from '../../protocol/messages/common.js';
import { decodeTokenCreate, encodeTokenCreated } from '../../protocol/messages/service.js';
import type { SecureChannel } from '../../transport/channel.js';
import type { ServiceHome } from './home.js';
import type { DecisionLog } from './log.js';
import type { ServicePki } from './pki.js';
import { INIT_FORCE_DESTROYS } from './https-announce.js';
import { commitQueueFor } from './commits.js';
import { checkScope } from '../../policy/scopes.js';
import type { Attributes } from '../../protocol/codec/attributes.js';

export interface CreatedToken {
  identityId: Uint8Array;
  name: string;
  jwt: string;
  expiresAt: number;
  attributes: Attributes;
}

/** Makes a pending identity called `name` and its one-time token, valid for `ttl` seconds. */
export async function createToken(
  svc: ServiceHome,
  opts: { name: string; ttl: number; enroller: EnrollerRecord | null; now: number; random?: RandomSource; attributes?: Attributes },
): Promise<CreatedToken> {
  // The scope is checked here, on the enroller's record as the store holds it, before
  // anything is made or written, as for an approval (enrollers.ts serveApprove).
  const attributes = opts.attributes ?? {};
  if (opts.enroller !== null) checkScope(opts.enroller.scopes, attributes, opts.enroller.name ?? toHex(opts.enroller.publicKey).slice(0, 16));
  const pki = await svc.pki();
  if (!pki) {
    throw new EnrollError('ERR_REJECTED', 'this service has no CA for token enrollment', {
      hint: `on the service, \`ockam-enroll service init --force --https-address https://HOST:PORT\` makes one, but ${INIT_FORCE_DESTROYS}`,
    });
  }
  const random = opts.random ?? systemRandom;
  const identityId = random(32);
  const claims: TokenClaims = {
    iss: svc.settings.httpsAddress,
    sub: toHex(identityId),
    jti: Buffer.from(random(18)).toString('base64url'),
    iat: opts.now,
    exp: opts.now + opts.ttl,
    em: 'ott',
    ca_fp: pki.caFingerprint,
    name: opts.name,
  };
  const jwt = await signToken(claims, pki.httpsKey.keyObject, pki.tokenAlg);
  // Recorded before it leaves: every token an enroller holds is known to the service.
  await svc.tokens.createTokenIdentity({
    id: identityId,
    name: opts.name,
    enroller: opts.enroller?.publicKey ?? null,
    jti: claims.jti,
    now: opts.now,
    expiresAt: claims.exp,
    attributes,
  });
  return { identityId, name: opts.name, jwt, expiresAt: claims.exp, attributes };
}

/** The bearer token of an Authorization header (RFC 6750 §2.1), length-checked. */
export function bearerToken(header: string | undefined): string {
  const hint = 'send the token as `Authorization: Bearer <token>`';
  if (header === undefined || header.length === 0) throw new EnrollError('ERR_TOKEN_INVALID', 'the request has no Authorization header', { hint });
  if (header.length > MAX_TOKEN_LEN + 16) throw new EnrollError('ERR_TOKEN_INVALID', 'the Authorization header is too long', { hint });
  // The scheme is case-insensitive (RFC 7235 §2.1); the token is a compact JWS.
  const m = /^bearer +([A-Za-z0-9_.-]+)$/i.exec(header);
  if (!m) throw new EnrollError('ERR_TOKEN_INVALID', 'the Authorization header is not a Bearer token', { hint });
  return m[1]!;
}


/** The certificate, and its certs-only PKCS#7 as the EST body (RFC 7030 §4.2.3, base64). */
export interface IssuedForIdentity extends IssuedCertificate {
  idHex: string;
  name: string;
  /** The attributes its certificate carries. */
  attributes: Attributes;
  body: string;
}

/**
 * Runs a job of cert-job.ts: on the pool when there is one (a worker lost with it in flight
 * is ERR_UNAVAILABLE, a 503: nothing was redeemed or recorded), else in this thread.
 */
async function runCert(pki: ServicePki, pool: EnrollPool | undefined, job: Omit<CertJob, 'id' | 'kind'>): Promise<CertResult & { ok: true }> {
  let r: CertResult;
  if (pool === undefined) r = runCertJob(pki, { kind: 'cert', id: 0, ...job });
  else {
    try {
      r = await pool.issue(job);
    } catch (err) {
      if (!(err instanceof EnrollError) || err.code !== 'ERR_INTERNAL') throw err;
      // The precise reason (which worker, why) is the message, for the log; the client gets UNAVAILABLE_MESSAGE.
      throw new EnrollError('ERR_UNAVAILABLE', err.message, { hint: UNAVAILABLE_MESSAGE });
    }
  }
  if (!r.ok) throw new EnrollError(r.code as ErrorCode, r.message, r.hint !== undefined ? { hint: r.hint } : {});
  return r;
}

/**
 * Runs the enrollment checks (file comment) and issues the certificate. The checks' verdicts
 * come in the order the file comment gives; the work is split so that the main thread keeps
 * only the store: the token is decoded here (no crypto: its jti), the store read, then one
 * job (cert-job.ts, on the pool when `pool` is set) checks the token's signature and claims
 * and, only when the store found the token usable, the CSR, and makes the certificate. A
 * token the store refuses is still checked first, so that a forged one is refused as forged.
 * The redemption then goes through the commit thread, durable before the certificate is
 * returned (so sent): of two uses of one token, one commit wins and the other's certificate
 * is dropped unsent.
 */
export async function enrollWithToken(
  svc: ServiceHome,
  pki: ServicePki,
  opts: { authorization: string | undefined; csrDer: Uint8Array; now: number; random?: RandomSource; pool?: EnrollPool },
): Promise<IssuedForIdentity> {
  const jwt = bearerToken(opts.authorization);
  // The form only (claims.ts): a malformed token is refused here as verifyToken would first.
  const unverified = decodeTokenUnverified(jwt).claims;
  const token = { jwt, issuer: svc.settings.httpsAddress, now: opts.now };
  const found = await svc.tokens.getToken(unverified.jti);
  let refusal: EnrollError | undefined;
  if (!found || toHex(found.identity.id) !== unverified.sub || found.identity.name !== unverified.name) {
    refusal = new EnrollError('ERR_TOKEN_INVALID', 'the service has no such token', { hint: 'ask the enroller for a new token' });
  } else if (found.token.usedAt !== null) {
    refusal = new EnrollError('ERR_TOKEN_USED', `this one-time token was already used, at ${new Date(found.token.usedAt * 1000).toISOString()}`, {
      hint: 'a token enrolls one device once; ask the enroller for a new token',
    });
  } else if (found.token.expiresAt <= opts.now) {
    refusal = new EnrollError('ERR_TOKEN_EXPIRED', 'this token has expired', { hint: 'ask the enroller for a new token' });
  } else if (found.identity.state !== 'pending') {
    refusal = new EnrollError('ERR_ENROLLEE_REVOKED', `this identity is ${found.identity.state} and cannot enroll`);
  }
  if (refusal !== undefined || !found) {
    await runCert(pki, opts.pool, { token });
    throw refusal;
  }
  const r = await runCert(pki, opts.pool, {
    token,
    request: {
      csrDer: opts.csrDer,
      name: unverified.name,
      idHex: unverified.sub,
      now: opts.now,
      days: svc.settings.certDays,
      serial: randomSerial(opts.random),
      attributes: found.identity.attributes,
    },
  });
  const claims = r.claims!;
  const issued = r.issued!;
  // Through the commit thread's next batch (commits.ts): the WAL sync off the event loop.
  const redeem = { jti: claims.jti, enrolleeId: found.identity.id, now: opts.now, cert: issued };
  await commitQueueFor(svc.store).redeem(redeem, () => svc.tokens.redeemToken(redeem));
  return { ...issued, idHex: claims.sub, name: claims.name, attributes: found.identity.attributes, body: r.body! };
}

export interface ClientIdentity {
  idHex: string;
  name: string;
  serial: string;
  notAfter: number;
  /** The identity's attributes as the store holds them now (a renewal's certificate carries these). */
  attributes: Attributes;
}

/**
 * Authenticates a TLS client certificate: node:tls verified it against the CA
 * (`authorized`); it must also chain to the CA here, be one the store recorded for an
 * enrolled identity, byte for byte, and be neither revoked nor expired.
 */
export async function authenticateClient(
  svc: ServiceHome,
  pki: ServicePki,
  opts: { peerCertDer: Uint8Array | undefined; authorized: boolean; now: number },
): Promise<ClientIdentity> {
  if (!opts.peerCertDer || opts.peerCertDer.length === 0) {
    throw new EnrollError('ERR_CERT_REQUIRED', 'this endpoint needs a client certificate', {
      hint: 'present the certificate `enrollee join --token` stored (curl --cert … --key …)',
    });
  }
  const cert = parseCertificate(opts.peerCertDer, 'the client certificate', 'ERR_CERT_REVOKED');
  if (!opts.authorized) throw new EnrollError('ERR_CERT_REVOKED', 'the client certificate was not issued by this service\'s CA');
  const why = await whyNotIssuedBy(cert, pki.ca, opts.now);
  if (why) throw new EnrollError('ERR_CERT_REVOKED', `the client certificate is refused: ${why}`);
  const serial = serialHex(cert);
  const rec = await svc.tokens.getCertificate(serial);
  if (!rec || !equalBytes(rec.cert.der, opts.peerCertDer)) throw new EnrollError('ERR_CERT_REVOKED', 'the service has no record of this certificate');
  const named = certificateIdentity(cert);
  if (!named || named.idHex !== toHex(rec.identity.id)) throw new EnrollError('ERR_CERT_REVOKED', 'the certificate does not name its identity');
  if (rec.identity.state === 'revoked' || rec.cert.revokedAt !== null) {
    throw new EnrollError('ERR_CERT_REVOKED', `certificate ${serial} has been revoked`, { hint: 'the identity must enroll again with a new token' });
  }
  if (rec.identity.state !== 'enrolled') throw new EnrollError('ERR_CERT_REVOKED', 'the certificate\'s identity is not enrolled');
  if (rec.cert.notAfter <= opts.now) throw new EnrollError('ERR_CERT_REVOKED', `certificate ${serial} has expired`);
  return { idHex: named.idHex, name: rec.identity.name, serial, notAfter: rec.cert.notAfter, attributes: rec.identity.attributes };
}

/**
 * Renewal, for a client `authenticateClient` accepted: the CSR must name the same identity.
 * The store re-checks, in the transaction that records the new certificate, that the old one
 * is still live.
 */
export async function renewWithCertificate(
  svc: ServiceHome,
  pki: ServicePki,
  opts: { who: ClientIdentity; csrDer: Uint8Array; now: number; random?: RandomSource; pool?: EnrollPool },
): Promise<IssuedForIdentity & { previous: string }> {
  const who = opts.who;
  // The attributes of the record read as the client authenticated: a set-attr since the last
  // certificate reaches the device at this renewal (docs/policies.md). The CSR and the
  // certificate are the pool's job, as for an enrollment (no token: the client certificate
  // was authenticated against the store above).
  const r = await runCert(pki, opts.pool, {
    request: {
      csrDer: opts.csrDer,
      name: who.name,
      idHex: who.idHex,
      now: opts.now,
      days: svc.settings.certDays,
      serial: randomSerial(opts.random),
      attributes: who.attributes,
    },
  });
  const issued = r.issued!;
  await svc.tokens.recordRenewal({ enrolleeId: fromHex(who.idHex), previousSerial: who.serial, now: opts.now, cert: issued });
  return { ...issued, idHex: who.idHex, name: who.name, previous: who.serial, attributes: who.attributes, body: r.body! };
}

/** TOKEN_CREATE over an allowed enroller's channel: answers TOKEN, and logs the decision. */
export async function serveTokenCreate(
  svc: ServiceHome,
  channel: SecureChannel,
  enroller: EnrollerRecord,
  msg: Uint8Array,
  log: DecisionLog,
  now: number,
): Promise<void> {
  const req = decodeTokenCreate(msg);
  const t = await createToken(svc, { name: req.name, ttl: req.ttl, enroller, now, ...(req.attributes ? { attributes: req.attributes } : {}) });
  log('token-created', {
    enrollee: toHex(t.identityId),
    name: t.name,
    ...(Object.keys(t.attributes).length > 0 ? { attributes: t.attributes } : {}),
    enroller: toHex(enroller.publicKey),
    enroller_name: enroller.name,
    expires_at: new Date(t.expiresAt * 1000).toISOString(),
  });
  await channel.send(encodeTokenCreated({ identityId: t.identityId, expiresAt: t.expiresAt, jwt: t.jwt }));
}
