/**
 * The running service's way into the audit log: entries are collected on the main thread
 * for one turn of the event loop and posted, as one message, to the audit thread
 * (worker.ts), which hashes and appends them in batches. The main thread never waits for
 * SQLite here: a decision costs it an array push, and each turn one postMessage.
 *
 * If the thread cannot be started or stops, appends continue on this thread (synchronously,
 * one transaction per turn), and the failure is reported once through `onError`.
 */
import { Worker } from 'node:worker_threads';
import { AuditStore, type AuditEntry } from '../store/audit.js';
import { canonicalJson } from './chain.js';
import type { AuditWorkerReply, AuditWorkerRequest } from './worker.js';

/** How long close() waits for the audit thread to write its last batch. */
const CLOSE_TIMEOUT_MS = 5_000;

/** What auditedLog appends to: this thread-backed sink (SQLite), or PgAuditSink (pg-sink.ts). */
export interface AuditAppender {
  append(entry: AuditEntry): void;
  close(): Promise<void>;
}

export class AuditSink implements AuditAppender {
  readonly path: string;
  readonly #onError: (reason: string) => void;
  #worker: Worker | undefined;
  #inThread: AuditStore | undefined;
  #pending: AuditEntry[] = [];
  #scheduled = false;
  #closed = false;

  private constructor(path: string, onError: (reason: string) => void) {
    this.path = path;
    this.#onError = onError;
  }

  /** Starts the audit thread for the store at `path`. */
  static start(path: string, onError: (reason: string) => void): AuditSink {
    const sink = new AuditSink(path, onError);
    try {
      const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: { path } });
      // The service's own listeners keep the process alive; close() waits for the thread.
      w.unref();
      w.on('message', (m: AuditWorkerReply) => {
        if ('error' in m) onError(`cannot append ${m.lost} entr${m.lost === 1 ? 'y' : 'ies'} to the audit log: ${m.error}`);
      });
      w.on('error', (err) => sink.#lost(`the audit thread failed: ${err.message}`));
      w.on('exit', (code) => sink.#lost(`the audit thread exited (${code})`));
      sink.#worker = w;
    } catch (err) {
      sink.#lost(`cannot start the audit thread: ${(err as Error).message}`);
    }
    return sink;
  }

  #lost(reason: string): void {
    if (this.#worker === undefined && this.#inThread !== undefined) return;
    const wasRunning = this.#worker !== undefined;
    this.#worker = undefined;
    if (this.#closed) return;
    if (wasRunning || this.#inThread === undefined) this.#onError(`${reason}; appending on the main thread from now on`);
    this.#inThread ??= this.#openInThread();
  }

  #openInThread(): AuditStore | undefined {
    try {
      return AuditStore.open(this.path);
    } catch (err) {
      this.#onError((err as Error).message);
      return undefined;
    }
  }

  /** Queues one entry; it is handed to the audit thread at the end of this turn. */
  append(entry: AuditEntry): void {
    if (this.#closed) return;
    this.#pending.push(entry);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#post());
  }

  #post(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const entries = this.#pending;
    this.#pending = [];
    if (this.#worker !== undefined) {
      try {
        this.#worker.postMessage({ entries } satisfies AuditWorkerRequest);
      } catch {
        // A field that cannot be cloned (a caller's mistake): post its canonical JSON instead.
        const plain = entries.map((e) => ({ ...e, fields: JSON.parse(canonicalJson(e.fields)) as Record<string, unknown> }));
        this.#worker.postMessage({ entries: plain } satisfies AuditWorkerRequest);
      }
      return;
    }
    try {
      (this.#inThread ??= this.#openInThread())?.append(entries);
    } catch (err) {
      this.#onError(`cannot append ${entries.length} entries to the audit log: ${(err as Error).message}`);
    }
  }

  /** Writes what is queued, stops the audit thread and closes its connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#post();
    this.#closed = true;
    const w = this.#worker;
    this.#worker = undefined;
    if (w !== undefined) {
      w.ref();
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      w.postMessage({ close: true } satisfies AuditWorkerRequest);
      const timer = setTimeout(() => void w.terminate(), CLOSE_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    this.#inThread?.close();
    this.#inThread = undefined;
  }
}
