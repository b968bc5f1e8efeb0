/**
 * The running service's way into the audit log on a PostgreSQL store (sink.ts is SQLite's).
 * No thread: appends are network round trips the event loop waits on without blocking, so
 * entries are collected for AUDIT_FLUSH_INTERVAL_MS and appended as one transaction
 * (store/pg/audit.ts), which serialises with every other replica's on the chain's head row.
 *
 * A batch that fails (PostgreSQL unreachable, restarting) is kept, in order, and tried again
 * at the next flush: for up to RETRY_FOR_MS after the first failure and while no more than
 * MAX_HELD_ENTRIES wait; past either, what waits counts as lost and is reported once through
 * `onError` (the decision log on stderr still has every entry).
 */
import type { AuditEntry } from '../store/audit.js';
import type { PgDatabase } from '../store/pg/database.js';
import { PgAuditStore } from '../store/pg/audit.js';
import type { AuditAppender } from './sink.js';

const AUDIT_FLUSH_INTERVAL_MS = 50;
const RETRY_FOR_MS = 60_000;
const MAX_HELD_ENTRIES = 100_000;
/** How long close() keeps trying to write what is queued. */
const CLOSE_TIMEOUT_MS = 5_000;

export class PgAuditSink implements AuditAppender {
  readonly #store: PgAuditStore;
  readonly #onError: (reason: string) => void;
  #queue: AuditEntry[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #failingSince: number | undefined;
  #closed = false;

  private constructor(db: PgDatabase, onError: (reason: string) => void) {
    this.#store = new PgAuditStore(db);
    this.#onError = onError;
  }

  static start(db: PgDatabase, onError: (reason: string) => void): PgAuditSink {
    return new PgAuditSink(db, onError);
  }

  append(entry: AuditEntry): void {
    if (this.#closed) return;
    this.#queue.push(entry);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#flushing !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#flush();
    }, AUDIT_FLUSH_INTERVAL_MS);
    this.#timer.unref();
  }

  #flush(): Promise<void> {
    if (this.#flushing !== undefined) return this.#flushing;
    if (this.#queue.length === 0) return Promise.resolve();
    const batch = this.#queue;
    this.#queue = [];
    this.#flushing = this.#store
      .append(batch)
      .then(
        () => {
          this.#failingSince = undefined;
        },
        (err: unknown) => {
          this.#failingSince ??= Date.now();
          const total = batch.length + this.#queue.length;
          if (!this.#closed && Date.now() - this.#failingSince < RETRY_FOR_MS && total <= MAX_HELD_ENTRIES) {
            // Nothing of it was written (the transaction rolled back): keep it, in order.
            this.#queue = batch.concat(this.#queue);
            return;
          }
          this.#failingSince = undefined;
          this.#onError(`cannot append ${batch.length} entr${batch.length === 1 ? 'y' : 'ies'} to the audit log: ${(err as Error).message}`);
        },
      )
      .finally(() => {
        this.#flushing = undefined;
        if (this.#queue.length > 0 && !this.#closed) this.#schedule();
      });
    return this.#flushing;
  }

  /** Writes what is queued (trying for up to CLOSE_TIMEOUT_MS). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const deadline = Date.now() + CLOSE_TIMEOUT_MS;
    while ((this.#queue.length > 0 || this.#flushing !== undefined) && Date.now() < deadline) {
      await this.#flush();
      if (this.#queue.length > 0) await new Promise((r) => setTimeout(r, 100));
    }
    this.#closed = true;
    if (this.#queue.length > 0) this.#onError(`cannot append ${this.#queue.length} entries to the audit log before stopping`);
    this.#queue = [];
  }
}
