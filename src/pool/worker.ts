/**
 * One thread of the enrollment pool (pool.ts). It receives IK_A's private key and the store
 * key once, in workerData (never in a message), prepares IK_A as a KeyObject and a signer,
 * and wipes its copies of the bytes. Later messages carry nothing secret: SPK records are
 * sealed under the store key, jobs are public bytes (job.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { importX25519Private, x25519PublicKey } from '../crypto/x25519.js';
import { xeddsaSigner } from '../crypto/xeddsa.js';
import { Sealer } from '../store/sealing.js';
import type { SignedPrekeyRecord } from '../store/types.js';
import { runOpenJob, type JobKeys, type OpenJob, type OpenResult } from './job.js';

export type PoolRequest =
  /** An SPK the main thread has seen (at start, or after a rotation): before any job that needs it. */
  | { type: 'spk'; spk: SignedPrekeyRecord }
  | { type: 'jobs'; jobs: OpenJob[] };
export type PoolReply = { type: 'ready' } | { type: 'results'; results: OpenResult[] };

const data = workerData as { ikAPrivate: Uint8Array; storeKey: Uint8Array };
const keys: JobKeys = {
  ikAPublic: x25519PublicKey(data.ikAPrivate),
  ikAPrivate: importX25519Private(data.ikAPrivate, 'IK_A'),
  sign: xeddsaSigner(data.ikAPrivate),
  sealer: new Sealer(Uint8Array.from(data.storeKey)),
  spks: new Map(),
};
data.ikAPrivate.fill(0);
data.storeKey.fill(0);

parentPort!.on('message', (req: PoolRequest) => {
  if (req.type === 'spk') {
    keys.spks.set(req.spk.id, req.spk);
    return;
  }
  const results = req.jobs.map((job) => runOpenJob(keys, job));
  parentPort!.postMessage({ type: 'results', results } satisfies PoolReply);
});
parentPort!.postMessage({ type: 'ready' } satisfies PoolReply);
