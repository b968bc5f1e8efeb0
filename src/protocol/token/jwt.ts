/**
 * Signing and verifying enrollment tokens with jose. The text form is parsed and checked by
 * claims.ts first (cheap, no crypto); only a well-formed token reaches the signature check.
 * jose's errors are mapped to EnrollError codes, the jose error kept as the cause.
 */
import type { KeyObject } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
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
  try {
    await jwtVerify(decoded.compact, key, {
      algorithms: [opts.alg],
      currentDate: new Date(opts.now * 1000),
      clockTolerance: opts.clockTolerance ?? 0,
      requiredClaims: ['iss', 'sub', 'jti', 'iat', 'exp'],
    });
  } catch (cause) {
    if (cause instanceof joseErrors.JWTExpired) {
      throw new EnrollError('ERR_TOKEN_EXPIRED', `the token expired at ${new Date(decoded.claims.exp * 1000).toISOString()}`, {
        cause,
        hint: 'ask the enroller for a new token (`ockam-enroll enroller token create`)',
      });
    }
    if (cause instanceof joseErrors.JWSSignatureVerificationFailed || cause instanceof joseErrors.JOSEAlgNotAllowed) {
      throw new EnrollError('ERR_TOKEN_SIGNATURE', 'the token\'s signature does not verify with the service\'s key', {
        cause,
        hint: 'the token was altered, or made by another service than the one it names',
      });
    }
    if (cause instanceof joseErrors.JWTClaimValidationFailed) {
      throw new EnrollError('ERR_TOKEN_INVALID', `the token's "${cause.claim}" claim is not valid now: ${cause.reason}`, { cause });
    }
    throw new EnrollError('ERR_TOKEN_INVALID', 'the token could not be verified', { cause });
  }
  return decoded.claims;
}
