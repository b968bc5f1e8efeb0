/**
 * The commit thread of the service (commits.ts): its own connection to the SQLite store,
 * running each batch of accepted enrollments as one durable transaction
 * (SqliteStore.commitEnrollments) and posting the results back only after COMMIT. The
 * main thread's event loop never blocks on the WAL fsync, so it keeps accepting connections
 * and checking messages while a batch reaches the disk.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EnrollError } from '../../errors.js';
import { SqliteStore } from '../../store/sqlite.js';
import type { CommitEnrollmentInput, EnrolleeRecord } from '../../store/types.js';
import { SqliteTokenStore, type RedeemTokenInput } from '../../store/tokens.js';

/** The commit connection's page cache. */
const COMMIT_CACHE_KIB = 32 * 1024;
/** WAL pages (4 KiB) after which the commit connection checkpoints itself: 64 MiB. */
const COMMIT_CHECKPOINT_PAGES = 16_384;

/** `redemptions`: token redemptions (issue 23), committed in the same round as the enrollments. */
export type CommitRequest = { inputs: CommitEnrollmentInput[]; redemptions?: RedeemTokenInput[] } | { close: true };

export type CommitResultItem = { rec: EnrolleeRecord } | { code: EnrollError['code']; message: string };

export type CommitResponse =
  | { results: CommitResultItem[]; redeemed?: ({ ok: true } | { code: EnrollError['code']; message: string })[] }
  /** The batch failed as a whole: nothing of it is committed. */
  | { error: { code: EnrollError['code'] | undefined; message: string } };

const { path } = workerData as { path: string };
let store: SqliteStore | undefined;
// The main thread's connection checked the file's integrity when the service opened it.
// A larger page cache than SQLite's 2 MiB: the interior pages of the B-trees each batch
// writes stay cached between batches (at a million records they are several MiB), instead of
// being read back from the OS for every batch. And checkpoints beside the commits rather than
// inside them: a checkpoint run by COMMIT (SQLite's autocheckpoint) copies pages into the
// store file and syncs it before COMMIT returns, holding up the batch's acceptances and the
// next batch. The audit thread's connection, which appends every 50 ms at SQLite's default
// threshold (1000 pages), checkpoints instead; past COMMIT_CHECKPOINT_PAGES (a stopped audit
// thread, say) this connection still does.
const open = () =>
  SqliteStore.open(path, { integrityCheck: false, cacheKiB: COMMIT_CACHE_KIB, walAutocheckpointPages: COMMIT_CHECKPOINT_PAGES });
try {
  // Opened at once, so that the first batch does not wait for it.
  store = open();
} catch {
  // Reported with the first batch (below), which retries the open.
}

let tokens: SqliteTokenStore | undefined;

async function commit(req: { inputs: CommitEnrollmentInput[]; redemptions?: RedeemTokenInput[] }): Promise<CommitResponse> {
  try {
    store ??= open();
    // Settles after COMMIT: with synchronous=FULL the batch's WAL frames are on disk.
    const out = req.inputs.length > 0 ? await store.commitEnrollments(req.inputs) : [];
    const results = out.map((r) => (r instanceof EnrollError ? { code: r.code, message: r.message } : { rec: r }));
    if (!req.redemptions || req.redemptions.length === 0) return { results };
    // The token tables' own connection (store/tokens.ts), on this thread: one more COMMIT
    // only in a round that has both kinds.
    try {
      tokens ??= SqliteTokenStore.open(path);
      const redeemed = tokens.redeemTokens(req.redemptions).map((e) => (e ? { code: e.code, message: e.message } : { ok: true as const }));
      return { results, redeemed };
    } catch (err) {
      // The enrollments above are committed; only the redemptions failed, as a whole.
      const message = `${(err as { code?: unknown })?.code ?? 'error'}: ${(err as Error)?.message ?? String(err)}`;
      return { results, redeemed: req.redemptions.map(() => ({ code: 'ERR_STORE' as const, message })) };
    }
  } catch (err) {
    // SQLite's own code (SQLITE_BUSY, SQLITE_IOERR_…) goes into the message for the log.
    const sqlite = (err as { code?: unknown } | null)?.code;
    const message = (err as Error)?.message ?? String(err);
    return {
      error: {
        code: err instanceof EnrollError ? err.code : undefined,
        message: typeof sqlite === 'string' && !(err instanceof EnrollError) ? `${sqlite}: ${message}` : message,
      },
    };
  }
}

// One batch at a time: the main thread sends the next one only after this one's answer.
parentPort!.on('message', (req: CommitRequest) => {
  if ('close' in req) {
    // Closing the connection checkpoints the WAL if this is the last one on the file.
    void Promise.all([store?.close(), tokens?.close()]).finally(() => parentPort!.close());
    return;
  }
  void commit(req).then((res) => parentPort!.postMessage(res));
});
