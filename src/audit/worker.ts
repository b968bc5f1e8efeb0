/**
 * The service's audit thread (sink.ts): appends the entries the main thread posts, in
 * batches, on a connection of its own. Appending here rather than on the main thread keeps
 * the WAL fsync and any wait for the store's write lock (the commit thread holds it while it
 * commits enrollments) off the event loop that serves enrollments.
 *
 * A batch is everything that arrived since the last one, at most one every
 * AUDIT_FLUSH_INTERVAL_MS, so the audit thread takes the write lock (and pays an fsync) a
 * bounded number of times a second however many decisions are logged.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AuditStore, type AuditEntry } from '../store/audit.js';
import { isBusy } from '../store/sqlite.js';

export type AuditWorkerRequest = { entries: AuditEntry[] } | { close: true };
export type AuditWorkerReply = { error: string; lost: number } | { closed: true };

/** Longest time an entry waits in this thread before its batch is written. */
export const AUDIT_FLUSH_INTERVAL_MS = 50;
/**
 * A batch refused with SQLITE_BUSY (the store's write lock held past busy_timeout by another
 * connection) is kept and tried again at the next flush: for this long after the first
 * refusal, and while no more than MAX_HELD_ENTRIES wait. Past either, what waits counts as
 * lost and is reported (the decision log on stderr still has every entry).
 */
const BUSY_RETRY_FOR_MS = 60_000;
const MAX_HELD_ENTRIES = 100_000;
/** When appends started failing with SQLITE_BUSY; undefined while they succeed. */
let busySince: number | undefined;

const { path } = workerData as { path: string };
let store: AuditStore | undefined;
let queue: AuditEntry[] = [];
let timer: NodeJS.Timeout | undefined;
let lastFlush = 0;
let closing = false;

function flush(): void {
  timer = undefined;
  if (queue.length === 0) return;
  const batch = queue;
  queue = [];
  lastFlush = Date.now();
  try {
    store ??= AuditStore.open(path);
    store.append(batch);
    busySince = undefined;
  } catch (err) {
    busySince ??= Date.now();
    const keep = isBusy((err as { cause?: unknown }).cause ?? err) && !closing && Date.now() - busySince < BUSY_RETRY_FOR_MS && batch.length <= MAX_HELD_ENTRIES;
    if (keep) {
      // Nothing of it was written (the transaction rolled back): keep it, in order.
      queue = batch.concat(queue);
      schedule();
      return;
    }
    busySince = undefined;
    // Reported to the main thread, which logs it; the entries are lost, and the decision
    // log on stderr still has them.
    parentPort!.postMessage({ error: (err as Error).message, lost: batch.length } satisfies AuditWorkerReply);
  }
}

function schedule(): void {
  if (timer !== undefined || closing) return;
  const wait = Math.max(0, lastFlush + AUDIT_FLUSH_INTERVAL_MS - Date.now());
  timer = setTimeout(flush, wait);
}

parentPort!.on('message', (req: AuditWorkerRequest) => {
  if ('close' in req) {
    closing = true;
    if (timer !== undefined) clearTimeout(timer);
    flush();
    store?.close();
    parentPort!.postMessage({ closed: true } satisfies AuditWorkerReply);
    parentPort!.close();
    return;
  }
  queue.push(...req.entries);
  schedule();
});
