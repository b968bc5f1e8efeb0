/**
 * The store of the enrollment lifecycle (docs/protocol.md §7.9, §7.10): what revocation,
 * rotation and moving the service read and write, beside the X3DH tables in the same
 * SQLite file.
 *
 * Like tokens.ts, this is a second connection to the store's database file, so the X3DH
 * store (sqlite.ts) keeps its connection and its hot path to itself. Both run with WAL,
 * synchronous=FULL and IMMEDIATE transactions with conditional updates, so the guarantees
 * below hold across connections and processes (`service start` and the CLI commands that
 * change the store run in different processes):
 * - a rotation switches IK_B → IK_B' in one conditional UPDATE (the old key must still be
 *   the key of an enrolled entry) and records the old key, in one transaction; IK_B' can
 *   be neither enrolled elsewhere (the UNIQUE index on enrollees.ik_b) nor a key that was
 *   rotated away from before (`ik_rotations`);
 * - announcements are numbered 1, 2, … inside one transaction, so two concurrent
 *   `service address set` never share a seq.
 * Added with CREATE … IF NOT EXISTS, so an existing store gains them on first use:
 * - ik_rotations:           old IK_B → enrollee id, IK_B', rotated_at;
 * - address_announcements:  seq → address, XEdDSA(IK_A) signature, created_at;
 * - an index on revoked_at for enrollers and enrollees, which the running service polls
 *   for revocations made by other processes (roles/service/lifecycle.ts).
 */
import Database from 'better-sqlite3';
import { EnrollError } from '../errors.js';
import type { AddressAnnouncement } from '../protocol/announce.js';
import type { SignedPrekeyRecord } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS ik_rotations (
  old_ik_b    BLOB PRIMARY KEY CHECK (length(old_ik_b) = 32),
  enrollee_id BLOB NOT NULL,
  new_ik_b    BLOB NOT NULL CHECK (length(new_ik_b) = 32),
  rotated_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ik_rotations_enrollee ON ik_rotations(enrollee_id);
CREATE TABLE IF NOT EXISTS address_announcements (
  seq        INTEGER PRIMARY KEY CHECK (seq >= 1),
  address    TEXT NOT NULL,
  signature  BLOB NOT NULL CHECK (length(signature) = 64),
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS enrollers_revoked_at ON enrollers(revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS enrollees_revoked_at ON enrollees(revoked_at) WHERE revoked_at IS NOT NULL;
`;

type Row = Record<string, unknown>;

function bytes(v: unknown): Uint8Array {
  return new Uint8Array(v as Buffer);
}
function buf(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.length);
}

export interface RevokedEnroller {
  publicKey: Uint8Array;
  revokedAt: number;
}

export interface RevokedEnrollee {
  id: Uint8Array;
  /** Null for an entry revoked while pending (it never had a session key). */
  ikB: Uint8Array | null;
  revokedAt: number;
}

export interface RotationResult {
  enrolleeId: Uint8Array;
  petName: string | null;
  rotatedAt: number;
}

export interface StoredAnnouncement extends AddressAnnouncement {
  createdAt: number;
}

/**
 * The lifecycle tables, as an interface: SqliteLifecycleStore (below) and PgLifecycleStore
 * (pg/lifecycle.ts) keep the same guarantees (file comment).
 */
export interface LifecycleStore {
  revokedEnrollersSince(since: number): Promise<RevokedEnroller[]>;
  revokedEnrolleesSince(since: number): Promise<RevokedEnrollee[]>;
  rotatedTo(ikB: Uint8Array): Promise<Uint8Array | undefined>;
  rotateIdentity(input: { oldIkB: Uint8Array; newIkB: Uint8Array; now: number }): Promise<RotationResult>;
  retireOtherPrekeys(currentId: number, now: number): Promise<number>;
  /** Erases the sealed ML-KEM seeds of retired prekeys no live bundle names (see SqliteLifecycleStore). */
  eraseRetiredKemSeeds(expiredBefore: number): Promise<number>;
  listSignedPrekeys(now: number): Promise<ListedPrekey[]>;
  latestAnnouncement(): Promise<StoredAnnouncement | undefined>;
  addAnnouncement(address: string, now: number, sign: (seq: number) => AddressAnnouncement): Promise<StoredAnnouncement>;
  close(): Promise<void>;
}

export type ListedPrekey = Omit<SignedPrekeyRecord, 'privateSealed'> & { liveBundles: number };

export class SqliteLifecycleStore implements LifecycleStore {
  readonly #db: Database.Database;
  readonly #stmt: ReturnType<SqliteLifecycleStore['prepare']>;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#stmt = this.prepare();
  }

  /** Opens a connection to the service store at `path` (which `service init` made) and adds the lifecycle tables. */
  static open(path: string): SqliteLifecycleStore {
    let db: Database.Database | undefined;
    try {
      db = new Database(path, { fileMustExist: true });
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      db.exec(SCHEMA);
      return new SqliteLifecycleStore(db);
    } catch (cause) {
      if (db?.open) db.close();
      throw new EnrollError('ERR_STORE', `cannot open the lifecycle tables of ${path}: ${(cause as Error).message}`, {
        cause,
        hint: 'run `ockam-enroll service init` first, and check the file is writable',
      });
    }
  }

  private prepare() {
    const db = this.#db;
    return {
      revokedEnrollers: db.prepare(`SELECT public_key, revoked_at FROM enrollers WHERE revoked_at >= ? ORDER BY revoked_at`),
      revokedEnrollees: db.prepare(
        `SELECT id, ik_b, revoked_at FROM enrollees WHERE revoked_at >= ? AND state = 'revoked' ORDER BY revoked_at`,
      ),
      getByIk: db.prepare(`SELECT id, state FROM enrollees WHERE ik_b = ?`),
      wasRotated: db.prepare(`SELECT 1 FROM ik_rotations WHERE old_ik_b = ?`).pluck(),
      rotatedTo: db.prepare(`SELECT new_ik_b FROM ik_rotations WHERE old_ik_b = ?`).pluck(),
      rotate: db.prepare(
        `UPDATE enrollees SET ik_b = ? WHERE ik_b = ? AND state = 'enrolled' RETURNING id, pet_name`,
      ),
      recordRotation: db.prepare(
        `INSERT INTO ik_rotations (old_ik_b, enrollee_id, new_ik_b, rotated_at) VALUES (?, ?, ?, ?)`,
      ),
      retireOthers: db.prepare(`UPDATE signed_prekeys SET retired_at = ? WHERE retired_at IS NULL AND id != ?`),
      listSpks: db.prepare(`SELECT * FROM signed_prekeys ORDER BY id`),
      bundlesBySpk: db.prepare(
        `SELECT spk_id, count(*) AS n FROM bundles WHERE state IN ('issued','approved') AND expires_at > ? GROUP BY spk_id`,
      ),
      latestAnnouncement: db.prepare(`SELECT * FROM address_announcements ORDER BY seq DESC LIMIT 1`),
      nextSeq: db.prepare(`SELECT coalesce(max(seq), 0) + 1 FROM address_announcements`).pluck(),
      insertAnnouncement: db.prepare(
        `INSERT INTO address_announcements (seq, address, signature, created_at) VALUES (?, ?, ?, ?)`,
      ),
    };
  }

  /** Enrollers whose revoked_at is at or after `since` (unix seconds). */
  async revokedEnrollersSince(since: number): Promise<RevokedEnroller[]> {
    return (this.#stmt.revokedEnrollers.all(since) as Row[]).map((r) => ({ publicKey: bytes(r.public_key), revokedAt: Number(r.revoked_at) }));
  }

  /** Revoked enrollees whose revoked_at is at or after `since`. */
  async revokedEnrolleesSince(since: number): Promise<RevokedEnrollee[]> {
    return (this.#stmt.revokedEnrollees.all(since) as Row[]).map((r) => ({
      id: bytes(r.id),
      ikB: r.ik_b == null ? null : bytes(r.ik_b),
      revokedAt: Number(r.revoked_at),
    }));
  }

  /** The key IK_B was rotated to, if it was rotated away from. */
  async rotatedTo(ikB: Uint8Array): Promise<Uint8Array | undefined> {
    const v = this.#stmt.rotatedTo.get(buf(ikB));
    return v == null ? undefined : bytes(v);
  }

  /**
   * Switches an enrolled entry's identity key from `oldIkB` to `newIkB`, atomically. Throws
   * ERR_ROTATE_CONFLICT, and changes nothing, when the new key is the old one, is the key of
   * any entry, or was rotated away from before, or when the old key is no longer the key of
   * an enrolled entry (revoked, or rotated by a racing request).
   */
  async rotateIdentity(input: { oldIkB: Uint8Array; newIkB: Uint8Array; now: number }): Promise<RotationResult> {
    const s = this.#stmt;
    const oldK = buf(input.oldIkB);
    const newK = buf(input.newIkB);
    if (oldK.equals(newK)) throw new EnrollError('ERR_ROTATE_CONFLICT', 'the new identity key is the current one');
    return this.#db.transaction((): RotationResult => {
      if (s.getByIk.get(newK) !== undefined) {
        throw new EnrollError('ERR_ROTATE_CONFLICT', 'the new identity key is already enrolled', { hint: 'run `ockam-enroll enrollee rotate` again: it makes a fresh key' });
      }
      // A key once rotated away from is never taken back: it may be the compromised one.
      if (s.wasRotated.get(newK) !== undefined) {
        throw new EnrollError('ERR_ROTATE_CONFLICT', 'the new identity key was used before and rotated away from');
      }
      let row: Row | undefined;
      try {
        row = s.rotate.get(newK, oldK) as Row | undefined;
      } catch (cause) {
        // A racing enrollment or rotation took IK_B' between the check and the update.
        if ((cause as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
          throw new EnrollError('ERR_ROTATE_CONFLICT', 'the new identity key is already enrolled', { cause });
        }
        throw cause;
      }
      if (!row) throw new EnrollError('ERR_ROTATE_CONFLICT', 'the current identity key is no longer enrolled');
      s.recordRotation.run(oldK, row.id as Buffer, newK, input.now);
      return { enrolleeId: bytes(row.id), petName: (row.pet_name as string | null) ?? null, rotatedAt: input.now };
    }).immediate();
  }

  /**
   * Marks every signed prekey but `currentId` retired at `now`: new bundles take the current
   * one (the store's currentSignedPrekey is the newest unretired row), while bundles already
   * handed out keep working, because each bundle row names its own spk_id and the
   * enrollment lookup follows that id whether or not the SPK is retired. Returns how many it retired.
   */
  async retireOtherPrekeys(currentId: number, now: number): Promise<number> {
    return this.#stmt.retireOthers.run(now, currentId).changes;
  }

  /**
   * Erases (to an empty blob) the sealed seed of every retired SPK's KEM prekey that no
   * issued or approved bundle expiring after `expiredBefore` names (EKA v2, docs/protocol.md
   * §5A.6): the service refuses an expired bundle, so that seed can never decrypt another
   * enrollment, and once it is gone a later theft of the store and IK_A no longer yields the
   * ML-KEM shared secrets of the enrollments it served. The public key stays (KIND_KEM_PREKEY
   * keeps answering). Returns how many it erased. Prepared here, not with the others: a store
   * from before EKA v2 has no kem_prekeys until its first writable open.
   */
  async eraseRetiredKemSeeds(expiredBefore: number): Promise<number> {
    return this.#db
      .prepare(
        `UPDATE kem_prekeys SET seed_sealed = X'' WHERE length(seed_sealed) > 0
           AND spk_id IN (SELECT id FROM signed_prekeys WHERE retired_at IS NOT NULL)
           AND spk_id NOT IN (SELECT spk_id FROM bundles WHERE state IN ('issued','approved') AND expires_at > ?)`,
      )
      .run(expiredBefore).changes;
  }

  /** Every signed prekey, oldest first, with how many unexpired, unused bundles still name it. */
  async listSignedPrekeys(now: number): Promise<ListedPrekey[]> {
    const live = new Map<number, number>();
    for (const r of this.#stmt.bundlesBySpk.all(now) as Row[]) live.set(Number(r.spk_id), Number(r.n));
    return (this.#stmt.listSpks.all() as Row[]).map((r) => ({
      id: Number(r.id),
      publicKey: bytes(r.public_key),
      signature: bytes(r.signature),
      createdAt: Number(r.created_at),
      retiredAt: r.retired_at == null ? null : Number(r.retired_at),
      liveBundles: live.get(Number(r.id)) ?? 0,
    }));
  }

  async latestAnnouncement(): Promise<StoredAnnouncement | undefined> {
    const r = this.#stmt.latestAnnouncement.get() as Row | undefined;
    return r && { seq: Number(r.seq), address: String(r.address), signature: bytes(r.signature), createdAt: Number(r.created_at) };
  }

  /**
   * Records the next announcement: `sign(seq)` is called inside the transaction with the
   * seq it gets, and must return the announcement for that seq.
   */
  async addAnnouncement(address: string, now: number, sign: (seq: number) => AddressAnnouncement): Promise<StoredAnnouncement> {
    const s = this.#stmt;
    return this.#db.transaction((): StoredAnnouncement => {
      const seq = Number(s.nextSeq.get());
      const a = sign(seq);
      if (a.seq !== seq || a.address !== address) throw new EnrollError('ERR_INTERNAL', 'the announcement was signed for another seq or address');
      s.insertAnnouncement.run(seq, address, buf(a.signature), now);
      return { ...a, createdAt: now };
    }).immediate();
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}
