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

export interface CommitRequest {
  inputs: CommitEnrollmentInput[];
}

export type CommitResultItem = { rec: EnrolleeRecord } | { code: EnrollError['code']; message: string };

export type CommitResponse =
  | { results: CommitResultItem[] }
  /** The batch failed as a whole: nothing of it is committed. */
  | { error: { code: EnrollError['code'] | undefined; message: string } };

const { path } = workerData as { path: string };
let store: SqliteStore | undefined;
try {
  // Opened at once, so the first batch does not wait for the store's integrity check.
  store = SqliteStore.open(path);
} catch {
  // Reported with the first batch (below), which retries the open.
}

async function commit(req: CommitRequest): Promise<CommitResponse> {
  try {
    store ??= SqliteStore.open(path);
    // Settles after COMMIT: with synchronous=FULL the batch's WAL frames are on disk.
    const out = await store.commitEnrollments(req.inputs);
    return { results: out.map((r) => (r instanceof EnrollError ? { code: r.code, message: r.message } : { rec: r })) };
  } catch (err) {
    return { error: { code: err instanceof EnrollError ? err.code : undefined, message: (err as Error)?.message ?? String(err) } };
  }
}

// One batch at a time: the main thread sends the next one only after this one's answer.
parentPort!.on('message', (req: CommitRequest) => {
  void commit(req).then((res) => parentPort!.postMessage(res));
});
