/**
 * The benchmark's data: enrollees precomputed in worker threads (their bundles' OPKs are
 * real key pairs, sealed with the service's own sealer when loaded), loaded into a service
 * home's store as approved, pending enrollees; and the bulk background records
 * (1,000,000 pending + 1,000,000 enrolled) of the scale run.
 */
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { generateX25519 } from '../src/crypto/x25519.js';
import { ServiceHome, STORE_FILE } from '../src/roles/service/home.js';
import type { BundleRecord } from '../src/store/types.js';
import { attributesColumn } from '../src/store/sqlite.js';
import type { Attributes } from '../src/protocol/codec/attributes.js';

/** The enrollment message's length per EKA version (docs/protocol.md §5.3, §5A.2). */
export const MESSAGE_LEN = { 1: 176, 2: 1265 } as const;
/** bundleId 16 | OPK pub 32 | OPK priv 32 | EIK_B pub 32 | enrollee id 32 | message (176 or 1265) | k_s2e 32. */
export function recordLen(eka: 1 | 2): number {
  return 16 + 32 + 32 + 32 + 32 + MESSAGE_LEN[eka] + 32;
}
export const RECORD_LEN = recordLen(1);
const OFF = { bundleId: 0, opkPub: 16, opkPriv: 48, eikB: 80, id: 112, message: 144 } as const;

export class Enrollees {
  readonly #len: number;
  constructor(readonly data: Uint8Array, readonly count: number, readonly eka: 1 | 2 = 1) {
    this.#len = recordLen(eka);
  }
  #field(i: number, off: number, len: number): Uint8Array {
    const o = i * this.#len + off;
    return this.data.subarray(o, o + len);
  }
  bundleId(i: number) { return this.#field(i, OFF.bundleId, 16); }
  opkPublic(i: number) { return this.#field(i, OFF.opkPub, 32); }
  opkPrivate(i: number) { return this.#field(i, OFF.opkPriv, 32); }
  eikB(i: number) { return this.#field(i, OFF.eikB, 32); }
  id(i: number) { return this.#field(i, OFF.id, 32); }
  message(i: number) { return this.#field(i, OFF.message, MESSAGE_LEN[this.eka]); }
  kS2e(i: number) { return this.#field(i, OFF.message + MESSAGE_LEN[this.eka], 32); }
  /** Records [from, to) as their own set. */
  slice(from: number, to: number): Enrollees {
    return new Enrollees(this.data.subarray(from * this.#len, to * this.#len), to - from, this.eka);
  }
}

export interface ServicePublic {
  ikA: Uint8Array;
  spkA: Uint8Array;
  spkSig: Uint8Array;
  addr: string;
  /** PQSPK_A and its SHA-256 (KEM_hash), for EKA v2 enrollees. */
  kemPublic: Uint8Array;
  kemHash: Uint8Array;
}

/** Reads what an enrollee's bundle needs from an initialised home. */
export async function servicePublic(home: string): Promise<ServicePublic> {
  const svc = await ServiceHome.open(home);
  try {
    const spk = await svc.store.currentSignedPrekey();
    if (!spk?.kem) throw new Error('the service has no SPK with a KEM prekey');
    return { ikA: svc.ikA.publicKey, spkA: spk.publicKey, spkSig: spk.signature, addr: svc.settings.address, kemPublic: spk.kem.publicKey, kemHash: spk.kem.hash };
  } finally {
    await svc.close();
  }
}

/** Makes `count` enrollees of EKA version `eka` in `threads` worker threads. */
export async function precompute(pub: ServicePublic, count: number, threads: number, expiresAt: number, eka: 1 | 2 = 1): Promise<Enrollees> {
  const per = Math.ceil(count / threads);
  const parts = await Promise.all(
    Array.from({ length: threads }, (_, t) => {
      const n = Math.max(0, Math.min(per, count - t * per));
      if (n === 0) return Promise.resolve(new Uint8Array(0));
      return new Promise<Uint8Array>((resolve, reject) => {
        const w = new Worker(new URL('./precompute-worker.js', import.meta.url), {
          workerData: { ikA: pub.ikA, spkA: pub.spkA, spkSig: pub.spkSig, addr: pub.addr, expiresAt, count: n, eka, kemPublic: pub.kemPublic, kemHash: pub.kemHash },
        });
        w.once('message', (m: Uint8Array) => resolve(m));
        w.once('error', reject);
      });
    }),
  );
  const data = new Uint8Array(count * recordLen(eka));
  let o = 0;
  for (const p of parts) {
    data.set(p, o);
    o += p.length;
  }
  return new Enrollees(data, count, eka);
}

/**
 * Enrollee `i` of `e`'s bundle row, approved, as the store's insertBundles takes it: its OPK
 * sealed with `svc`'s sealer, its EKA version the set's (both loaders, SQLite and PostgreSQL).
 */
function approvedBundleRow(svc: ServiceHome, e: Enrollees, i: number, spkId: number, enroller: Uint8Array, now: number): BundleRecord {
  const id = Uint8Array.from(e.bundleId(i));
  return {
    id,
    spkId,
    opkPublic: Uint8Array.from(e.opkPublic(i)),
    opkPrivateSealed: svc.sealer.seal(e.opkPrivate(i), 'opk', id),
    addr: svc.settings.address,
    enroller,
    createdAt: now,
    expiresAt: now + svc.settings.bundleTtl,
    state: 'approved',
    eka: e.eka,
  };
}

export function storePath(home: string): string {
  return join(ServiceHome.dir(home), STORE_FILE);
}

/**
 * Loads enrollees as approved and pending: their bundles through the store's own
 * insertBundles (OPKs sealed with the service's sealer, state approved), the enrollee rows
 * as `approve()` writes them (one big transaction instead of one per approval).
 * Returns the enroller key the bundles were issued to. `attributes`: assigned to every one, as
 * an approval with `--attr` records them (the attributes row).
 */
export async function loadEnrollees(home: string, sets: Enrollees[], now: number, approvalTtl: number, attributes?: Attributes): Promise<Uint8Array> {
  const svc = await ServiceHome.open(home);
  let enroller: Uint8Array;
  try {
    const spk = await svc.store.currentSignedPrekey();
    if (!spk) throw new Error('the service has no SPK');
    enroller = generateX25519().publicKey;
    await svc.store.allowEnroller(enroller, 'bench enroller', now);
    for (const e of sets) {
      const rows: BundleRecord[] = [];
      for (let i = 0; i < e.count; i++) rows.push(approvedBundleRow(svc, e, i, spk.id, enroller, now));
      await svc.store.insertBundles(rows);
    }
  } finally {
    await svc.close();
  }
  const db = new Database(storePath(home));
  try {
    db.pragma('busy_timeout = 5000');
    const ins = db.prepare(
      `INSERT INTO enrollees (id, method, state, eik_b, pet_name, enroller, bundle_id, approved_at, expires_at, attributes)
       VALUES (?, 'x3dh', 'pending', ?, ?, ?, ?, ?, ?, ?)`,
    );
    // As approve() stores them (sqlite.ts attributesColumn): canonical JSON, NULL for none.
    const attrs = attributesColumn(attributes);
    db.transaction(() => {
      let n = 0;
      for (const e of sets) {
        for (let i = 0; i < e.count; i++, n++) {
          ins.run(Buffer.from(e.id(i)), Buffer.from(e.eikB(i)), `bench-${n}`, Buffer.from(enroller), Buffer.from(e.bundleId(i)), now, now + approvalTtl, attrs);
        }
      }
    }).immediate();
  } finally {
    db.close();
  }
  return enroller;
}

export interface BulkResult {
  pending: number;
  enrolled: number;
  seconds: number;
}

/**
 * Bulk background records straight into SQLite, in transactions of `chunk` rows: `pending`
 * approved enrollees (each with its approved bundle and a sealed-size OPK) and `enrolled`
 * enrollees (bundle consumed, IK_B set, EK_B recorded). Sizes are the real ones; ids are
 * SHA-256 of a random EIK_B, so all distinct. Random bytes stand in for the sealed OPKs:
 * these enrollees never enroll during the run, and their bytes cost the store the same.
 */
export function bulkLoad(home: string, opts: { pending: number; enrolled: number; now: number; chunk?: number; progress?: (done: number, total: number) => void }): BulkResult {
  const t0 = performance.now();
  const db = new Database(storePath(home));
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -524288');
  db.pragma('busy_timeout = 5000');
  const spkId = Number(db.prepare('SELECT id FROM signed_prekeys ORDER BY id DESC LIMIT 1').pluck().get());
  const addr = String(db.prepare('SELECT addr FROM bundles LIMIT 1').pluck().get() ?? 'tcp://127.0.0.1:4100');
  const insBundle = db.prepare(
    `INSERT INTO bundles (id, spk_id, opk_public, opk_private_sealed, addr, enroller, created_at, expires_at, state)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insPending = db.prepare(
    `INSERT INTO enrollees (id, method, state, eik_b, pet_name, enroller, bundle_id, approved_at, expires_at)
     VALUES (?, 'x3dh', 'pending', ?, ?, ?, ?, ?, ?)`,
  );
  const insEnrolled = db.prepare(
    `INSERT INTO enrollees (id, method, state, eik_b, ik_b, pet_name, enroller, bundle_id, approved_at, expires_at, enrolled_at)
     VALUES (?, 'x3dh', 'enrolled', NULL, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insEk = db.prepare(`INSERT INTO accepted_ek (ek_b, accepted_at) VALUES (?, ?)`);
  const enrollers = Array.from({ length: 16 }, () => randomBytes(32));
  const chunk = opts.chunk ?? 50_000;
  const total = opts.pending + opts.enrolled;
  const now = opts.now;
  let done = 0;
  const idOf = (eik: Buffer) => createHash('sha256').update(eik).digest();
  while (done < total) {
    const n = Math.min(chunk, total - done);
    // One random pool per chunk, sliced per field: 16 + 32 + 60 + 32 + 32 bytes per row.
    const pool = randomBytes(n * 172);
    db.transaction(() => {
      for (let j = 0; j < n; j++) {
        const k = done + j;
        const o = j * 172;
        const bundleId = pool.subarray(o, o + 16);
        const opkPub = pool.subarray(o + 16, o + 48);
        const sealed = pool.subarray(o + 48, o + 108);
        const a = pool.subarray(o + 108, o + 140);
        const b = pool.subarray(o + 140, o + 172);
        const enroller = enrollers[k & 15]!;
        if (k < opts.pending) {
          insBundle.run(bundleId, spkId, opkPub, sealed, addr, enroller, now - 3600, now + 7 * 86400, 'approved');
          insPending.run(idOf(a), a, `device-${k}`, enroller, bundleId, now - 600, now + 30 * 86400);
        } else {
          insBundle.run(bundleId, spkId, opkPub, null, addr, enroller, now - 86400, now + 6 * 86400, 'consumed');
          insEnrolled.run(idOf(a), b, `device-${k}`, enroller, bundleId, now - 86400, now + 86400, now - 80000);
          insEk.run(sealed.subarray(0, 32), now - 80000);
        }
      }
    }).immediate();
    done += n;
    opts.progress?.(done, total);
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  // synchronous=OFF left the whole file dirty in the page cache: written back now, before the
  // service starts, or the kernel's writeback of a gigabyte would compete with the measured
  // run's fsyncs (seconds-long stalls at 1M that the 1k run never sees).
  const fd = openSync(storePath(home), 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { pending: opts.pending, enrolled: opts.enrolled, seconds: (performance.now() - t0) / 1000 };
}

/**
 * loadEnrollees for a PostgreSQL store: `home` (a copy of the base home) opened on `url`. The
 * base home's current SPK is copied into the database first (sealed under the same IK_A's
 * store key, so it opens there), since the precomputed enrollees answer that SPK. Bundles go
 * through the store's insertBundles; the pending rows in chunks, one multi-row INSERT each.
 */
export async function loadEnrolleesPg(base: string, home: string, url: string, sets: Enrollees[], now: number, approvalTtl: number): Promise<void> {
  const b = await ServiceHome.open(base);
  const spkRec = await b.store.currentSignedPrekey();
  await b.close();
  if (!spkRec) throw new Error('the base home has no SPK');
  const svc = await ServiceHome.open(home, { store: url });
  try {
    let spk = await svc.store.currentSignedPrekey();
    if (!spk || Buffer.compare(Buffer.from(spk.publicKey), Buffer.from(spkRec.publicKey)) !== 0) {
      spk = await svc.store.addSignedPrekey({ publicKey: spkRec.publicKey, privateSealed: spkRec.privateSealed, signature: spkRec.signature, createdAt: spkRec.createdAt });
    }
    const enroller = generateX25519().publicKey;
    await svc.store.allowEnroller(enroller, 'bench enroller', now);
    let n = 0;
    for (const e of sets) {
      for (let from = 0; from < e.count; from += 5000) {
        const to = Math.min(e.count, from + 5000);
        const rows: BundleRecord[] = [];
        for (let i = from; i < to; i++) rows.push(approvedBundleRow(svc, e, i, spk.id, enroller, now));
        await svc.store.insertBundles(rows);
        const ids: Buffer[] = [];
        const eiks: Buffer[] = [];
        const names: string[] = [];
        const bundles: Buffer[] = [];
        for (let i = from; i < to; i++, n++) {
          ids.push(Buffer.from(e.id(i)));
          eiks.push(Buffer.from(e.eikB(i)));
          names.push(`bench-${n}`);
          bundles.push(Buffer.from(e.bundleId(i)));
        }
        await svc.pg!.query(
          `INSERT INTO enrollees (id, method, state, eik_b, pet_name, enroller, bundle_id, approved_at, expires_at)
           SELECT id, 'x3dh', 'pending', eik, name, $5, bundle, $6, $7 FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::bytea[]) AS u(id, eik, name, bundle)`,
          [ids, eiks, names, bundles, Buffer.from(enroller), now, now + approvalTtl],
        );
      }
    }
  } finally {
    await svc.close();
  }
}
