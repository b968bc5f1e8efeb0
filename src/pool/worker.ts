/**
 * One thread of the enrollment pool (pool.ts). It receives IK_A's private key and the store
 * key once, in workerData (never in a message), prepares IK_A as a KeyObject and a signer,
 * and wipes its copies of the bytes. Later messages carry nothing secret: SPK records and
 * the CSK's seed are sealed under the store key, jobs are public bytes (job.ts).
 *
 * Token enrollment's code (cert-job.ts and the X.509 modules under it, most of a worker's
 * start-up) is loaded by the first token job, not at start: a service that serves no tokens,
 * or serves them later, does not pay for it in every worker of every start (issue 24).
 * Messages that arrive while it loads wait behind it, so every message is still handled in
 * the order it was sent.
 */
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import type { TokenAlg } from '../protocol/token/claims.js';
import type { CertJob, CertKeys, CertResult } from './cert-job.js';
import { importX25519Private, x25519PublicKey } from '../crypto/x25519.js';
import { xeddsaSigner } from '../crypto/xeddsa.js';
import { Sealer } from '../store/sealing.js';
import type { SignedPrekeyRecord } from '../store/types.js';
import { runOpenJob, type JobKeys, type OpenJob, type OpenResult } from './job.js';
import { cskKey, loadCsk, type PoolCsk } from './keys.js';

/**
 * Token enrollment's keys as a worker is sent them (pool.ts setPki): the CA key as the
 * keystore holds it, sealed under the store key (roles/service/pki.ts: purpose `ca-key`,
 * AAD the SHA-256 of the CA certificate), and public parts.
 */
export interface PoolPki {
  caDer: Uint8Array;
  caKeySealed: Uint8Array;
  /** The HTTPS key's public half, SubjectPublicKeyInfo DER: it verifies tokens. */
  httpsSpki: Uint8Array;
  tokenAlg: TokenAlg;
  caFingerprint: string;
}

export type PoolRequest =
  /** An SPK the main thread has seen (at start, or after a rotation): before any job that needs it. */
  | { type: 'spk'; spk: SignedPrekeyRecord }
  /** Token enrollment's keys: at the HTTPS listener's start, and first thing to a replacement. */
  | { type: 'pki'; pki: PoolPki }
  /** The credential-signing key (its seed sealed): at start, first thing to a replacement, and before any job that names one not sent yet. */
  | { type: 'csk'; csk: PoolCsk }
  | { type: 'jobs'; jobs: (OpenJob | CertJob)[] };
export type PoolReply = { type: 'ready' } | { type: 'results'; results: (OpenResult | CertResult)[] };

const data = workerData as { ikAPrivate: Uint8Array; storeKey: Uint8Array };
const keys: JobKeys = {
  ikAPublic: x25519PublicKey(data.ikAPrivate),
  ikAPrivate: importX25519Private(data.ikAPrivate, 'IK_A'),
  sign: xeddsaSigner(data.ikAPrivate),
  sealer: new Sealer(Uint8Array.from(data.storeKey)),
  spks: new Map(),
  csks: new Map(),
};
/** CSKs are one per process in practice (roles/service/csk.ts); bounded anyway. */
const MAX_CSKS = 8;
let cskError: string | undefined;
data.ikAPrivate.fill(0);
data.storeKey.fill(0);

/** Token enrollment's module, once the first token job has loaded it. */
let certModule: typeof import('./cert-job.js') | undefined;
/** The keys as last sent ('pki'), opened at the first token job after they came. */
let pki: PoolPki | undefined;
let certKeys: CertKeys | undefined;
let pkiError: string | undefined;

function loadPki(p: PoolPki, m: typeof import('./cert-job.js')): CertKeys {
  const pkcs8 = keys.sealer.open(p.caKeySealed, 'ca-key', new Uint8Array(createHash('sha256').update(p.caDer).digest()));
  try {
    const caKey = createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' });
    return {
      clientTemplate: m.clientCertTemplate(p.caDer, caKey),
      httpsPublicKey: createPublicKey({ key: Buffer.from(p.httpsSpki), format: 'der', type: 'spki' }),
      tokenAlg: p.tokenAlg,
      caFingerprint: p.caFingerprint,
    };
  } finally {
    pkcs8.fill(0);
  }
}

/** The keys for a token job: opened from the last 'pki' once (a key that does not open fails each token job, not the worker). */
function certKeysFor(m: typeof import('./cert-job.js')): CertKeys | undefined {
  if (certKeys === undefined && pki !== undefined) {
    try {
      certKeys = loadPki(pki, m);
      pkiError = undefined;
    } catch (err) {
      pkiError = `this pool worker could not load the CA key: ${(err as Error)?.message ?? String(err)}`;
    }
    pki = undefined;
  }
  return certKeys;
}

function runJob(job: OpenJob | CertJob): OpenResult | CertResult {
  if ('kind' in job && job.kind === 'cert') {
    const m = certModule;
    const k = m === undefined ? undefined : certKeysFor(m);
    if (m === undefined || k === undefined) return { id: job.id, ok: false, code: 'ERR_INTERNAL', message: pkiError ?? 'this pool worker was sent no token keys' };
    return m.runCertJob(k, job);
  }
  const open = job as OpenJob;
  if (open.v2 !== undefined && !keys.csks.has(open.v2.csk) && cskError !== undefined) return { id: open.id, ok: false, code: 'ERR_INTERNAL', message: cskError };
  return runOpenJob(keys, open);
}

function handle(req: PoolRequest): void {
  if (req.type === 'spk') {
    keys.spks.set(req.spk.id, req.spk);
    return;
  }
  if (req.type === 'csk') {
    // As for the CA key below: a seed that does not open fails each v2 job, not the worker.
    try {
      const csk = loadCsk(keys.sealer, req.csk);
      if (keys.csks.size >= MAX_CSKS) keys.csks.clear();
      keys.csks.set(cskKey(csk.certificate), csk);
      cskError = undefined;
    } catch (err) {
      cskError = `this pool worker could not load the credential-signing key: ${(err as Error)?.message ?? String(err)}`;
    }
    return;
  }
  if (req.type === 'pki') {
    // Opened at the next token job (certKeysFor). A key that does not open fails each token
    // job (ERR_INTERNAL, a 500 with the reason in the log), not the worker: a crash here
    // would only be replaced, and crash again.
    pki = req.pki;
    certKeys = undefined;
    pkiError = undefined;
    return;
  }
  const results = req.jobs.map(runJob);
  parentPort!.postMessage({ type: 'results', results } satisfies PoolReply);
}

const wantsCertModule = (req: PoolRequest) => certModule === undefined && req.type === 'jobs' && req.jobs.some((j) => 'kind' in j && j.kind === 'cert');
/** The tail of the messages waiting for the token module to load (undefined: none waits). */
let behind: Promise<void> | undefined;

parentPort!.on('message', (req: PoolRequest) => {
  if (behind === undefined && !wantsCertModule(req)) return handle(req);
  const mine = (behind ?? Promise.resolve()).then(async () => {
    if (wantsCertModule(req)) {
      try {
        certModule = await import('./cert-job.js');
      } catch (err) {
        pkiError = `this pool worker could not load token enrollment: ${(err as Error)?.message ?? String(err)}`;
      }
    }
    handle(req);
  });
  behind = mine;
  void mine.finally(() => {
    if (behind === mine) behind = undefined;
  });
});
parentPort!.postMessage({ type: 'ready' } satisfies PoolReply);
