/**
 * HTTPS addresses for token enrollment (`--https-address https://HOST:PORT`): what goes in
 * tokens as `iss` and in the server certificate's SANs. Strict like address.ts: a scheme, a
 * host, an explicit port, and nothing else.
 */
import { isIP } from 'node:net';
import { EnrollError } from '../errors.js';
import { formatIssuer } from '../protocol/token/claims.js';
import { checkHost } from './address.js';

export const DEFAULT_HTTPS_ADDRESS = 'https://127.0.0.1:4443';

/** Parses https://HOST:PORT and returns it in its one spelling. ERR_ADDRESS otherwise. */
export function parseHttpsAddress(value: string): { url: string; host: string; port: number } {
  const fail = (why: string) =>
    new EnrollError('ERR_ADDRESS', `invalid HTTPS address ${JSON.stringify(String(value).slice(0, 80))}: ${why}`, {
      hint: 'expected https://HOST:PORT, e.g. https://enroll.example.com:4443',
    });
  if (typeof value !== 'string' || value.length > 300) throw fail('too long');
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw fail('not a URL');
  }
  if (u.protocol !== 'https:') throw fail('the scheme must be https');
  if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) throw fail('no path, query or credentials allowed');
  // The URL parser drops the scheme's default port, so "https://host:443" has no u.port;
  // the port must still be written, so it is looked for in the text itself.
  const port = u.port !== '' ? Number(u.port) : /^https:\/\/[^/?#]*:443\/?$/i.test(value) ? 443 : undefined;
  if (port === undefined) throw fail('the port is missing');
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  checkHost(host, value);
  return { url: formatIssuer(host, port), host, port };
}

/** Where `service start` listens for HTTPS by default: the address's own IP, or all interfaces for a DNS name. */
export function defaultHttpsListen(httpsAddress: string): string {
  const { host, port } = parseHttpsAddress(httpsAddress);
  if (host === 'localhost' || isIP(host) !== 0) return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  return `0.0.0.0:${port}`;
}

/** Hosts that are this machine whatever the network: 127.0.0.0/8, ::1 (also IPv4-mapped), localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/** Where the HTTPS listener is bound, as node reports it (server.address()). */
export interface BoundAddress {
  host: string;
  port: number;
}

/**
 * How the announced HTTPS address (the one put in tokens) relates to the listener actually
 * bound, decided from the two addresses alone (nothing is resolved):
 * - `serves`: the address names this listener (same port, and the same host or a wildcard
 *   listener, which serves every address of this host);
 * - `follow`: the address was not chosen at init (`--https-address`): announce the
 *   listener's port instead, on the same host, or on the listener's own host when the
 *   server certificate also names it (`certified`: it always names the loopback hosts);
 * - `cannot-follow`: not chosen, but the listener is bound to a host the certificate does
 *   not name, so no address can be announced that both reaches it and verifies;
 * - `probe`: chosen, on a loopback host, and not this listener: only this host's own
 *   processes can use it, so a connection from here sees what a device would see (a local
 *   proxy forwarding to the listener is fine; nothing or another server there is not);
 * - `elsewhere`: chosen, on another host or port: possibly a load balancer or a port
 *   forward in front of the listener, which this host cannot check from here.
 */
export type HttpsReach =
  | { kind: 'serves' }
  | { kind: 'follow'; url: string }
  | { kind: 'cannot-follow' }
  | { kind: 'probe' }
  | { kind: 'elsewhere' };

export function httpsReach(announced: string, chosen: boolean, bound: BoundAddress, certified: readonly string[] = []): HttpsReach {
  const a = parseHttpsAddress(announced);
  const b = bound.host.toLowerCase();
  const sameHost =
    a.host.toLowerCase() === b ||
    b === '::' || // dual-stack wildcard: every local address, IPv4 and IPv6
    (b === '0.0.0.0' && isIP(a.host) !== 6); // IPv4 wildcard: every address but IPv6 literals
  if (sameHost && a.port === bound.port) return { kind: 'serves' };
  if (!chosen) {
    if (sameHost) return { kind: 'follow', url: formatIssuer(a.host, bound.port) };
    return certified.includes(b) ? { kind: 'follow', url: formatIssuer(b, bound.port) } : { kind: 'cannot-follow' };
  }
  return isLoopbackHost(a.host) ? { kind: 'probe' } : { kind: 'elsewhere' };
}
