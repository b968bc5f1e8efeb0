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
import { createPublicKey, type KeyObject } from 'node:crypto';
import { equalBytes, fromHex, toHex } from '../../crypto/bytes.js';
import { systemRandom, type RandomSource } from '../../crypto/random.js';
import { EnrollError } from '../../errors.js';
import { MAX_TOKEN_LEN, type TokenClaims } from '../../protocol/token/claims.js';
import { signToken, verifyToken } from '../../protocol/token/jwt.js';
import type { EnrollerRecord } from '../../store/types.js';
import {
  certificateIdentity,
  issueClientCertificate,
  parseCertificate,
  randomSerial,
  serialHex,
  whyNotIssuedBy,
  type IssuedCertificate,
} from '../../x509/ca.js';
import { checkCsrIdentity, parseCsr } from '../../x509/csr.js';
import { decodeTokenCreate, encodeTokenCreated } from '../../protocol/messages/service.js';
import type { SecureChannel } from '../../transport/channel.js';
import type { ServiceHome } from './home.js';
import type { DecisionLog } from './log.js';
import type { ServicePki } from './pki.js';
import { INIT_FORCE_DESTROYS } from './https-announce.js';

export interface CreatedToken {
  identityId: Uint8Array;
  name: string;
  jwt: string;
  expiresAt: number;
}

/** Makes a pending identity called `name` and its one-time token, valid for `ttl` seconds. */
export async function createToken(
  svc: ServiceHome,
  opts: { name: string; ttl: number; enroller: EnrollerRecord | null; now: number; random?: RandomSource },
): Promise<CreatedToken> {
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
  });
  return { identityId, name: opts.name, jwt, expiresAt: claims.exp };
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

function publicKeyOf(pki: ServicePki): KeyObject {
  return createPublicKey(pki.httpsKey.keyObject);
}

export interface IssuedForIdentity extends IssuedCertificate {
  idHex: string;
  name: string;
}

/** Runs the enrollment checks (file comment) and issues the certificate. */
export async function enrollWithToken(
  svc: ServiceHome,
  pki: ServicePki,
  opts: { authorization: string | undefined; csrDer: Uint8Array; now: number; random?: RandomSource },
): Promise<IssuedForIdentity> {
  const jwt = bearerToken(opts.authorization);
  const claims = await verifyToken(jwt, publicKeyOf(pki), { alg: pki.tokenAlg, now: opts.now, issuer: svc.settings.httpsAddress });
  if (claims.ca_fp !== pki.caFingerprint) {
    throw new EnrollError('ERR_TOKEN_INVALID', 'the token names another CA than this service\'s', { hint: 'ask the enroller for a new token' });
  }
  const found = await svc.tokens.getToken(claims.jti);
  if (!found || toHex(found.identity.id) !== claims.sub || found.identity.name !== claims.name) {
    throw new EnrollError('ERR_TOKEN_INVALID', 'the service has no such token', { hint: 'ask the enroller for a new token' });
  }
  if (found.token.usedAt !== null) {
    throw new EnrollError('ERR_TOKEN_USED', `this one-time token was already used, at ${new Date(found.token.usedAt * 1000).toISOString()}`, {
      hint: 'a token enrolls one device once; ask the enroller for a new token',
    });
  }
  if (found.token.expiresAt <= opts.now) {
    throw new EnrollError('ERR_TOKEN_EXPIRED', 'this token has expired', { hint: 'ask the enroller for a new token' });
  }
  if (found.identity.state !== 'pending') {
    throw new EnrollError('ERR_ENROLLEE_REVOKED', `this identity is ${found.identity.state} and cannot enroll`);
  }
  const csr = await parseCsr(opts.csrDer);
  checkCsrIdentity(csr, { name: claims.name, idHex: claims.sub });
  const issued = await issueClientCertificate({
    ca: pki.ca,
    caKey: pki.caKey,
    publicKey: csr.publicKey,
    name: claims.name,
    idHex: claims.sub,
    now: opts.now,
    days: svc.settings.certDays,
    serial: randomSerial(opts.random),
  });
  await svc.tokens.redeemToken({ jti: claims.jti, enrolleeId: found.identity.id, now: opts.now, cert: issued });
  return { ...issued, idHex: claims.sub, name: claims.name };
}

export interface ClientIdentity {
  idHex: string;
  name: string;
  serial: string;
  notAfter: number;
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
  return { idHex: named.idHex, name: rec.identity.name, serial, notAfter: rec.cert.notAfter };
}

/**
 * Renewal, for a client `authenticateClient` accepted: the CSR must name the same identity.
 * The store re-checks, in the transaction that records the new certificate, that the old one
 * is still live.
 */
export async function renewWithCertificate(
  svc: ServiceHome,
  pki: ServicePki,
  opts: { who: ClientIdentity; csrDer: Uint8Array; now: number; random?: RandomSource },
): Promise<IssuedForIdentity & { previous: string }> {
  const who = opts.who;
  const csr = await parseCsr(opts.csrDer);
  checkCsrIdentity(csr, { name: who.name, idHex: who.idHex });
  const issued = await issueClientCertificate({
    ca: pki.ca,
    caKey: pki.caKey,
    publicKey: csr.publicKey,
    name: who.name,
    idHex: who.idHex,
    now: opts.now,
    days: svc.settings.certDays,
    serial: randomSerial(opts.random),
  });
  await svc.tokens.recordRenewal({ enrolleeId: fromHex(who.idHex), previousSerial: who.serial, now: opts.now, cert: issued });
  return { ...issued, idHex: who.idHex, name: who.name, previous: who.serial };
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
  const t = await createToken(svc, { name: req.name, ttl: req.ttl, enroller, now });
  log('token-created', {
    enrollee: toHex(t.identityId),
    name: t.name,
    enroller: toHex(enroller.publicKey),
    enroller_name: enroller.name,
    expires_at: new Date(t.expiresAt * 1000).toISOString(),
  });
  await channel.send(encodeTokenCreated({ identityId: t.identityId, expiresAt: t.expiresAt, jwt: t.jwt }));
}
