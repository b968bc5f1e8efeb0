/**
 * How a token-enrolled identity is named in tokens and certificates:
 * - its id: 32 random bytes chosen by the service, written as 64 lowercase hex characters
 *   (the `sub` claim, the enrollee id in `service enrollee list`);
 * - its name: the subject CN, chosen by the enroller;
 * - the URI SAN `urn:ockam-enroll:identity:<id hex>`, the one name relying parties should
 *   match on (a CN is a label, the URI is the identity).
 *
 * Names are restricted to a conservative alphabet. A CN travels through DN string forms
 * (openssl's `-subj`, RFC 4514 strings, log lines) where ',', '+', '=', quotes and control
 * characters change the meaning of the text; refusing them up front means the CN in a CSR
 * can be compared byte for byte with the name the token was made for.
 */
export const IDENTITY_URI_PREFIX = 'urn:ockam-enroll:identity:';

const ID_HEX_RE = /^[0-9a-f]{64}$/;
/** 1..64 characters: letters, digits, space, '.', '_', '@', '-'; no leading or trailing space. */
const NAME_RE = /^[A-Za-z0-9._@-](?:[A-Za-z0-9 ._@-]{0,62}[A-Za-z0-9._@-])?$/;

export const MAX_IDENTITY_NAME_LEN = 64;

export function isIdentityIdHex(s: unknown): s is string {
  return typeof s === 'string' && ID_HEX_RE.test(s);
}

export function isIdentityName(s: unknown): s is string {
  return typeof s === 'string' && NAME_RE.test(s);
}

/** Explains the name rule, for messages and hints. */
export const IDENTITY_NAME_RULE = "1 to 64 characters of letters, digits, space, '.', '_', '@' and '-', not starting or ending with a space";

export function identityUri(idHex: string): string {
  return `${IDENTITY_URI_PREFIX}${idHex}`;
}

/** The id hex of an identity URI, or undefined when `uri` is not one. */
export function parseIdentityUri(uri: string): string | undefined {
  if (!uri.startsWith(IDENTITY_URI_PREFIX)) return undefined;
  const id = uri.slice(IDENTITY_URI_PREFIX.length);
  return ID_HEX_RE.test(id) ? id : undefined;
}
