/**
 * The running service's side of the enrollment lifecycle (docs/protocol.md §7.9, §7.10):
 *
 * - **Open channels, by key.** Every enroller channel and session channel is tracked by
 *   the peer's static key (the enroller key; IK_B) while its handler runs.
 * - **Revocation at once.** `service enroller revoke` and `service enrollee revoke` run in
 *   other processes and only write the store. A watcher polls the store every
 *   {@link WATCH_INTERVAL_MS} for revocations newer than the last it saw, and closes the
 *   matching channels: an ERROR (ERR_ENROLLER_NOT_ALLOWED / ERR_ENROLLEE_REVOKED) as the
 *   next transport message, then FIN, then the socket is destroyed after
 *   {@link CLOSE_LINGER_MS} if the peer has not closed it. The handlers' own per-request
 *   checks still stand behind this (a channel opened after the revocation is refused at
 *   its first request); the watcher is what ends a channel that sits idle or in the middle
 *   of a long exchange.
 * - **Moving.** The same tick reads the store's latest address announcement and makes it
 *   the address put in new bundles and STATUS replies (svc.settings.address).
 * - **Session requests** ADDRESS_REQUEST and ROTATE (session.ts hands them here).
 *
 * Every decision here goes to the decision log (`channel-closed`, `rotated`,
 * `rotate-refused`, `address-changed`), which `service start` also records in the audit log
 * (src/audit: auditedLog); nothing here calls audit() itself, which would record it twice.
 *
 * Polling: SQLite has no cross-process notifications, and one indexed range query
 * (`revoked_at >= ?`, a partial index of revoked rows only) every 250 ms costs microseconds.
 * Revocation times are in seconds, so the query is inclusive and closing is idempotent: a
 * row seen twice finds no channel the second time. With a PostgreSQL store shared by
 * replicas, a revocation made through any of them (or by `service enrollee revoke`) also
 * sends NOTIFY in its transaction, and every replica LISTENs: its watcher runs a pass at
 * once, and the poll stays behind it for a lost LISTEN connection.
 */
import { toHex } from '../../crypto/bytes.js';
import { EnrollError } from '../../errors.js';
import { encodeError } from '../../protocol/messages/common.js';
import { decodeCredentialRequest, encodeCredentialMsg, MSG_ADDRESS_REQUEST, MSG_CREDENTIAL_REQUEST, MSG_ROTATE } from '../../protocol/messages/session.js';
import type { LifecycleStore } from '../../store/lifecycle.js';
import type { EnrolleeRecord } from '../../store/types.js';
import type { SecureChannel } from '../../transport/channel.js';
import { serveAddressRequest } from './address.js';
import { issueCredential } from './credentials.js';
import { parseRate, TokenBuckets } from './limits.js';
import type { ServiceHome } from './home.js';
import type { DecisionLog } from './log.js';
import { serveRotate } from './rotation.js';

/** How often the watcher looks for revocations and announcements. */
export const WATCH_INTERVAL_MS = 250;
/** How long a closed channel's peer gets to read the ERROR and close before the socket is destroyed. */
export const CLOSE_LINGER_MS = 2_000;
/** Least time between two `error` lines of a failing watcher. */
const ERROR_LOG_INTERVAL_MS = 10_000;
/** Slack on the first revocation query, for a revoking command whose clock read came just before ours. */
const START_SLACK_S = 2;

export type TrackedKind = 'enroller' | 'session';

interface Tracked {
  channel: SecureChannel;
  /** Set once the lifecycle closed this channel: its handler's failures are then expected. */
  closedBy: EnrollError | undefined;
  /**
   * How to close it instead of an ERROR message: a channel switched to a portal link
   * (docs/protocol.md §11.8) carries mux frames only, so its link ends it (GO_AWAY, every
   * stream reset) rather than a session message the peer's mux could not read.
   */
  closer?: (err: EnrollError) => void;
}

export class ServiceLifecycle {
  readonly store: LifecycleStore;
  readonly #svc: ServiceHome;
  readonly #log: DecisionLog;
  readonly #channels = new Map<string, Set<Tracked>>();
  /** Open channels by kind (the live-channels gauge, docs/operations.md "Metrics"). */
  readonly #live: Record<TrackedKind, number> = { enroller: 0, session: 0 };
  readonly #timer: NodeJS.Timeout;
  #since: number;
  #seq = 0;
  #stopped = false;
  /** A pass in flight, and whether another was asked for meanwhile. */
  #ticking: Promise<void> | undefined;
  #again = false;
  #listen: { stop(): void } | undefined;
  /** When the watcher last logged a failure: at most one line per ERROR_LOG_INTERVAL_MS. */
  #errorLoggedAt = 0;

  constructor(svc: ServiceHome, log: DecisionLog, store: LifecycleStore, opts: { intervalMs?: number } = {}) {
    this.#svc = svc;
    this.#log = log;
    this.store = store;
    // Revocations are stamped by other processes with the wall clock, so this one is too
    // (not the server's injectable `now`, which tests move about).
    this.#since = Math.floor(Date.now() / 1000) - START_SLACK_S;
    this.#timer = setInterval(() => void this.tick(), opts.intervalMs ?? WATCH_INTERVAL_MS);
    this.#timer.unref();
  }

  /** Starts LISTENing for other replicas' revocations (PostgreSQL stores). */
  async listen(): Promise<void> {
    if (this.#svc.pg === undefined || this.#stopped) return;
    const { listenLifecycle } = await import('../../store/pg/lifecycle.js');
    if (this.#stopped) return;
    this.#listen = listenLifecycle(this.#svc.pg, () => void this.tick());
  }

  /** Open channels by kind: enroller channels and enrollee sessions. */
  live(): Record<TrackedKind, number> {
    return { ...this.#live };
  }

  /** Open channels of `kind` from `key` (for tests and the log). */
  count(kind: TrackedKind, key: Uint8Array): number {
    return this.#channels.get(slot(kind, key))?.size ?? 0;
  }

  /**
   * Runs `serve` for `channel`, tracked under its remote static key. A handler that fails
   * because the lifecycle closed its channel under it ends quietly: that is not an error.
   */
  async track(kind: TrackedKind, channel: SecureChannel, serve: () => Promise<void>): Promise<void> {
    const key = slot(kind, channel.remoteStaticKey);
    const entry: Tracked = { channel, closedBy: undefined };
    let set = this.#channels.get(key);
    if (!set) this.#channels.set(key, (set = new Set()));
    set.add(entry);
    this.#live[kind]++;
    try {
      await serve();
    } catch (err) {
      if (entry.closedBy === undefined) throw err;
    } finally {
      this.#live[kind]--;
      set.delete(entry);
      if (set.size === 0 && this.#channels.get(key) === set) this.#channels.delete(key);
    }
  }

  /** Makes `close` end `channel` with `closer` (a portal link) rather than an ERROR message. */
  setCloser(kind: TrackedKind, channel: SecureChannel, closer: (err: EnrollError) => void): void {
    for (const entry of this.#channels.get(slot(kind, channel.remoteStaticKey)) ?? []) {
      if (entry.channel === channel) entry.closer = closer;
    }
  }

  /**
   * Closes every tracked channel of `kind` from `key` (but `except`): sends `err` as ERROR,
   * ends our side, and destroys the socket after CLOSE_LINGER_MS. Returns how many.
   */
  close(kind: TrackedKind, key: Uint8Array, err: EnrollError, except?: SecureChannel): number {
    const set = this.#channels.get(slot(kind, key));
    if (!set) return 0;
    let n = 0;
    for (const entry of set) {
      if (entry.channel === except || entry.closedBy !== undefined) continue;
      entry.closedBy = err;
      n++;
      const conn = entry.channel.connection;
      if (entry.closer !== undefined) {
        entry.closer(err);
        setTimeout(() => conn.destroy(), CLOSE_LINGER_MS).unref();
        continue;
      }
      // send() encrypts and hands the frame to the socket synchronously, so this ERROR takes
      // the next nonce even while the handler is itself sending: the peer can always read it.
      void entry.channel
        .send(encodeError(err))
        .catch(() => undefined)
        .then(() => entry.channel.close())
        .finally(() => setTimeout(() => conn.destroy(), CLOSE_LINGER_MS).unref());
    }
    return n;
  }

  /**
   * One watcher pass: revocations since the last pass, then the latest announcement. One
   * pass at a time; a pass asked for while one runs runs right after it (a NOTIFY that
   * arrives mid-pass must not be lost to a query that started before its commit).
   */
  tick(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#ticking !== undefined) {
      this.#again = true;
      return this.#ticking;
    }
    this.#ticking = this.#pass().finally(() => {
      this.#ticking = undefined;
      if (this.#again) {
        this.#again = false;
        void this.tick();
      }
    });
    return this.#ticking;
  }

  async #pass(): Promise<void> {
    try {
      let seen = this.#since;
      for (const e of await this.store.revokedEnrollersSince(this.#since)) {
        seen = Math.max(seen, e.revokedAt);
        const n = this.close('enroller', e.publicKey, new EnrollError('ERR_ENROLLER_NOT_ALLOWED', 'this enroller has been revoked'));
        if (n > 0) this.#closed('enroller', e.publicKey, 'ERR_ENROLLER_NOT_ALLOWED: revoked', n);
      }
      for (const e of await this.store.revokedEnrolleesSince(this.#since)) {
        seen = Math.max(seen, e.revokedAt);
        if (e.ikB === null) continue;
        const n = this.close('session', e.ikB, new EnrollError('ERR_ENROLLEE_REVOKED', 'this enrollee has been revoked'));
        if (n > 0) this.#closed('session', e.ikB, 'ERR_ENROLLEE_REVOKED: revoked', n, e.id);
      }
      this.#since = seen;
      const a = await this.store.latestAnnouncement();
      if (a && a.seq > this.#seq) {
        this.#seq = a.seq;
        if (this.#svc.settings.address !== a.address) {
          this.#svc.settings.address = a.address;
          this.#log('address-changed', { address: a.address, seq: a.seq });
        }
      }
    } catch (err) {
      // A busy or failing store must not stop the watcher: the next tick tries again, and
      // the log gets one line per ERROR_LOG_INTERVAL_MS, not four a second.
      if (Date.now() - this.#errorLoggedAt < ERROR_LOG_INTERVAL_MS) return;
      this.#errorLoggedAt = Date.now();
      const reason = err instanceof EnrollError ? `${err.code}: ${err.message}` : `internal: ${(err as Error)?.message ?? String(err)}`;
      this.#log('error', { reason: `lifecycle watcher: ${reason}` });
    }
  }

  #closed(kind: TrackedKind, key: Uint8Array, reason: string, channels: number, enrolleeId?: Uint8Array): void {
    const who = kind === 'enroller' ? { enroller: toHex(key) } : { enrollee: enrolleeId && toHex(enrolleeId), ik_b: toHex(key) };
    this.#log('channel-closed', { ...who, reason, channels });
  }

  /** Stops the watcher and closes its store connection. Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#listen?.stop();
    // After a pass in flight, which still uses the connection.
    void Promise.resolve(this.#ticking).finally(() => this.store.close());
  }
}

function slot(kind: TrackedKind, key: Uint8Array): string {
  return `${kind}:${toHex(key)}`;
}

const running = new WeakMap<ServiceHome, ServiceLifecycle>();

/**
 * CREDENTIAL_REQUESTs per identity key (§7.9.2): a device needs one after a lost ROTATED, so
 * a few an hour is plenty, and each one costs a signature and an audit entry. The bucket
 * keeps an enrolled device from growing the audit log at the per-IP rate.
 */
export const CREDENTIAL_REQUEST_RATE = '6/h';
const credentialRequests = new WeakMap<ServiceHome, TokenBuckets>();

function credentialBuckets(svc: ServiceHome): TokenBuckets {
  let b = credentialRequests.get(svc);
  if (b === undefined) {
    b = new TokenBuckets(parseRate(CREDENTIAL_REQUEST_RATE, 'credential requests')!);
    credentialRequests.set(svc, b);
  }
  return b;
}

/** Starts the lifecycle of a running service (server.ts), registered so session handlers find it. */
export async function startLifecycle(svc: ServiceHome, log: DecisionLog, opts: { intervalMs?: number } = {}): Promise<ServiceLifecycle> {
  const lc = new ServiceLifecycle(svc, log, await svc.lifecycleStore(), opts);
  running.set(svc, lc);
  // At once: the address bundles carry must be the announced one from the first request.
  await lc.tick();
  await lc.listen();
  return lc;
}

/** The open channels of the service running on `svc`, by kind (zero when none runs). */
export function liveChannels(svc: ServiceHome): Record<TrackedKind, number> {
  return running.get(svc)?.live() ?? { enroller: 0, session: 0 };
}

/** The running service's lifecycle, if `service start` runs for `svc` (portal links register their closer with it). */
export function lifecycleOf(svc: ServiceHome): ServiceLifecycle | undefined {
  return running.get(svc);
}

export function stopLifecycle(svc: ServiceHome): void {
  running.get(svc)?.stop();
  running.delete(svc);
}

/**
 * Serves a session request of §7.9 (ADDRESS_REQUEST, ROTATE) for the enrolled `rec`.
 * Returns true when the channel must close: after a rotation, its authenticated key is no
 * longer enrolled. A refusal goes back as ERROR; a malformed request also closes the
 * channel (§7.3), other refusals leave it open.
 */
export async function serveLifecycleRequest(
  svc: ServiceHome,
  channel: SecureChannel,
  rec: EnrolleeRecord,
  msg: Uint8Array,
  log: DecisionLog,
  now: number,
): Promise<boolean> {
  const lc = running.get(svc);
  // Outside a running server (a library caller serving sessions itself), a connection for this request.
  const store = lc?.store ?? (await svc.lifecycleStore());
  try {
    if (msg[0] === MSG_ADDRESS_REQUEST) {
      await serveAddressRequest(store, channel, msg);
      return false;
    }
    if (msg[0] === MSG_CREDENTIAL_REQUEST) {
      // A fresh credential for the key that authenticated this channel, which the session
      // loop has just found enrolled: how a device whose ROTATED was lost gets the
      // credential of its new key (§7.9.2).
      decodeCredentialRequest(msg);
      const wait = credentialBuckets(svc).take(toHex(channel.remoteStaticKey));
      if (wait > 0) {
        throw new EnrollError('ERR_RATE_LIMITED', `too many credential requests for this identity key (limit ${CREDENTIAL_REQUEST_RATE})`, {
          hint: `wait ${Math.ceil(wait / 1000)} s and try again`,
        });
      }
      const cred = await issueCredential(svc, { enrolleeId: rec.id, ikB: channel.remoteStaticKey, petName: rec.petName, now, attributes: rec.attributes });
      log('credential-issued', { enrollee: toHex(rec.id), name: rec.petName, ik_b: toHex(channel.remoteStaticKey), credential_expires_at: new Date(cred.expiresAt * 1000).toISOString() });
      await channel.send(encodeCredentialMsg(cred.credential));
      return false;
    }
    if (msg[0] !== MSG_ROTATE) throw new EnrollError('ERR_PROTOCOL', `unexpected session request type ${msg[0]}`);
    const r = await serveRotate(store, channel, rec, msg, log, now, (ikB) => issueCredential(svc, { enrolleeId: rec.id, ikB, petName: rec.petName, now, attributes: rec.attributes }));
    // Other open sessions of the old key (a `status --watch`) end now rather than at their next request.
    lc?.close('session', r.oldIkB, new EnrollError('ERR_ENROLLEE_UNKNOWN', 'this identity key was replaced by a rotation'), channel);
    return true;
  } catch (err) {
    // A store fault is answered ERR_UNAVAILABLE by server.ts, not relayed in the store's words.
    if (!(err instanceof EnrollError) || err.code === 'ERR_STORE') throw err;
    log(msg[0] === MSG_ROTATE ? 'rotate-refused' : 'rejected', { enrollee: toHex(rec.id), name: rec.petName, reason: `${err.code}: ${err.message}` });
    await channel.send(encodeError(err));
    return err.code === 'ERR_FRAME_MALFORMED' || err.code === 'ERR_PROTOCOL';
  } finally {
    if (!lc) await store.close();
  }
}
