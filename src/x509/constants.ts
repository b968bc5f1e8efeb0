/**
 * Lifetimes and limits of the service's CA, in a module of their own: settings and CLI flags
 * read them without loading the X.509 library (which costs a noticeable part of a second).
 */
export const DEFAULT_CA_DAYS = 3650;
export const DEFAULT_SERVER_CERT_DAYS = 825;
export const DEFAULT_CLIENT_CERT_DAYS = 90;
export const MAX_CLIENT_CERT_DAYS = 3650;
/** Certificates start a minute in the past, so a peer whose clock is a little behind accepts them. */
export const BACKDATE_SECONDS = 60;
/** Longest certificate DER accepted from a peer or a file (ours are well under 1 KiB). */
export const MAX_CERT_DER = 8192;
export const CA_COMMON_NAME = 'ockam-enroll root CA';
/** Hosts every HTTPS server certificate names besides the service's own HTTPS host. */
export const SERVER_CERT_LOOPBACK_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '::1'];
