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
  if (u.port === '') throw fail('the port is missing');
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  checkHost(host, value);
  const port = Number(u.port);
  return { url: formatIssuer(host, port), host, port };
}

/** Where `service start` listens for HTTPS by default: the address's own IP, or all interfaces for a DNS name. */
export function defaultHttpsListen(httpsAddress: string): string {
  const { host, port } = parseHttpsAddress(httpsAddress);
  if (host === 'localhost' || isIP(host) !== 0) return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  return `0.0.0.0:${port}`;
}
