/**
 * A worker thread of the benchmark's precomputation: makes `count` enrollees the way the
 * real parties would (a fresh OPK per bundle, a fresh EIK_B per enrollee, `initiate()` for
 * the 176-byte message, or `initiateV2()` for the 1265-byte v2 one) and posts them back packed, RECORD_LEN bytes each
 * (see fixtures.ts for the layout).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { generateX25519 } from '../src/crypto/x25519.js';
import { initiate, initiateV2 } from '../src/protocol/enrollment/index.js';
import type { Bundle } from '../src/protocol/codec/bundle.js';

interface Job {
  ikA: Uint8Array;
  spkA: Uint8Array;
  spkSig: Uint8Array;
  addr: string;
  expiresAt: number;
  count: number;
  /** EKA v2: the bundles carry kemHash and the messages are initiateV2's. */
  eka: 1 | 2;
  kemPublic: Uint8Array;
  kemHash: Uint8Array;
}

const job = workerData as Job;
/** fixtures.ts recordLen (restated: the worker does not load the store's modules). */
const RECORD_LEN = 16 + 32 + 32 + 32 + 32 + (job.eka === 2 ? 1265 : 176) + 32;
const out = new Uint8Array(job.count * RECORD_LEN);
for (let i = 0; i < job.count; i++) {
  const opk = generateX25519();
  const bundleId = new Uint8Array(randomBytes(16));
  // The fields serveBundles puts in a bundle. bundle_sig is checked by the enrollee only and
  // never stored by the service, so it is left out here (bundle signing is timed on its own).
  const bundle: Bundle = {
    version: 1,
    bundleId,
    ikA: job.ikA,
    spkA: job.spkA,
    spkSig: job.spkSig,
    opkA: opk.publicKey,
    expiresAt: job.expiresAt,
    addr: job.addr,
    signature: new Uint8Array(64),
  };
  const eikB = generateX25519();
  const r = job.eka === 2 ? initiateV2({ bundle: { ...bundle, version: 2, kemHash: job.kemHash }, kemPrekey: job.kemPublic, eikB }) : initiate({ bundle, eikB });
  let o = i * RECORD_LEN;
  for (const part of [bundleId, opk.publicKey, opk.privateKey, eikB.publicKey, r.enrolleeId, r.message, r.session.kS2e]) {
    out.set(part, o);
    o += part.length;
  }
  opk.wipe();
  eikB.wipe();
}
parentPort!.postMessage(out, [out.buffer]);
