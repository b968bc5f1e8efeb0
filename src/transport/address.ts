/**
 * TCP addresses as users type them: `tcp://HOST:PORT`, `HOST:PORT`, `[::1]:PORT` and
 * `tcp://[::1]:PORT`. Addresses come from flags, config files and bundles (the Addr field),
 * so parsing is strict: anything that is not plainly a host and a port is ERR_ADDRESS, and
 * nothing is resolved or looked up here.
 */
import { isIPv6 } from 'node:net';
import { EnrollError } from '../errors.js';

export interface TcpAddress {
  readonly host: string;
  readonly port: number;
}

const HINT = 'expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:4000 or tcp://[::1]:4000';
const SCHEME = 'tcp://';
/** RFC 1035 §2.3.4: a domain name is at most 253 characters in its text form. */
export const MAX_HOST_LEN = 253;
/** Longest input worth looking at: scheme + bracketed 253-char host + ":65535". */
const MAX_ADDRESS_LEN = SCHEME.length + MAX_HOST_LEN + 2 + 6;

function fail(input: string, why: string): never {
  // The input is echoed (cut short) because it is the user's own flag or config value, and
  // seeing it is the fastest way to spot the typo. Everything outside printable ASCII is
  // escaped, so a hostile value (e.g. an Addr from a bundle) cannot rewrite the terminal.
  const cut = input.length > 80 ? `${input.slice(0, 80)}...` : input;
  const shown = JSON.stringify(cut).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  throw new EnrollError('ERR_ADDRESS', `invalid address ${shown}: ${why}`, { hint: HINT });
}

/**
 * Checks a host name or IP literal (without brackets). Hostnames are limited to letters,
 * digits, '.', '-' and '_' so that nothing like `user@host`, `host/path` or `%00` slips
 * through to the resolver; IPv6 literals must parse as IPv6.
 */
export function checkHost(host: string, input: string = host): string {
  if (typeof host !== 'string' || host.length === 0) fail(String(input), 'host is empty');
  if (host.length > MAX_HOST_LEN) fail(input, `host is longer than ${MAX_HOST_LEN} characters`);
  // Whitespace and control characters are reported as such: they are the usual copy-paste
  // accident, and worth a precise message.
  if (/[\s\p{Cc}]/u.test(host)) fail(input, 'host contains whitespace or control characters');
  if (host.includes(':')) {
    if (!isIPv6(host)) fail(input, 'host is not a valid IPv6 address');
    return host;
  }
  if (!/^[A-Za-z0-9._-]+$/.test(host)) fail(input, 'host contains a character not allowed in a hostname');
  return host;
}

function parsePort(text: string, input: string, allowZero: boolean): number {
  // Digits only: Number() would accept '0x10', '1e3', ' 80' and '+80'.
  if (!/^[0-9]{1,5}$/.test(text)) fail(input, text === '' ? 'port is missing' : 'port is not a number');
  const port = Number(text);
  const min = allowZero ? 0 : 1;
  if (port < min || port > 65535) fail(input, `port must be ${min}..65535`);
  return port;
}

function parse(s: string, allowZeroPort: boolean): TcpAddress {
  if (typeof s !== 'string') {
    throw new EnrollError('ERR_ADDRESS', `invalid address: expected a string, got ${typeof s}`, {
      hint: HINT,
    });
  }
  if (s.length === 0) fail(s, 'address is empty');
  if (s.length > MAX_ADDRESS_LEN) fail(s, 'address is too long');
  if (/[\s\p{Cc}]/u.test(s)) fail(s, 'address contains whitespace or control characters');

  let rest = s;
  if (rest.slice(0, SCHEME.length).toLowerCase() === SCHEME) rest = rest.slice(SCHEME.length);
  else if (rest.includes('://')) fail(s, 'only the tcp:// scheme is supported');

  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) fail(s, "missing ']' after the IPv6 address");
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (!after.startsWith(':')) fail(s, "expected ':PORT' after ']'");
    portText = after.slice(1);
    if (host.length === 0) fail(s, 'host is empty');
    // Brackets are for IPv6 only (RFC 3986 §3.2.2).
    if (!isIPv6(host)) fail(s, 'brackets must hold an IPv6 address');
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon < 0) fail(s, 'port is missing');
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (host.includes(':')) fail(s, 'IPv6 addresses must be in brackets, e.g. [::1]:4000');
  }
  checkHost(host, s);
  return { host, port: parsePort(portText, s, allowZeroPort) };
}

/** Parses an address to connect to; the port must be 1..65535. Throws ERR_ADDRESS. */
export function parseAddress(s: string): TcpAddress {
  return parse(s, false);
}

/** Parses an address to listen on; port 0 (let the OS pick) is allowed. Throws ERR_ADDRESS. */
export function parseListenAddress(s: string): TcpAddress {
  return parse(s, true);
}

/** `tcp://host:port`, with IPv6 hosts in brackets, so that the result parses back. */
export function formatAddress(addr: { host: string; port: number }): string {
  return `${SCHEME}${hostPort(addr.host, addr.port)}`;
}

/** `host:port` or `[v6]:port`, without the scheme. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

