/**
 * Signing and verifying enrollment tokens with jose. The text form is parsed and checked by
 * claims.ts first (cheap, no crypto); only a well-formed token reaches the signature check.
 * Signing uses jose (once per token, off the hot path); verifying is node:crypto alone
 * (signatureVerifies), with the claim checks jose made kept (exp, nbf).
 */
import { verify, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { EnrollError } from '../../errors.js';
import { checkClaims, decodeTokenUnverified, TOKEN_TYP, type TokenAlg, type TokenClaims } from './claims.js';

/** Signs `claims` as a compact JWS with `alg` (ES256 for a P-256 key, EdDSA for Ed25519). */
export async function signToken(claims: TokenClaims, key: KeyObject, alg: TokenAlg): Promise<string> {
  // Checked before signing too: the service must never hand out a token its enrollees refuse.
  const c = checkClaims({ ...claims });
  return new SignJWT({ em: c.em, ca_fp: c.ca_fp, name: c.name })
    .setProtectedHeader({ alg, typ: TOKEN_TYP })
    .setIssuer(c.iss)
    .setSubject(c.sub)
    .setJti(c.jti)
    .setIssuedAt(c.iat)
    .setExpirationTime(c.exp)
    .sign(key);
}

const B64URL_SIG_RE = /^[A-Za-z0-9_-]{86}$/;

/**
 * The JWS signature check with node:crypto (RFC 7518 §3.4: ES256 is R || S, 32 bytes each;
 * RFC 8037 §3.1: EdDSA with Ed25519 is 64 bytes). The key must be of the algorithm's type;
 * pass a cached public KeyObject (a private one makes node derive the public half per call).
 */
function signatureVerifies(compact: string, alg: TokenAlg, key: KeyObject): boolean {
  const dot = compact.lastIndexOf('.');
  const sigText = compact.slice(dot + 1);
  if (!B64URL_SIG_RE.test(sigText)) return false;
  const sig = Buffer.from(sigText, 'base64url');
  // Canonical base64url only: the last character's unused bits must be zero.
  if (sig.length !== 64 || sig.toString('base64url') !== sigText) return false;
  const data = Buffer.from(compact.slice(0, dot), 'latin1');
  const kt = key.asymmetricKeyType;
  try {
    if (alg === 'ES256') {
      if (kt !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new EnrollError('ERR_TOKEN_INVALID', 'the token could not be verified: the key is not a P-256 key');
      return verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    }
    if (kt !== 'ed25519') throw new EnrollError('ERR_TOKEN_INVALID', 'the token could not be verified: the key is not an Ed25519 key');
    return verify(null, data, key, sig);
  } catch (err) {
    if (err instanceof EnrollError) throw err;
    return false;
  }
}

export interface VerifyTokenOptions {
  /** The algorithm the verifying key signs with; a token naming another is refused. */
  alg: TokenAlg;
  /** Unix seconds. */
  now: number;
  /** Seconds of clock skew allowed on exp (default 0: the service is strict). */
  clockTolerance?: number;
  /** When set, the token's iss must be exactly this. */
  issuer?: string;
}

/**
 * Verifies a token's signature with `key`, then its claims (exp at `now`). Codes:
 * ERR_TOKEN_INVALID (malformed, wrong issuer), ERR_TOKEN_SIGNATURE (signature or algorithm),
 * ERR_TOKEN_EXPIRED.
 */
export async function verifyToken(text: string, key: KeyObject, opts: VerifyTokenOptions): Promise<TokenClaims> {
  return verifyTokenSync(text, key, opts);
}

/** verifyToken without the promise: the same checks, in the same order (a pool worker runs it, src/pool/cert-job.ts). */
export function verifyTokenSync(text: string, key: KeyObject, opts: VerifyTokenOptions): TokenClaims {
  const decoded = decodeTokenUnverified(text);
  if (decoded.alg !== opts.alg) {
    throw new EnrollError('ERR_TOKEN_SIGNATURE', `the token is signed with ${decoded.alg}, but the service's key signs with ${opts.alg}`, {
      hint: 'the token was not made by this service',
    });
  }
  if (opts.issuer !== undefined && decoded.claims.iss !== opts.issuer) {
    throw new EnrollError('ERR_TOKEN_INVALID', `the token was issued for ${decoded.claims.iss}, not ${opts.issuer}`, {
      hint: 'the token belongs to another service',
    });
  }
  const tolerance = opts.clockTolerance ?? 0;
  // RFC 7515 §5.2: the signature over the ASCII of "header.payload", first; then the times.
  if (!signatureVerifies(decoded.compact, decoded.alg, key)) {
    throw new EnrollError('ERR_TOKEN_SIGNATURE', 'the token\'s signature does not verify with the service\'s key', {
      hint: 'the token was altered, or made by another service than the one it names',
    });
  }
  // RFC 7519 §4.1.4: expired on or after exp (jose's rule, which this replaces: exp <= now - tolerance).
  if (decoded.claims.exp <= opts.now - tolerance) {
    throw new EnrollError('ERR_TOKEN_EXPIRED', `the token expired at ${new Date(decoded.claims.exp * 1000).toISOString()}`, {
      hint: 'ask the enroller for a new token (`ockam-enroll enroller token create`)',
    });
  }
  // RFC 7519 §4.1.5: our tokens carry no nbf, but one that does is held to it, as jose did.
  const nbf = decoded.nbf;
  if (nbf !== undefined) {
    if (typeof nbf !== 'number' || !Number.isFinite(nbf)) throw new EnrollError('ERR_TOKEN_INVALID', 'the token\'s "nbf" claim is not valid now: claim must be a number');
    if (nbf > opts.now + tolerance) throw new EnrollError('ERR_TOKEN_INVALID', 'the token\'s "nbf" claim is not valid now: claim timestamp check failed');
  }
  return decoded.claims;
}
