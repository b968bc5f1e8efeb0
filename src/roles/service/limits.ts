/**
 * The service's limits against hostile or runaway peers (docs/protocol.md §7.7,
 * docs/threat-model.md). All of them are checked before any crypto runs for the request they
 * refuse, and each refusal has its own error code and one `limited` line in the decision log.
 *
 * | limit                | default | flag                  | what a peer over it gets                          |
 * | -------------------- | ------- | --------------------- | ------------------------------------------------- |
 * | frame size           | 8192 B  | `--max-frame`         | ERR_FRAME_TOO_LARGE: connection destroyed          |
 * | per-read timeout     | 10 s    | `--read-timeout`      | ERR_TIMEOUT: connection destroyed (slow-loris)     |
 * | open connections     | 4096    | `--max-connections`   | ERR_CONNECTION_LIMIT: destroyed on arrival         |
 * | requests per IP      | 100/s   | `--rate-per-ip`       | an enrollment message: status RATE_LIMITED, then   |
 * |                      |         |                       | the connection ends; a Noise connection: destroyed |
 * |                      |         |                       | before its handshake                               |
 * | requests per enroller| 20/s    | `--rate-per-enroller` | ERROR ERR_RATE_LIMITED, then the channel closes    |
 * | failed decryptions   | 20/m    | `--fail-rate-per-ip`  | an enrollment message that would reach check 4:    |
 * | per IP               |         |                       | status RATE_LIMITED, then the connection ends      |
 *
 * With a PostgreSQL store shared by replicas, the per-enroller buckets live in the database
 * (store/pg/limits.ts), so an enroller's requests count once across every replica; the
 * per-IP ones stay in each replica's memory.
 *
 * The rate limits are token buckets: a bucket holds up to `burst` tokens, refills at
 * `perSecond` tokens a second. Per IP, each enrollment message takes one (a
 * KIND_ENROLL_STREAM connection carries several), and so do each KEM prekey request and
 * each Noise connection; per
 * enroller, each request. `N/s`, `N/m` and `N/h` mean a bucket of N tokens refilled N times per unit.
 *
 * IPv6 peers are bucketed by their /64 prefix, since one host usually holds a whole /64; an
 * IPv4-mapped address counts as its IPv4 address.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { toHex } from '../../crypto/bytes.js';
import { EnrollError } from '../../errors.js';
import { ENROLLMENT_MESSAGE_V2_LEN } from '../../protocol/enrollment/constants.js';
import { encodeError } from '../../protocol/messages/common.js';
import type { SecureChannel } from '../../transport/channel.js';
import type { DecisionFields, DecisionLog } from './log.js';

/**
 * Frame size the service reads and writes, by default. Its largest frames are ERRORs
 * (< 6.1 KiB), EKA v2 enrollment messages (1265 B), KEM prekey answers (1184 B) and
 * BUNDLEs (780 B for v1, 812 B for v2, in the channel).
 */
export const DEFAULT_MAX_FRAME_LEN = 8192;
/**
 * The smallest `--max-frame`: an EKA v2 enrollment message (1265 bytes, docs/protocol.md
 * §5A.2), the largest frame a device sends, must fit, or v2 could never work.
 */
export const MIN_MAX_FRAME_LEN = ENROLLMENT_MESSAGE_V2_LEN;
export const DEFAULT_RATE_PER_IP = '100/s';
export const DEFAULT_RATE_PER_ENROLLER = '20/s';
/**
 * Enrollment messages per peer IP (IPv6: per /64) that fail to decrypt (check 4,
 * docs/protocol.md §5.4). Such failures no longer count against the enrollee (anyone who has
 * seen its card can make them), so they are bounded here instead (docs/threat-model.md §5.4).
 */
export const DEFAULT_FAIL_RATE_PER_IP = '20/m';
/** Peers (IPs or enrollers) tracked at once per bucket set; beyond it, full buckets and then the oldest are forgotten. */
export const DEFAULT_MAX_TRACKED = 100_000;
/** At most one `limited` log line per limit per this many ms; the next line counts the ones left out. */
export const LIMIT_LOG_INTERVAL_MS = 1000;

export interface RateSpec {
  /** Tokens a bucket holds: how many requests may come at once. */
  burst: number;
  /** Tokens added per second. */
  perSecond: number;
  /** The spec as written, e.g. "100/s", for messages and logs. */
  text: string;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 };

/**
 * Parses a rate flag: `N/s`, `N/m`, `N/h` (a bucket of N refilled N times per unit), a bare
 * `N` (per second), or `off` (no limit, returned as null). N is 1..1 000 000. ERR_USAGE
 * names `flag` otherwise.
 */
export function parseRate(value: string, flag: string): RateSpec | null {
  const v = String(value).trim().toLowerCase();
  if (v === 'off' || v === 'none') return null;
  const m = /^(\d{1,7})(?:\/([smh]))?$/.exec(v);
  const n = m ? Number(m[1]) : NaN;
  if (!m || n < 1 || n > 1_000_000) {
    throw new EnrollError('ERR_USAGE', `${flag} "${value}" is not a rate`, {
      hint: 'use N/s, N/m or N/h with N in 1..1000000 (e.g. 100/s or 600/m), or off',
    });
  }
  const unit = m[2] ?? 's';
  return { burst: n, perSecond: n / UNIT_SECONDS[unit]!, text: `${n}/${unit}` };
}

/** The text of a spec or "off", for the `listening` log line. */
export function rateText(spec: RateSpec | null): string {
  return spec === null ? 'off' : spec.text;
}

const TOKEN_EPSILON = 1e-9;

interface Bucket {
  tokens: number;
  /** Clock (ms) when `tokens` was last brought up to date. */
  at: number;
}

/** A monotonic clock in ms (not the wall clock, which may jump). */
export function monotonicMs(): number {
  return performance.now();
}

/**
 * One token bucket per key, in a map bounded to `maxTracked` keys: a flood of distinct keys
 * (spoofed-looking IPv6 /64s, say) cannot grow memory without bound. When the map is full,
 * buckets that have refilled completely are dropped first (forgetting them changes nothing),
 * then the least recently used ones.
 */
export class TokenBuckets {
  readonly spec: RateSpec;
  readonly #buckets = new Map<string, Bucket>();
  readonly #maxTracked: number;
  readonly #clock: () => number;

  constructor(spec: RateSpec, opts: { maxTracked?: number; clock?: () => number } = {}) {
    if (!(spec.burst >= 1) || !(spec.perSecond > 0) || !Number.isFinite(spec.perSecond)) {
      throw new EnrollError('ERR_INVALID_ARG', '"spec" needs burst >= 1 and perSecond > 0');
    }
    const max = opts.maxTracked ?? DEFAULT_MAX_TRACKED;
    if (!Number.isInteger(max) || max < 1) throw new EnrollError('ERR_INVALID_ARG', '"maxTracked" must be an integer >= 1');
    this.spec = spec;
    this.#maxTracked = max;
    this.#clock = opts.clock ?? monotonicMs;
  }

  /** Keys currently tracked. */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Takes one token from `key`'s bucket. Returns 0 when it was there (go ahead), else the ms
   * until one will be (refuse now). A refused request takes nothing, so a peer that keeps
   * retrying gets through at the configured rate, not never.
   */
  take(key: string): number {
    const now = this.#clock();
    let b = this.#buckets.get(key);
    if (b === undefined) {
      this.#makeRoom(now);
      b = { tokens: this.spec.burst, at: now };
    } else {
      this.#buckets.delete(key); // re-inserted below: the map's order is least recently used first
      this.#refill(b, now);
    }
    this.#buckets.set(key, b);
    // The epsilon absorbs floating-point drift of many small refills (ten 0.1-token refills
    // must make a token).
    if (b.tokens >= 1 - TOKEN_EPSILON) {
      b.tokens = Math.max(0, b.tokens - 1);
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - b.tokens) / this.spec.perSecond) * 1000));
  }

  /**
   * 0 when `key`'s bucket holds a token, else the ms until it will; takes nothing. For a cost
   * known only after the work (a failed decryption): check here, then {@link take} in the
   * same synchronous step as the work, so that no concurrent request can slip in between.
   */
  available(key: string): number {
    const b = this.#buckets.get(key);
    if (b === undefined) return 0;
    this.#refill(b, this.#clock());
    if (b.tokens >= 1 - TOKEN_EPSILON) return 0;
    return Math.max(1, Math.ceil(((1 - b.tokens) / this.spec.perSecond) * 1000));
  }

  /**
   * Whole tokens in `key`'s bucket now (a full burst for a key not tracked); takes nothing.
   * For a cost known only after work that runs elsewhere (the pool): a caller starts no more
   * such work for `key` than there are tokens to charge if all of it fails.
   */
  tokens(key: string): number {
    const b = this.#buckets.get(key);
    if (b === undefined) return Math.floor(this.spec.burst + TOKEN_EPSILON);
    this.#refill(b, this.#clock());
    return Math.floor(b.tokens + TOKEN_EPSILON);
  }

  #refill(b: Bucket, now: number): void {
    const elapsed = Math.max(0, now - b.at) / 1000;
    b.tokens = Math.min(this.spec.burst, b.tokens + elapsed * this.spec.perSecond);
    b.at = now;
  }

  #makeRoom(now: number): void {
    if (this.#buckets.size < this.#maxTracked) return;
    for (const [k, b] of this.#buckets) {
      this.#refill(b, now);
      if (b.tokens >= this.spec.burst - TOKEN_EPSILON) this.#buckets.delete(k);
    }
    if (this.#buckets.size < this.#maxTracked) return;
    // Still full: forget the least recently used tenth (at least one).
    let drop = Math.ceil(this.#maxTracked / 10);
    for (const k of this.#buckets.keys()) {
      if (drop-- <= 0) break;
      this.#buckets.delete(k);
    }
  }
}

/**
 * The bucket key of a peer address as FramedConnection gives it ("ip:port" or
 * "[v6]:port"): the IPv4 address, or the IPv6 /64 prefix. Undefined input (a non-socket
 * stream) shares one bucket.
 */
export function peerIpKey(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) return 'local';
  let host = remoteAddress;
  const bracket = /^\[([^\]]+)\]:\d+$/.exec(remoteAddress);
  if (bracket) host = bracket[1]!;
  else {
    const colon = remoteAddress.lastIndexOf(':');
    if (colon > 0 && isIPv4(remoteAddress.slice(0, colon))) host = remoteAddress.slice(0, colon);
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped && isIPv4(mapped[1]!)) return mapped[1]!;
  if (isIPv4(host)) return host;
  if (isIPv6(host)) return `${ipv6Prefix64(host)}::/64`;
  return host;
}

/** The first four hextets of an IPv6 address, expanded (so every spelling of one /64 gives one key). */
function ipv6Prefix64(addr: string): string {
  const noZone = addr.split('%')[0]!;
  const [head, tail] = noZone.includes('::') ? noZone.split('::') : [noZone, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  // An embedded IPv4 tail counts as two hextets.
  const count = (parts: string[]) => parts.reduce((n, p) => n + (p.includes('.') ? 2 : 1), 0);
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - count(h) - count(t)).fill('0'), ...t];
  return groups
    .slice(0, 4)
    .map((g) => (g.includes('.') ? '0' : Number.parseInt(g || '0', 16).toString(16)))
    .join(':');
}

/**
 * Writes `limited` decisions, at most one per limit per {@link LIMIT_LOG_INTERVAL_MS}: a flood
 * over a limit must not turn into a flood of log lines. The first refusal is always logged;
 * the next logged line says how many were left out in between (`suppressed=N`).
 */
export class LimitLog {
  readonly #log: DecisionLog;
  readonly #clock: () => number;
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(log: DecisionLog, clock: () => number = monotonicMs) {
    this.#log = log;
    this.#clock = clock;
  }

  limited(limit: string, fields: DecisionFields): void {
    const now = this.#clock();
    const s = this.#last.get(limit);
    if (s !== undefined && now - s.at < LIMIT_LOG_INTERVAL_MS) {
      s.suppressed += 1;
      return;
    }
    const suppressed = s?.suppressed ?? 0;
    this.#last.set(limit, { at: now, suppressed: 0 });
    this.#log('limited', { limit, ...fields, ...(suppressed > 0 ? { suppressed } : {}) });
  }
}

/** The error a rate-limited enroller request gets, with a hint saying how long to wait. */
export function rateLimitedError(what: string, spec: RateSpec, waitMs: number): EnrollError {
  return new EnrollError('ERR_RATE_LIMITED', `too many requests from ${what} (limit ${spec.text})`, {
    hint: `wait ${Math.max(1, Math.ceil(waitMs / 1000))} s and try again; the service's operator sets this limit with --rate-per-enroller`,
  });
}

/**
 * Wraps an enroller's channel so that every request it receives first takes a token from
 * the enroller's bucket (keyed by its authenticated static key). A request over the limit is
 * answered with ERROR ERR_RATE_LIMITED, the channel is closed, and `receive` then rejects with
 * ERR_CONNECTION_CLOSED, which the enroller handler treats as the peer going away. Nothing
 * of the request is looked at, so a limited request costs no store access and no crypto
 * beyond the channel's own decryption.
 */
export function limitEnrollerRequests(
  channel: SecureChannel,
  buckets: { readonly spec: RateSpec; take(key: string): number | Promise<number> },
  onLimited: (enrollerHex: string, waitMs: number) => void,
): SecureChannel {
  const key = toHex(channel.remoteStaticKey);
  return {
    remoteStaticKey: channel.remoteStaticKey,
    handshakeHash: channel.handshakeHash,
    connection: channel.connection,
    send: (payload) => channel.send(payload),
    close: () => channel.close(),
    async receive(timeoutMs?: number): Promise<Uint8Array> {
      const msg = await channel.receive(timeoutMs);
      // A store-backed bucket (replicas: store/pg/limits.ts) is async; its failure ends the channel.
      const wait = await buckets.take(key);
      if (wait === 0) return msg;
      onLimited(key, wait);
      await channel.send(encodeError(rateLimitedError('this enroller', buckets.spec, wait))).catch(() => undefined);
      await channel.close();
      throw new EnrollError('ERR_CONNECTION_CLOSED', 'closed after a rate-limited request');
    },
  };
}
