/**
 * The HTTPS endpoints of token enrollment and their media types, shared by the service
 * (roles/service/https.ts) and the enrollee (roles/enrollee/token-join.ts, renew.ts).
 * The three /.well-known/est/ paths are RFC 7030's; /crl, /revocations and /whoami are this tool's own.
 */
export const EST_CACERTS = '/.well-known/est/cacerts';
export const EST_SIMPLEENROLL = '/.well-known/est/simpleenroll';
export const EST_SIMPLEREENROLL = '/.well-known/est/simplereenroll';
export const CRL_PATH = '/crl';
/** The signed revocation list of enrollees (docs/protocol.md §4.7), for offline credential verifiers. */
export const REVOCATIONS_PATH = '/revocations';
export const WHOAMI_PATH = '/whoami';

/** RFC 7030 §4.1.3: the CA certificates response. */
export const CT_PKCS7 = 'application/pkcs7-mime';
/** RFC 7030 §4.2.3: the enrollment response. */
export const CT_PKCS7_CERTS_ONLY = 'application/pkcs7-mime; smime-type=certs-only';
/** RFC 7030 §4.2.1: the enrollment request. */
export const CT_PKCS10 = 'application/pkcs10';
/** RFC 5280 §4.2.1.13 / RFC 2585 §4.2: a DER CRL. */
export const CT_CRL = 'application/pkix-crl';
