/**
 * Group commit for accepted enrollments (issue 5).
 *
 * With synchronous=FULL every COMMIT waits for the disk (a WAL fsync: milliseconds here), so
 * one transaction per enrollment would cap the service at a few hundred enrollments a second
 * whatever its CPU. Instead, accepted enrollments wait in a queue and are committed in
 * batches, one IMMEDIATE transaction (one fsync) per batch (SqliteStore.commitEnrollments).
 * Each waiter is resolved only once the COMMIT of its batch has returned, so an acceptance
 * is never sent before its own enrollment is durable; each enrollment runs in its own
 * savepoint with the store's conditional updates, so single-use OPKs and replay refusal hold
 * within a batch exactly as across batches.
 *
 * For a SQLite store the batches run on a commit thread (commit-worker.ts) with its own
 * connection: node accepts one new connection per turn of its event loop, so a main thread
 * blocked in fsync would also stop accepting. One batch is in flight at a time; whatever
 * arrives meanwhile forms the next batch, so batches grow with the load. Other stores, or a
 * commit thread that failed, commit in this thread at the end of the turn (setImmediate).
 */
import { Worker } from 'node:worker_threads';
import { EnrollError } from '../../errors.js';
import { SqliteStore } from '../../store/sqlite.js';
import type { CommitEnrollmentInput, EnrolleeRecord, ServiceStore } from '../../store/types.js';
import type { CommitRequest, CommitResponse } from './commit-worker.js';
import type { RedeemTokenInput } from '../../store/tokens.js';

interface Waiter {
  input: CommitEnrollmentInput;
  /** A token redemption instead of an enrollment (issue 23): committed by the same thread. */
  redeem?: RedeemTokenInput;
  /** How to commit that redemption without the thread (other stores, a lost thread). */
  direct?: () => Promise<void>;
  resolve(rec: EnrolleeRecord): void;
  reject(err: unknown): void;
}

export class CommitQueue {
  readonly #store: ServiceStore;
  #waiting: Waiter[] = [];
  /** The batch being committed; at most one at a time. */
  #inflight: Waiter[] | undefined;
  #scheduled = false;
  #worker: Worker | undefined;
  /** Whether to commit on a thread of its own (SQLite stores, by default). */
  readonly #useThread: boolean;
  /** Set once a commit thread could not be used: commit in this thread from then on. */
  #inThread: boolean;
  #idle: (() => void)[] = [];
  /** Batches committed and enrollments in them, for tests and the benchmark. */
  batches = 0;
  committed = 0;

  constructor(store: ServiceStore, opts: { thread?: boolean } = {}) {
    this.#store = store;
    this.#useThread = opts.thread ?? store instanceof SqliteStore;
    this.#inThread = !this.#useThread;
  }

  /**
   * Commits one enrollment together with whatever else is waiting. Resolves once it is
   * durable; rejects with the same EnrollErrors as commitEnrollment.
   */
  commit(input: CommitEnrollmentInput): Promise<EnrolleeRecord> {
    if (this.#store.commitEnrollments === undefined) return this.#store.commitEnrollment(input);
    return new Promise<EnrolleeRecord>((resolve, reject) => {
      this.#waiting.push({ input, resolve, reject });
      this.#schedule();
    });
  }

  /**
   * Redeems a token (store/tokens.ts redeemToken: token used, identity enrolled, certificate
   * recorded, all or nothing) in the next batch of the commit thread, so that its WAL sync
   * never blocks this thread's event loop; without a commit thread, `direct` does it.
   * Resolves once durable; rejects with redeemToken's EnrollErrors.
   */
  redeem(input: RedeemTokenInput, direct: () => Promise<void>): Promise<void> {
    if (this.#inThread || this.#store.commitEnrollments === undefined) return direct();
    return new Promise<void>((resolve, reject) => {
      this.#waiting.push({ input: undefined as never, redeem: input, direct, resolve: () => resolve(), reject });
      this.#schedule();
    });
  }

  /** Starts the commit thread now rather than at the first commit (the service calls it at start). */
  start(): void {
    if (!this.#inThread) this.#thread();
  }

  /**
   * Resolves once nothing is waiting or in flight, then stops the commit thread and closes
   * its connection. A later commit starts a new one.
   */
  async close(): Promise<void> {
    if (this.#inflight !== undefined || this.#waiting.length > 0) await new Promise<void>((r) => this.#idle.push(r));
    const w = this.#worker;
    this.#worker = undefined;
    if (w === undefined) return;
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    w.postMessage({ close: true } satisfies CommitRequest);
    const timer = setTimeout(() => void w.terminate(), 5000);
    await exited;
    clearTimeout(timer);
  }

  #schedule(): void {
    if (this.#scheduled || this.#inflight !== undefined) return;
    this.#scheduled = true;
    // At the end of this turn, so that the commits of one turn go together.
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#inflight !== undefined) return;
    if (this.#waiting.length === 0) {
      for (const r of this.#idle.splice(0)) r();
      return;
    }
    const batch = this.#waiting;
    this.#waiting = [];
    this.#inflight = batch;
    const worker = this.#inThread ? undefined : this.#thread();
    if (worker !== undefined) {
      worker.ref(); // a batch in flight keeps the process alive
      const redemptions = batch.filter((w) => w.redeem !== undefined).map((w) => w.redeem!);
      worker.postMessage({
        inputs: batch.filter((w) => w.redeem === undefined).map((w) => w.input),
        ...(redemptions.length > 0 ? { redemptions } : {}),
      } satisfies CommitRequest);
      return;
    }
    // Without the thread, redemptions go through their own store call, beside the batch.
    for (const w of batch.filter((x) => x.direct !== undefined)) w.direct!().then(() => w.resolve(undefined as never), w.reject);
    const enrolls = batch.filter((w) => w.redeem === undefined);
    if (enrolls.length === 0) {
      this.#inflight = undefined;
      this.#flush();
      return;
    }
    this.#inflight = enrolls;
    this.#store.commitEnrollments!(enrolls.map((w) => w.input)).then(
      (results) => this.#done(enrolls, results),
      (err: unknown) => this.#done(enrolls, undefined, err),
    );
  }

  #thread(): Worker | undefined {
    if (this.#worker !== undefined) return this.#worker;
    try {
      const w = new Worker(new URL('./commit-worker.js', import.meta.url), {
        workerData: { path: (this.#store as SqliteStore).path },
      });
      w.on('message', (res: CommitResponse) => {
        const batch = this.#inflight;
        if (batch === undefined) return;
        w.unref();
        if ('error' in res) this.#done(batch, undefined, new EnrollError(res.error.code ?? 'ERR_STORE', res.error.message));
        else {
          // Back in the batch's order: enrollments and redemptions were sent apart.
          const enrolled = res.results.map((r) => ('rec' in r ? r.rec : new EnrollError(r.code, r.message)));
          const redeemed = (res.redeemed ?? []).map((r) => ('ok' in r ? ({} as EnrolleeRecord) : new EnrollError(r.code, r.message)));
          let e = 0;
          let t = 0;
          this.#done(batch, batch.map((w) => (w.redeem === undefined ? enrolled[e++]! : redeemed[t++]!)));
        }
      });
      const lost = (why: string) => {
        if (this.#worker !== w) return;
        this.#worker = undefined;
        this.#inThread = true;
        // Whether the batch in flight committed is unknown: its enrollees are told to retry
        // (UNAVAILABLE); a retry with a fresh EK_B finds the enrollee enrolled or still pending.
        const batch = this.#inflight;
        if (batch !== undefined) this.#done(batch, undefined, new EnrollError('ERR_STORE', `the commit thread stopped: ${why}`));
      };
      w.on('error', (err) => lost(err.message));
      w.on('exit', (code) => lost(`exit ${code}`));
      w.unref();
      this.#worker = w;
      return w;
    } catch {
      this.#inThread = true;
      return undefined;
    }
  }

  #done(batch: Waiter[], results: (EnrolleeRecord | EnrollError)[] | undefined, err?: unknown): void {
    if (this.#inflight === batch) this.#inflight = undefined;
    if (results === undefined) {
      // Nothing of the batch is committed: every waiter fails (the enrollee may retry).
      for (const w of batch) w.reject(err);
    } else {
      this.batches += 1;
      for (let i = 0; i < batch.length; i++) {
        const r = results[i];
        if (r instanceof EnrollError) batch[i]!.reject(r);
        else if (r === undefined) batch[i]!.reject(new EnrollError('ERR_INTERNAL', 'group commit returned fewer results than inputs'));
        else {
          this.committed += 1;
          batch[i]!.resolve(r);
        }
      }
    }
    // What queued up meanwhile goes at once: it has waited a whole batch already.
    this.#flush();
  }
}

const queues = new WeakMap<ServiceStore, CommitQueue>();

/** The one commit queue of a store (so every connection's enrollments batch together). */
export function commitQueueFor(store: ServiceStore): CommitQueue {
  let q = queues.get(store);
  if (q === undefined) {
    q = new CommitQueue(store);
    queues.set(store, q);
  }
  return q;
}

/** Drains and stops the commit queue of a store, if it has one. */
export async function closeCommitQueue(store: ServiceStore): Promise<void> {
  await queues.get(store)?.close();
}
