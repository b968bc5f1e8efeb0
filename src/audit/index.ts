/**
 * The audit log: an append-only, hash-chained record of every decision the service makes
 * (docs/walkthrough.md "Lifecycle: audit, hooks, credentials"). Entries live in the `audit` table of the
 * service's store (src/store/audit.ts); the chain is specified in chain.ts.
 *
 * Two ways in:
 *
 * - **`audit(target, event, fields)`** — for decisions made outside `service start`, by a
 *   CLI command in its own process (`service enrollee revoke`, `service enroller
 *   revoke|allow`, `service prekey rotate`, `service address set`, …). `target` is the
 *   ServiceHome (or the store's path). It appends in one transaction (SQLite: IMMEDIATE;
 *   PostgreSQL: on the chain's head row, store/pg/audit.ts) and rejects with ERR_STORE if it
 *   cannot: await it after the decision is committed, and let the error reach the user. Inside `service start` (once registerAuditSink ran for
 *   that ServiceHome) it queues the entry for the audit thread instead, and never throws.
 *
 * - **`auditedLog(log, sink)`** — `service start` wraps its DecisionLog with it, so every
 *   decision it logs is also audited. So code running inside `service start` should just
 *   log its decision (`log('rotated', {...})`); calling audit() as well would record it twice.
 *   (The lifecycle watcher's `channel-closed`, `rotated` and `address-changed` are logged,
 *   hence audited: its recordLifecycleEvent hook needs no audit() call.)
 *
 * Usage from a CLI command (after the store committed the decision):
 *
 *   import { audit } from '../audit/index.js';
 *   await audit(svc, 'prekey-rotated', { spk_id: rec.id, spk_public: toHex(rec.publicKey), retired });
 *
 * Fields are the decision log's fields: public keys, ids, names, reasons, never a secret
 * (log.ts). Event names are the log's decision names (`accepted`, `rejected`, `approved`,
 * `token-created`, `cert-issued`, `rotated`, …) plus the CLI's own (`enrollee-revoked`,
 * `enroller-revoked`, `enroller-allowed`) and `refusals-suppressed` (below).
 *
 * What is not audited: `limited` and `error` (operational, about no party); portal links and
 * streams (`portal-*`, `stream-*`: decision log only, issue #19 item 7); and refusals
 * (`rejected`, `*-refused`), which anyone on the network can cause, are capped at
 * REFUSAL_BURST entries and then REFUSALS_PER_SECOND; the ones over the cap are counted and
 * recorded as one `refusals-suppressed` entry (count and kinds) when the cap allows again,
 * at least once a minute, and when the service stops. So unauthenticated traffic cannot grow
 * the audit log without bound, and the log still accounts for every refusal. The decision
 * log on stderr keeps every line.
 */
import { join } from 'node:path';
import { EnrollError } from '../errors.js';
import { AuditStore, type AuditEntry } from '../store/audit.js';
import type { Decision, DecisionFields, DecisionLog } from '../roles/service/log.js';
import type { AuditAppender } from './sink.js';
import type { PgDatabase } from '../store/pg/database.js';

export { AuditSink, type AuditAppender } from './sink.js';
export { canonicalJson, entryHash, entryText, verifyChain, AUDIT_GENESIS, type AuditRow, type ChainProblem, type ChainReport } from './chain.js';

/** A service home (anything with its keystore directory) or the store's path. */
export type AuditTarget = string | { readonly keystore: { readonly dir: string }; readonly pg?: PgDatabase | undefined };

/** The store file in the service's directory (roles/service/home.ts STORE_FILE). */
const STORE_FILE = 'store.db';

const sinks = new WeakMap<object, AuditAppender>();

/** Makes audit(svc, …) queue to `sink` (service start) instead of appending at once. */
export function registerAuditSink(svc: object, sink: AuditAppender): void {
  sinks.set(svc, sink);
}

export function unregisterAuditSink(svc: object): void {
  sinks.delete(svc);
}

export function auditStorePath(target: AuditTarget): string {
  return typeof target === 'string' ? target : join(target.keystore.dir, STORE_FILE);
}

/**
 * Records one decision in the audit log (see the file comment for when to use it).
 * `fields` must hold no secret: they are stored in the clear, for as long as the store lives.
 */
export async function audit(target: AuditTarget, event: string, fields: Record<string, unknown> = {}): Promise<void> {
  if (typeof event !== 'string' || !/^[a-z][a-z0-9-]{0,63}$/.test(event)) {
    throw new EnrollError('ERR_INVALID_ARG', `audit: "event" must be a lowercase name like "enrollee-revoked", got ${JSON.stringify(event)}`);
  }
  const entry: AuditEntry = { time: new Date().toISOString(), event, fields };
  const sink = typeof target === 'object' ? sinks.get(target) : undefined;
  if (sink !== undefined) {
    sink.append(entry);
    return;
  }
  if (typeof target === 'object' && target.pg !== undefined) {
    const { PgAuditStore } = await import('../store/pg/audit.js');
    await new PgAuditStore(target.pg).append([entry]);
    return;
  }
  const store = AuditStore.open(auditStorePath(target));
  try {
    store.append([entry]);
  } finally {
    store.close();
  }
}

/** Decisions that are never audited: operational, about no party. */
export const NOT_AUDITED: ReadonlySet<string> = new Set([
  'limited',
  'error',
  'store-unreachable',
  'store-reachable',
  // Portal traffic goes to the decision log only (issue #19 item 7): one entry per TCP
  // connection would let any enrolled device grow the audit chain at its connection rate.
  'portal-opened',
  'portal-closed',
  'stream-opened',
  'stream-refused',
  'stream-closed',
]);
/** Refusals audited back to back before the cap applies. */
export const REFUSAL_BURST = 60;
/** Refusals audited per second once the burst is spent. */
export const REFUSALS_PER_SECOND = 1;
/** Longest time suppressed refusals wait before their `refusals-suppressed` entry. */
const SUMMARY_INTERVAL_MS = 60_000;
/** Most distinct kinds a `refusals-suppressed` entry names; the rest count as "other". */
const MAX_KINDS = 32;

export function isRefusal(decision: string): boolean {
  return decision === 'rejected' || decision.endsWith('-refused');
}

/** The error code a reason starts with (`ERR_REPLAY: …` → ERR_REPLAY), else "other". */
function reasonCode(fields: DecisionFields): string {
  const m = typeof fields.reason === 'string' ? /^(ERR_[A-Z0-9_]+)/.exec(fields.reason) : null;
  return m ? m[1]! : 'other';
}

export interface AuditedLog extends DecisionLog {
  /** Records pending suppressed refusals now (service start calls it before closing the sink). */
  flush(): void;
  /** Stops the summary timer. */
  stop(): void;
}

/**
 * Wraps a DecisionLog so that every decision it logs is also appended to the audit log
 * through `sink` (see the file comment for what is capped or left out). The wrapped log
 * writes its line first, so a failure of the audit never hides a decision.
 */
export function auditedLog(inner: DecisionLog, sink: AuditAppender, opts: { nowMs?: () => number } = {}): AuditedLog {
  const nowMs = opts.nowMs ?? Date.now;
  let tokens = REFUSAL_BURST;
  let refilledAt = nowMs();
  let suppressed = 0;
  let suppressedSince: string | undefined;
  let kinds: Record<string, number> = {};

  const summarise = (): void => {
    if (suppressed === 0) return;
    sink.append({ time: new Date(nowMs()).toISOString(), event: 'refusals-suppressed', fields: { count: suppressed, since: suppressedSince, kinds } });
    suppressed = 0;
    suppressedSince = undefined;
    kinds = {};
  };
  const timer = setInterval(summarise, SUMMARY_INTERVAL_MS);
  timer.unref();

  const take = (): boolean => {
    const t = nowMs();
    tokens = Math.min(REFUSAL_BURST, tokens + ((t - refilledAt) / 1000) * REFUSALS_PER_SECOND);
    refilledAt = t;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };

  const log = ((decision: Decision, fields: DecisionFields) => {
    inner(decision, fields);
    if (NOT_AUDITED.has(decision)) return;
    const time = new Date(nowMs()).toISOString();
    if (isRefusal(decision)) {
      if (!take()) {
        suppressed += 1;
        suppressedSince ??= time;
        const kind = `${decision} ${reasonCode(fields)}`;
        const key = kind in kinds || Object.keys(kinds).length < MAX_KINDS ? kind : 'other';
        kinds[key] = (kinds[key] ?? 0) + 1;
        return;
      }
      summarise();
    }
    sink.append({ time, event: decision, fields });
  }) as AuditedLog;
  log.flush = summarise;
  log.stop = () => clearInterval(timer);
  return log;
}
