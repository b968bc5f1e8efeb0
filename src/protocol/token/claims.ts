/**
 * The one-time enrollment token: a compact JWS (RFC 7515) carrying a JWT (RFC 7519), signed
 * by the service with the key of its HTTPS server certificate. Claims (docs/token-enrollment.md):
 *
 *   iss    the service's HTTPS URL, https://HOST:PORT: where to enroll, and whose
 *          certificate key must verify the signature
 *   sub    the identity id: 64 lowercase hex characters
 *   jti    the one-time value the service stored: 22..64 base64url characters
 *   iat    issued at, exp expires at: unix seconds, iat ≤ exp ≤ iat + 30 days
 *   em     the enrollment method: "ott" (one-time token)
 *   ca_fp  SHA-256 over the DER of the service's root CA certificate, 64 lowercase hex:
 *          what the enrollee trusts the CA it downloads by
 *   name   the identity's name, the CN of its certificate
 *
 * This file is pure and does no crypto: it parses and checks the text form before any
 * signature is looked at, so a malformed token fails fast, with the claim named, and no
 * untrusted JSON reaches a crypto library. Decoders throw only ERR_TOKEN_INVALID.
 */
import { isIP } from 'node:net';
import { EnrollError } from '../../errors.js';
import { IDENTITY_NAME_RULE, isIdentityIdHex, isIdentityName } from '../../x509/identity.js';

export const TOKEN_EM = 'ott';
export const TOKEN_TYP = 'JWT';
/** Our tokens are about 700 characters; 4 KiB leaves room and bounds every later step. */
export const MAX_TOKEN_LEN = 4096;
/** Longest lifetime a token may claim (exp - iat). */
export const MAX_TOKEN_TTL = 30 * 86400;
export type TokenAlg = 'ES256' | 'EdDSA';
export const TOKEN_ALGS: readonly TokenAlg[] = ['ES256', 'EdDSA'];

export interface TokenClaims {
  iss: string;
  sub: string;
  jti: string;
  iat: number;
  exp: number;
  em: typeof TOKEN_EM;
  ca_fp: string;
  name: string;
}

export interface DecodedToken {
  /** The compact form, trimmed. */
  compact: string;
  alg: TokenAlg;
  claims: TokenClaims;
  /** The "nbf" claim when the token has one (ours do not), unchecked: verifyToken checks it. */
  nbf?: unknown;
}

const B64URL_RE = /^[A-Za-z0-9_-]+$/;
const JTI_RE = /^[A-Za-z0-9_-]{22,64}$/;
const HEX64_RE = /^[0-9a-f]{64}$/;
/** Claims are unix seconds; bound them so that arithmetic stays exact (year 2286). */
const MAX_TIME = 9_999_999_999;

function invalid(message: string): EnrollError {
  return new EnrollError('ERR_TOKEN_INVALID', message, {
    hint: 'check the token was copied whole; ask the enroller for a new one with `ockam-enroll enroller token create`',
  });
}

function decodeJsonPart(part: string, what: string): Record<string, unknown> {
  if (!B64URL_RE.test(part)) throw invalid(`the token's ${what} is not base64url`);
  const bytes = Buffer.from(part, 'base64url');
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw invalid(`the token's ${what} is not UTF-8 JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`the token's ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** The issuer as a URL, checked: https, a host, an explicit or default port, nothing else. */
export function parseIssuer(iss: unknown): { url: string; host: string; port: number } {
  if (typeof iss !== 'string' || iss.length === 0 || iss.length > 300) throw invalid('the token\'s "iss" claim must be an https URL');
  let u: URL;
  try {
    u = new URL(iss);
  } catch {
    throw invalid('the token\'s "iss" claim is not a URL');
  }
  if (u.protocol !== 'https:') throw invalid('the token\'s "iss" claim must be an https:// URL');
  if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) {
    throw invalid('the token\'s "iss" claim must be https://HOST:PORT, with no path, query or credentials');
  }
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  if (!host || (!isIP(host) && !/^[a-z0-9._-]{1,253}$/.test(host))) throw invalid('the token\'s "iss" claim has an invalid host');
  const port = u.port === '' ? 443 : Number(u.port);
  return { url: formatIssuer(host, port), host, port };
}

/** https://HOST:PORT with IPv6 in brackets: the one spelling of an issuer. */
export function formatIssuer(host: string, port: number): string {
  return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function intClaim(claims: Record<string, unknown>, name: string): number {
  const v = claims[name];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_TIME) throw invalid(`the token's "${name}" claim must be a whole number of seconds`);
  return v;
}

/** Checks a claims object (see the file comment); ERR_TOKEN_INVALID naming the first bad claim. */
export function checkClaims(claims: Record<string, unknown>): TokenClaims {
  const iss = parseIssuer(claims.iss);
  if (iss.url !== claims.iss) throw invalid(`the token's "iss" claim must be written ${iss.url}`);
  if (!isIdentityIdHex(claims.sub)) throw invalid('the token\'s "sub" claim must be 64 lowercase hex characters');
  if (typeof claims.jti !== 'string' || !JTI_RE.test(claims.jti)) throw invalid('the token\'s "jti" claim must be 22..64 base64url characters');
  const iat = intClaim(claims, 'iat');
  const exp = intClaim(claims, 'exp');
  if (exp < iat || exp - iat > MAX_TOKEN_TTL) throw invalid(`the token's "exp" must be within ${MAX_TOKEN_TTL} seconds after its "iat"`);
  if (claims.em !== TOKEN_EM) throw invalid(`the token's "em" claim must be "${TOKEN_EM}"`);
  if (typeof claims.ca_fp !== 'string' || !HEX64_RE.test(claims.ca_fp)) throw invalid('the token\'s "ca_fp" claim must be 64 lowercase hex characters (SHA-256)');
  if (!isIdentityName(claims.name)) throw invalid(`the token's "name" claim must be ${IDENTITY_NAME_RULE}`);
  return { iss: iss.url, sub: claims.sub, jti: claims.jti, iat, exp, em: TOKEN_EM, ca_fp: claims.ca_fp, name: claims.name };
}

/**
 * Parses a token's text form WITHOUT verifying its signature: three base64url parts, a
 * header naming ES256 or EdDSA (no "crit"), and valid claims. Whitespace around the token
 * (a trailing newline from a file) is ignored.
 */
export function decodeTokenUnverified(text: string): DecodedToken {
  if (typeof text !== 'string') throw invalid('the token must be text');
  const compact = text.trim();
  if (compact.length === 0) throw invalid('the token is empty');
  if (compact.length > MAX_TOKEN_LEN) throw invalid(`the token is ${compact.length} characters, more than ${MAX_TOKEN_LEN}`);
  const parts = compact.split('.');
  if (parts.length !== 3) throw invalid('the token must be three base64url parts separated by dots (a compact JWS)');
  const header = decodeJsonPart(parts[0]!, 'header');
  const alg = header.alg;
  if (alg !== 'ES256' && alg !== 'EdDSA') throw invalid(`the token's "alg" must be ES256 or EdDSA, got ${JSON.stringify(String(alg)).slice(0, 20)}`);
  if (header.typ !== undefined && header.typ !== TOKEN_TYP) throw invalid(`the token's "typ" must be ${TOKEN_TYP}`);
  if (header.crit !== undefined) throw invalid('the token\'s header has "crit" parameters, which this tool does not understand');
  if (!B64URL_RE.test(parts[2]!)) throw invalid('the token\'s signature is not base64url');
  const raw = decodeJsonPart(parts[1]!, 'claims');
  const claims = checkClaims(raw);
  return { compact, alg, claims, ...(raw.nbf !== undefined ? { nbf: raw.nbf } : {}) };
}
