/**
 * The PostgreSQL LifecycleStore: the tables and guarantees of src/store/lifecycle.ts.
 * - a rotation is one conditional UPDATE (the old key must still be an enrolled entry's) and
 *   the ik_rotations row, in one transaction; IK_B' taken meanwhile fails on the unique index;
 * - announcements are numbered under a transaction-scoped advisory lock, so two concurrent
 *   `service address set` (or replicas) never share a seq (the primary key would refuse it anyway).
 * Revocations are announced with NOTIFY ockam_enroll_lifecycle (store.ts), which the running
 * service LISTENs to (roles/service/lifecycle.ts) so every replica closes channels at once.
 */
import { EnrollError } from '../../errors.js';
import type { AddressAnnouncement } from '../../protocol/announce.js';
import type { LifecycleStore, ListedPrekey, RevokedEnrollee, RevokedEnroller, RotationResult, StoredAnnouncement } from '../lifecycle.js';
import { buf, bytes, ClosingClient, isUniqueViolation, type PgDatabase } from './database.js';

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS ik_rotations (
  old_ik_b    bytea PRIMARY KEY CHECK (length(old_ik_b) = 32),
  enrollee_id bytea NOT NULL,
  new_ik_b    bytea NOT NULL CHECK (length(new_ik_b) = 32),
  rotated_at  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ik_rotations_enrollee ON ik_rotations(enrollee_id);
CREATE TABLE IF NOT EXISTS address_announcements (
  seq        bigint PRIMARY KEY CHECK (seq >= 1),
  address    text NOT NULL,
  signature  bytea NOT NULL CHECK (length(signature) = 64),
  created_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS enrollers_revoked_at ON enrollers(revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS enrollees_revoked_at ON enrollees(revoked_at) WHERE revoked_at IS NOT NULL;
`;

/** The NOTIFY channel of revocations (store.ts sends, roles/service/lifecycle.ts listens). */
export const LIFECYCLE_CHANNEL = 'ockam_enroll_lifecycle';

export class PgLifecycleStore implements LifecycleStore {
  readonly #db: PgDatabase;

  constructor(db: PgDatabase) {
    this.#db = db;
  }

  async revokedEnrollersSince(since: number): Promise<RevokedEnroller[]> {
    const rows = (await this.#db.query(`SELECT public_key, revoked_at FROM enrollers WHERE revoked_at >= $1 ORDER BY revoked_at`, [since])).rows;
    return rows.map((r) => ({ publicKey: bytes(r.public_key), revokedAt: Number(r.revoked_at) }));
  }

  async revokedEnrolleesSince(since: number): Promise<RevokedEnrollee[]> {
    const rows = (
      await this.#db.query(`SELECT id, ik_b, revoked_at FROM enrollees WHERE revoked_at >= $1 AND state = 'revoked' ORDER BY revoked_at`, [since])
    ).rows;
    return rows.map((r) => ({ id: bytes(r.id), ikB: r.ik_b == null ? null : bytes(r.ik_b), revokedAt: Number(r.revoked_at) }));
  }

  async rotatedTo(ikB: Uint8Array): Promise<Uint8Array | undefined> {
    const r = (await this.#db.query(`SELECT new_ik_b FROM ik_rotations WHERE old_ik_b = $1`, [buf(ikB)])).rows[0];
    return r == null ? undefined : bytes(r.new_ik_b);
  }

  async rotateIdentity(input: { oldIkB: Uint8Array; newIkB: Uint8Array; now: number }): Promise<RotationResult> {
    const oldK = buf(input.oldIkB);
    const newK = buf(input.newIkB);
    if (oldK.equals(newK)) throw new EnrollError('ERR_ROTATE_CONFLICT', 'the new identity key is the current one');
    return this.#db.tx(async (c): Promise<RotationResult> => {
      if ((await c.query(`SELECT 1 FROM enrollees WHERE ik_b = $1`, [newK])).rows.length > 0) {
        throw new EnrollError('ERR_ROTATE_CONFLICT', 'the new identity key is already enrolled', { hint: 'run `ockam-enroll enrollee rotate` again: it makes a fresh key' });
      }
      // A key once rotated away from is never taken back: it may be the compromised one.
      if ((await c.query(`SELECT 1 FROM ik_rotations WHERE old_ik_b = $1`, [newK])).rows.length > 0) {
        throw new EnrollError('ERR_ROTATE_CONFLICT', 'the new identity key was used before and rotated away from');
      }
      let row;
      try {
        row = (await c.query(`UPDATE enrollees SET ik_b = $1 WHERE ik_b = $2 AND state = 'enrolled' RETURNING id, pet_name`, [newK, oldK])).rows[0];
      } catch (cause) {
        if (isUniqueViolation(cause)) throw new EnrollError('ERR_ROTATE_CONFLICT', 'the new identity key is already enrolled', { cause });
        throw cause;
      }
      if (!row) throw new EnrollError('ERR_ROTATE_CONFLICT', 'the current identity key is no longer enrolled');
      try {
        await c.query(`INSERT INTO ik_rotations (old_ik_b, enrollee_id, new_ik_b, rotated_at) VALUES ($1, $2, $3, $4)`, [oldK, row.id, newK, input.now]);
      } catch (cause) {
        if (isUniqueViolation(cause)) throw new EnrollError('ERR_ROTATE_CONFLICT', 'the current identity key was just rotated', { cause });
        throw cause;
      }
      return { enrolleeId: bytes(row.id), petName: (row.pet_name as string | null) ?? null, rotatedAt: input.now };
    });
  }

  async retireOtherPrekeys(currentId: number, now: number): Promise<number> {
    return (await this.#db.query(`UPDATE signed_prekeys SET retired_at = $1 WHERE retired_at IS NULL AND id <> $2`, [now, currentId])).rowCount ?? 0;
  }

  /** As SqliteLifecycleStore.eraseRetiredKemSeeds (EKA v2, docs/protocol.md §5A.6): one statement. */
  async eraseRetiredKemSeeds(expiredBefore: number): Promise<number> {
    return (
      (
        await this.#db.query(
          `UPDATE kem_prekeys SET seed_sealed = ''::bytea WHERE length(seed_sealed) > 0
             AND spk_id IN (SELECT id FROM signed_prekeys WHERE retired_at IS NOT NULL)
             AND spk_id NOT IN (SELECT spk_id FROM bundles WHERE state IN ('issued','approved') AND expires_at > $1)`,
          [expiredBefore],
        )
      ).rowCount ?? 0
    );
  }

  async listSignedPrekeys(now: number): Promise<ListedPrekey[]> {
    const live = new Map<number, number>();
    const counts = await this.#db.query(
      `SELECT spk_id, count(*) AS n FROM bundles WHERE state IN ('issued','approved') AND expires_at > $1 GROUP BY spk_id`,
      [now],
    );
    for (const r of counts.rows) live.set(Number(r.spk_id), Number(r.n));
    return (await this.#db.query(`SELECT * FROM signed_prekeys ORDER BY id`)).rows.map((r) => ({
      id: Number(r.id),
      publicKey: bytes(r.public_key),
      signature: bytes(r.signature),
      createdAt: Number(r.created_at),
      retiredAt: r.retired_at == null ? null : Number(r.retired_at),
      liveBundles: live.get(Number(r.id)) ?? 0,
    }));
  }

  async latestAnnouncement(): Promise<StoredAnnouncement | undefined> {
    const r = (await this.#db.query(`SELECT * FROM address_announcements ORDER BY seq DESC LIMIT 1`)).rows[0];
    return r && { seq: Number(r.seq), address: String(r.address), signature: bytes(r.signature), createdAt: Number(r.created_at) };
  }

  async addAnnouncement(address: string, now: number, sign: (seq: number) => AddressAnnouncement): Promise<StoredAnnouncement> {
    return this.#db.tx(async (c): Promise<StoredAnnouncement> => {
      await c.query(`SELECT pg_advisory_xact_lock(hashtext('ockam-enroll/address-announcements'))`);
      const seq = Number((await c.query(`SELECT coalesce(max(seq), 0) + 1 AS seq FROM address_announcements`)).rows[0]!.seq);
      const a = sign(seq);
      if (a.seq !== seq || a.address !== address) throw new EnrollError('ERR_INTERNAL', 'the announcement was signed for another seq or address');
      await c.query(`INSERT INTO address_announcements (seq, address, signature, created_at) VALUES ($1, $2, $3, $4)`, [seq, address, buf(a.signature), now]);
      return { ...a, createdAt: now };
    });
  }

  async close(): Promise<void> {}
}

/**
 * LISTENs on LIFECYCLE_CHANNEL on a connection of its own (a pooled one cannot hold a
 * LISTEN) and calls `onNotify` for each notification. A lost connection is re-made after
 * `retryMs`; meanwhile the watcher's polling still finds revocations, only later.
 */
export function listenLifecycle(db: PgDatabase, onNotify: () => void, retryMs = 1_000): { stop(): void } {
  let stopped = false;
  let client: import('pg').Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  const connect = async (): Promise<void> => {
    const c = new ClosingClient({ connectionString: db.location.url, application_name: db.applicationName === 'ockam-enroll' ? 'ockam-enroll-listen' : db.applicationName, connectionTimeoutMillis: 5_000 });
    const retry = () => {
      if (client === c) client = undefined;
      c.removeAllListeners();
      c.on('error', () => undefined);
      void c.end().catch(() => undefined);
      if (stopped || timer !== undefined) return;
      timer = setTimeout(() => {
        timer = undefined;
        void connect();
      }, retryMs);
      timer.unref();
    };
    c.on('error', retry);
    c.on('end', retry);
    c.on('notification', () => onNotify());
    try {
      await c.connect();
      await c.query(`LISTEN ${LIFECYCLE_CHANNEL}`);
      if (stopped) {
        await c.end().catch(() => undefined);
        return;
      }
      client = c;
      // Whatever was revoked while we were not listening.
      onNotify();
    } catch {
      retry();
    }
  };
  void connect();
  return {
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      const c = client;
      client = undefined;
      if (c) {
        c.removeAllListeners();
        c.on('error', () => undefined);
        void c.end().catch(() => undefined);
      }
    },
  };
}
