/**
 * The enroller's pinned service keys, like ssh's known_hosts: trust on first use, then
 * refuse a service whose static X25519 key changed.
 *
 * `known_services.json` in the enroller's directory maps a normalised address to the key:
 *
 * ```json
 * { "tcp://enroll.example.com:4000": { "key": "<64 hex>", "first_seen": "2025-01-01T00:00:00.000Z" } }
 * ```
 *
 * The file is read on every call, so separate runs see each other's pins, and written
 * atomically (temp file + rename). Two runs pinning at the same instant can lose one of the
 * two new pins, never corrupt the file; the lost pin is simply asked for again next time.
 */
import { isIPv6 } from 'node:net';
import { EnrollError } from '../errors.js';
import { abytes, equalBytes, toHex } from '../crypto/bytes.js';
import type { Keystore } from './keystore.js';

export const KNOWN_SERVICES_FILE = 'known_services.json';

export type KnownServiceCheck = 'match' | 'unknown' | 'mismatch';

interface Entry {
  key: string;
  first_seen: string;
}

const HEX32_RE = /^[0-9a-f]{64}$/;
const ADDRESS_RE = /^(?:tcp:\/\/)?(\[[^\]\s/]+\]|[^\s:/[\]@?#]+):([0-9]{1,5})$/i;
const HOSTNAME_RE = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/**
 * `tcp://HOST:PORT` with the scheme optional on input, the host lowercased without a
 * trailing dot, IPv6 in brackets in its canonical form, and the port without leading
 * zeros, so that one service has one entry. ERR_ADDRESS otherwise.
 */
export function normaliseServiceAddress(address: string): string {
  const bad = (): EnrollError =>
    new EnrollError('ERR_ADDRESS', `service address ${JSON.stringify(String(address).slice(0, 300))} is malformed`, {
      hint: 'use tcp://HOST:PORT',
    });
  if (typeof address !== 'string') throw bad();
  const m = ADDRESS_RE.exec(address.trim());
  if (!m) throw bad();
  let host = m[1]!.toLowerCase();
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad();
  if (host.startsWith('[')) {
    const inner = host.slice(1, -1);
    if (!isIPv6(inner)) throw bad();
    // The WHATWG URL parser prints IPv6 in RFC 5952 canonical form.
    host = new URL(`http://[${inner}]/`).hostname;
  } else {
    if (host.endsWith('.')) host = host.slice(0, -1);
    if (!HOSTNAME_RE.test(host)) throw bad();
  }
  return `tcp://${host}:${port}`;
}

export class KnownServices {
  readonly #keystore: Keystore;

  constructor(keystore: Keystore) {
    this.#keystore = keystore;
  }

  /** The file's path, for messages and hints. */
  get file(): string {
    return this.#keystore.path(KNOWN_SERVICES_FILE);
  }

  #read(): Map<string, Entry> {
    const json = this.#keystore.readJson<unknown>(KNOWN_SERVICES_FILE, { trust: true });
    const out = new Map<string, Entry>();
    if (json === undefined) return out;
    const corrupt = (what: string): EnrollError =>
      new EnrollError('ERR_KEYSTORE_CORRUPT', `${this.file}: ${what}`, {
        hint: `fix or remove ${this.file}; removing it forgets every pinned service key`,
      });
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw corrupt('not a JSON object');
    for (const [address, entry] of Object.entries(json)) {
      let normal: string;
      try {
        normal = normaliseServiceAddress(address);
      } catch {
        throw corrupt(`${JSON.stringify(address.slice(0, 100))} is not a tcp://HOST:PORT address`);
      }
      if (normal !== address) throw corrupt(`${JSON.stringify(address.slice(0, 100))} is not normalised`);
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
        throw corrupt(`entry for ${address} is not an object`);
      }
      const { key, first_seen } = entry as Record<string, unknown>;
      if (typeof key !== 'string' || !HEX32_RE.test(key)) {
        throw corrupt(`"key" for ${address} must be 64 lowercase hex digits`);
      }
      if (typeof first_seen !== 'string' || Number.isNaN(Date.parse(first_seen))) {
        throw corrupt(`"first_seen" for ${address} must be an ISO-8601 date-time`);
      }
      out.set(address, { key, first_seen });
    }
    return out;
  }

  #write(entries: Map<string, Entry>): void {
    const sorted = [...entries.keys()].sort();
    const obj: Record<string, Entry> = {};
    for (const a of sorted) obj[a] = entries.get(a)!;
    this.#keystore.writeJson(KNOWN_SERVICES_FILE, obj, { overwrite: true });
  }

  /** 'unknown' if nothing is pinned for `address`, else whether `key` is the pinned key. */
  check(address: string, key: Uint8Array): KnownServiceCheck {
    abytes(key, 32, 'key');
    const pinned = this.get(address);
    if (pinned === undefined) return 'unknown';
    return equalBytes(pinned, key) ? 'match' : 'mismatch';
  }

  /**
   * Pins `key` for `address`. Pinning the key already pinned is a no-op (first_seen kept).
   * A different key is refused with ERR_SERVICE_KEY_MISMATCH unless `replace` is set:
   * a changed service key is exactly what pinning exists to catch.
   */
  pin(address: string, key: Uint8Array, options: { replace?: boolean } = {}): void {
    abytes(key, 32, 'key');
    const normal = normaliseServiceAddress(address);
    const entries = this.#read();
    const hex = toHex(key);
    const old = entries.get(normal);
    if (old !== undefined) {
      if (old.key === hex) return;
      if (!options.replace) {
        throw new EnrollError('ERR_SERVICE_KEY_MISMATCH', `a different key is already pinned for ${normal}`, {
          hint: `if the service's key really changed, remove ${normal} from ${this.file}`,
        });
      }
    }
    entries.set(normal, { key: hex, first_seen: new Date().toISOString() });
    this.#write(entries);
  }

  /** The pinned key for `address`, or undefined. */
  get(address: string): Uint8Array | undefined {
    const entry = this.#read().get(normaliseServiceAddress(address));
    return entry === undefined ? undefined : new Uint8Array(Buffer.from(entry.key, 'hex'));
  }

  /** When `address` was first pinned, or undefined. */
  firstSeen(address: string): string | undefined {
    return this.#read().get(normaliseServiceAddress(address))?.first_seen;
  }

  /** Every pinned address with its key, sorted by address. */
  list(): { address: string; key: Uint8Array; firstSeen: string }[] {
    return [...this.#read()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([address, e]) => ({ address, key: new Uint8Array(Buffer.from(e.key, 'hex')), firstSeen: e.first_seen }));
  }

  /** Unpins `address`; returns whether it was pinned. */
  forget(address: string): boolean {
    const normal = normaliseServiceAddress(address);
    const entries = this.#read();
    if (!entries.delete(normal)) return false;
    this.#write(entries);
    return true;
  }
}
