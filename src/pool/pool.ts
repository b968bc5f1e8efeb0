/**
 * The enrollment pool (issue 23 item 1): node:worker_threads that run the per-message work
 * of enrollments (job.ts: decapsulation, DHs, AEAD, POP, the credential signature, the
 * sealed acceptance), so that one `service start` uses every core. The main thread keeps
 * what needs one place: the sockets and the order of answers on a stream (server.ts reads
 * the next message only after answering), checks 1–3 and the lockout and per-source
 * reservations (enroll.ts), and the durable commit (commits.ts), which always precedes the
 * acceptance.
 *
 * Keys: IK_A and the store key reach each worker once, in workerData. An SPK reaches every
 * worker (sealed, as the store holds it) the first time a message needs it, at start or
 * after `service prekey rotate`, posted on the worker's port before that message's job: a
 * port delivers in order, so no job can arrive before its SPK. The credential-signing key
 * (CSK, roles/service/csk.ts), which signs version 2 credentials (attributes, §4.6), reaches
 * every worker the same way: its seed sealed under the store key, posted at start, first
 * thing to a replacement, and to every worker that has not seen it before a job that names
 * it (a job names its CSK by certificate; the CSK does not change within a process today).
 *
 * A worker that dies (a crash, or terminate()): its jobs in flight fail with ERR_INTERNAL,
 * which the server answers UNAVAILABLE; nothing was committed for them, since commits
 * happen only after a job's result. The worker is replaced at once. A slot whose worker
 * dies three times before it is even ready stops being replaced; with no worker left, jobs
 * run in this thread (the pool's own copy of the job code), and the failure is reported.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { toHex } from '../crypto/bytes.js';
import { xeddsaSigner } from '../crypto/xeddsa.js';
import { EnrollError } from '../errors.js';
import type { Attributes } from '../protocol/codec/attributes.js';
import { deriveStoreKey, type ServiceHome } from '../roles/service/home.js';
import { serviceCsk } from '../roles/service/csk.js';
import type { SignedPrekeyRecord } from '../store/types.js';
import { runCertJob, type CertJob, type CertKeys, type CertResult } from './cert-job.js';
import { runOpenJob, type JobKeys, type OpenJob, type OpenResult } from './job.js';
import { cskKey, loadCsk, type PoolCsk } from './keys.js';
import type { PoolPki, PoolReply, PoolRequest } from './worker.js';

export const MAX_WORKERS = 64;
/** Jobs per message to a worker: enough to amortise postMessage, small enough to spread a burst. */
const MAX_BATCH = 16;
const MAX_EARLY_DEATHS = 3;

/** The default pool size: the cores this process may use. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(MAX_WORKERS, availableParallelism()));
}

interface Slot {
  index: number;
  worker: Worker | undefined;
  ready: boolean;
  earlyDeaths: number;
  /** SPKs this worker was sent, as `id:publicKey`. */
  spks: Set<string>;
  /** CSKs this worker was sent, by cskKey. */
  csks: Set<string>;
  pending: Map<number, { resolve(r: OpenResult | CertResult): void; reject(err: unknown): void }>;
  batch: (OpenJob | CertJob)[];
}

export class EnrollPool {
  readonly #slots: Slot[] = [];
  readonly #ikAPrivate: Uint8Array;
  readonly #onError: (reason: string) => void;
  readonly #local: JobKeys;
  /** Token enrollment's keys (setPki): the sealed form each worker is sent, and this thread's own for the fallback. */
  #pki: PoolPki | undefined;
  #localCert: CertKeys | undefined;
  /** The CSK last given (open): what a replacement worker is sent first. */
  #csk: PoolCsk;
  #next = 1;
  #closed = false;
  /** Workers started in all (replacements included), and jobs run on workers, for tests and the log. */
  started = 0;
  jobs = 0;

  private constructor(svc: ServiceHome, onError: (reason: string) => void) {
    this.#ikAPrivate = svc.ikA.privateKey;
    this.#onError = onError;
    this.#local = { ikAPublic: svc.ikA.publicKey, ikAPrivate: svc.ikAPrivate, sign: xeddsaSigner(svc.ikA.privateKey), sealer: svc.sealer, spks: new Map(), csks: new Map() };
    const csk = serviceCsk(svc);
    this.#csk = { certificate: csk.certificate, seedSealed: csk.seedSealed };
  }

  /** Starts `workers` threads (default: one per available core). */
  static start(svc: ServiceHome, opts: { workers?: number; onError: (reason: string) => void }): EnrollPool {
    const n = opts.workers ?? defaultWorkers();
    if (!Number.isSafeInteger(n) || n < 1 || n > MAX_WORKERS) throw new EnrollError('ERR_INVALID_ARG', `"workers" must be 1..${MAX_WORKERS}`);
    const pool = new EnrollPool(svc, opts.onError);
    for (let i = 0; i < n; i++) {
      const slot: Slot = { index: i, worker: undefined, ready: false, earlyDeaths: 0, spks: new Set(), csks: new Set(), pending: new Map(), batch: [] };
      pool.#slots.push(slot);
      pool.#spawn(slot);
    }
    return pool;
  }

  get size(): number {
    return this.#slots.length;
  }

  /** Resolves once every live worker has prepared its keys (the service logs `listening` after it). */
  async ready(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#slots.some((s) => s.worker !== undefined && !s.ready) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** The worker threads' ids (for tests, and /proc accounting in the benchmark). */
  threadIds(): number[] {
    return this.#slots.flatMap((s) => (s.worker !== undefined ? [s.worker.threadId] : []));
  }

  /** @internal Jobs in flight on the worker with this thread id (tests: a kill that is sure to lose some). */
  inFlight(threadId: number): number {
    return this.#slots.find((s) => s.worker?.threadId === threadId)?.pending.size ?? 0;
  }

  /** @internal Kills one worker as a crash would (tests): its jobs in flight fail, and it is replaced. */
  async terminateThread(threadId: number): Promise<void> {
    const slot = this.#slots.find((s) => s.worker?.threadId === threadId);
    if (slot?.worker === undefined) throw new EnrollError('ERR_INVALID_ARG', `no pool worker has thread id ${threadId}`);
    await slot.worker.terminate();
  }

  #spawn(slot: Slot): void {
    slot.ready = false;
    slot.spks = new Set();
    slot.csks = new Set();
    const ikAPrivate = Uint8Array.from(this.#ikAPrivate);
    const storeKey = deriveStoreKey(ikAPrivate);
    let w: Worker;
    try {
      // workerData is cloned here, synchronously: our copies are wiped right after.
      w = new Worker(new URL('./worker.js', import.meta.url), { workerData: { ikAPrivate, storeKey } });
    } catch (err) {
      this.#onError(`cannot start pool worker ${slot.index}: ${(err as Error).message}`);
      slot.worker = undefined;
      return;
    } finally {
      ikAPrivate.fill(0);
      storeKey.fill(0);
    }
    this.started++;
    w.unref();
    slot.worker = w;
    // Before any job: a port delivers in order, so a replacement has the CA key before its first certificate.
    if (this.#pki !== undefined) w.postMessage({ type: 'pki', pki: this.#pki } satisfies PoolRequest);
    w.postMessage({ type: 'csk', csk: this.#csk } satisfies PoolRequest);
    slot.csks.add(cskKey(this.#csk.certificate));
    w.on('message', (m: PoolReply) => {
      if (m.type === 'ready') {
        slot.ready = true;
        slot.earlyDeaths = 0;
        return;
      }
      for (const r of m.results) {
        const p = slot.pending.get(r.id);
        if (p === undefined) continue;
        slot.pending.delete(r.id);
        p.resolve(r);
      }
    });
    w.on('error', (err) => this.#lost(slot, w, `pool worker ${slot.index} failed: ${err.message}`));
    w.on('exit', (code) => this.#lost(slot, w, `pool worker ${slot.index} exited (${code})`));
  }

  #lost(slot: Slot, w: Worker, reason: string): void {
    if (slot.worker !== w) return;
    slot.worker = undefined;
    const early = !slot.ready;
    const lost = [...slot.pending.values()];
    slot.pending.clear();
    slot.batch = [];
    for (const p of lost) p.reject(new EnrollError('ERR_INTERNAL', `${reason} with this message in flight; nothing was recorded`));
    if (this.#closed) return;
    if (early) slot.earlyDeaths++;
    if (slot.earlyDeaths >= MAX_EARLY_DEATHS) {
      this.#onError(`${reason}; ${lost.length} requests answered UNAVAILABLE; it died ${slot.earlyDeaths} times before it was ready and is not replaced`);
      return;
    }
    this.#onError(`${reason}; ${lost.length} requests answered UNAVAILABLE; replaced`);
    this.#spawn(slot);
  }

  /**
   * Runs one job on the least busy worker. `spk` is the approval's SPK record as the store
   * returned it; a worker that has not seen it (nor any other worker) is sent it first.
   * `credential`: a version 2 credential with these attributes, signed with `csk` (the
   * service's, serviceCsk), which likewise reaches every worker that has not seen it first.
   */
  open(job: Omit<OpenJob, 'id' | 'spkId' | 'spkPublicKey' | 'v2'>, spk: SignedPrekeyRecord, credential?: { attributes: Attributes; csk: PoolCsk }): Promise<OpenResult> {
    const cskId = credential === undefined ? undefined : cskKey(credential.csk.certificate);
    const full: OpenJob = { ...job, id: this.#next++, spkId: spk.id, spkPublicKey: spk.publicKey };
    if (credential !== undefined) full.v2 = { attributes: credential.attributes, csk: cskId! };
    const live = this.#slots.filter((s) => s.worker !== undefined);
    if (live.length === 0 || this.#closed) {
      this.#local.spks.set(spk.id, spk);
      if (credential !== undefined && !this.#local.csks.has(cskId!)) {
        try {
          this.#local.csks.clear();
          this.#local.csks.set(cskId!, loadCsk(this.#local.sealer, credential.csk));
        } catch (err) {
          return Promise.reject(err);
        }
      }
      return Promise.resolve(runOpenJob(this.#local, full));
    }
    if (credential !== undefined) {
      // A CSK not seen yet (none changes within a process today) goes to every worker now,
      // and to replacements from now on, before any job that needs it.
      if (cskId !== cskKey(this.#csk.certificate)) this.#csk = credential.csk;
      for (const s of live) {
        if (!s.csks.has(cskId!)) {
          s.csks.add(cskId!);
          s.worker!.postMessage({ type: 'csk', csk: credential.csk } satisfies PoolRequest);
        }
      }
    }
    const key = `${spk.id}:${toHex(spk.publicKey)}`;
    // A new SPK (a rotation) goes to every worker now, before any job that needs it.
    for (const s of live) {
      if (!s.spks.has(key)) {
        s.spks.add(key);
        s.worker!.postMessage({ type: 'spk', spk } satisfies PoolRequest);
      }
    }
    return this.#enqueue(this.#leastBusy()!, full) as Promise<OpenResult>;
  }

  /**
   * Token enrollment's keys (issue 23 item 5), once at the HTTPS listener's start: the CA key
   * as the keystore holds it (sealed under the store key; each worker unseals it), the HTTPS
   * public key and the CA's fingerprint. Sent to every worker now, and to each replacement
   * before its first job; `local` is this thread's own, for when no worker is left.
   */
  setPki(pki: PoolPki, local: CertKeys): void {
    this.#pki = pki;
    this.#localCert = local;
    for (const s of this.#slots) s.worker?.postMessage({ type: 'pki', pki } satisfies PoolRequest);
  }

  /**
   * Runs one token or renewal job (cert-job.ts) on the least busy worker. A worker lost with
   * it in flight rejects it with ERR_INTERNAL: nothing was redeemed or recorded for it.
   */
  issue(job: Omit<CertJob, 'id' | 'kind'>): Promise<CertResult> {
    const full: CertJob = { kind: 'cert', id: this.#next++, ...job };
    const slot = this.#closed ? undefined : this.#leastBusy();
    if (slot === undefined) {
      if (this.#localCert === undefined) return Promise.reject(new EnrollError('ERR_INTERNAL', 'the pool was given no token keys (setPki)'));
      return Promise.resolve(runCertJob(this.#localCert, full));
    }
    return this.#enqueue(slot, full) as Promise<CertResult>;
  }

  #leastBusy(): Slot | undefined {
    let slot: Slot | undefined;
    for (const s of this.#slots) if (s.worker !== undefined && (slot === undefined || s.pending.size < slot.pending.size)) slot = s;
    return slot;
  }

  #enqueue(chosen: Slot, job: OpenJob | CertJob): Promise<OpenResult | CertResult> {
    this.jobs++;
    return new Promise<OpenResult | CertResult>((resolve, reject) => {
      chosen.pending.set(job.id, { resolve, reject });
      chosen.batch.push(job);
      if (chosen.batch.length >= MAX_BATCH) this.#post(chosen);
      else if (chosen.batch.length === 1) setImmediate(() => this.#post(chosen));
    });
  }

  #post(slot: Slot): void {
    const jobs = slot.batch;
    slot.batch = [];
    if (jobs.length === 0 || slot.worker === undefined) return;
    slot.worker.postMessage({ type: 'jobs', jobs } satisfies PoolRequest);
  }

  /** Stops every worker. Jobs still in flight fail (the server closed its listener first). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#slots.map((s) => s.worker?.terminate()));
  }
}
