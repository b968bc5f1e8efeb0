/**
 * The PostgreSQL TokenStore: the tables and guarantees of src/store/tokens.ts, across replicas.
 * - a jti is redeemed at most once: `UPDATE tokens … WHERE used_at IS NULL` (the row lock
 *   makes a racing replica wait, then find it used), in the transaction that enrolls the
 *   identity and records the certificate;
 * - a serial is issued at most once: certificates' primary key;
 * - two live identities never share a name: the check and the insert run under a
 *   transaction-scoped advisory lock on the name (SQLite's IMMEDIATE transaction serialises
 *   them; READ COMMITTED alone would let two replicas both pass the check).
 */
import { EnrollError } from '../../errors.js';
import {
  checkCert,
  SERIAL_RE,
  toCert,
  toIdentity,
  toToken,
  type CertificateRecord,
  type CreateTokenInput,
  type NewCertificate,
  type TokenIdentity,
  type TokenRecord,
  type TokenStore,
  WITH_IDENTITY,
} from '../tokens.js';
import { attributesColumn } from '../sqlite.js';
import { buf, type PgDatabase } from './database.js';

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS tokens (
  jti         text PRIMARY KEY CHECK (length(jti) BETWEEN 22 AND 64),
  enrollee_id bytea NOT NULL REFERENCES enrollees(id) ON DELETE CASCADE,
  enroller    bytea,
  created_at  bigint NOT NULL,
  expires_at  bigint NOT NULL,
  used_at     bigint
);
CREATE INDEX IF NOT EXISTS tokens_enrollee ON tokens(enrollee_id);
CREATE TABLE IF NOT EXISTS certificates (
  serial      text PRIMARY KEY CHECK (length(serial) = 32),
  enrollee_id bytea NOT NULL REFERENCES enrollees(id),
  kind        text NOT NULL CHECK (kind IN ('enroll','renew')),
  der         bytea NOT NULL,
  issued_at   bigint NOT NULL,
  not_after   bigint NOT NULL,
  revoked_at  bigint
);
CREATE INDEX IF NOT EXISTS certificates_enrollee ON certificates(enrollee_id);
`;


export class PgTokenStore implements TokenStore {
  readonly #db: PgDatabase;

  constructor(db: PgDatabase) {
    this.#db = db;
  }

  async createTokenIdentity(input: CreateTokenInput): Promise<void> {
    await this.#db.tx(async (c) => {
      await c.query(`SELECT pg_advisory_xact_lock(hashtext('ockam-enroll/token-name/' || $1))`, [input.name]);
      const taken = await c.query(
        `SELECT 1 FROM enrollees WHERE method = 'token' AND pet_name = $1
           AND (state = 'enrolled' OR (state = 'pending' AND expires_at > $2)) LIMIT 1`,
        [input.name, input.now],
      );
      if (taken.rows.length > 0) {
        throw new EnrollError('ERR_NAME_TAKEN', `an enrolled or pending identity is already named ${JSON.stringify(input.name)}`, {
          hint: 'choose another --name, or revoke the other identity first (`ockam-enroll service enrollee revoke`)',
        });
      }
      await c.query(
        `INSERT INTO enrollees (id, method, state, pet_name, enroller, approved_at, expires_at, attributes) VALUES ($1, 'token', 'pending', $2, $3, $4, $5, $6)`,
        [buf(input.id), input.name, input.enroller && buf(input.enroller), input.now, input.expiresAt, attributesColumn(input.attributes)],
      );
      await c.query(`INSERT INTO tokens (jti, enrollee_id, enroller, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`, [
        input.jti,
        buf(input.id),
        input.enroller && buf(input.enroller),
        input.now,
        input.expiresAt,
      ]);
    });
  }

  async getToken(jti: string): Promise<{ token: TokenRecord; identity: TokenIdentity } | undefined> {
    const r = (await this.#db.query(`SELECT t.*, ${WITH_IDENTITY} FROM tokens t JOIN enrollees e ON e.id = t.enrollee_id WHERE t.jti = $1`, [jti])).rows[0];
    return r && { token: toToken(r), identity: toIdentity(r) };
  }

  async redeemToken(input: { jti: string; enrolleeId: Uint8Array; now: number; cert: NewCertificate }): Promise<void> {
    checkCert(input.cert);
    await this.#db.tx(async (c) => {
      const used = await c.query(`UPDATE tokens SET used_at = $1 WHERE jti = $2 AND enrollee_id = $3 AND used_at IS NULL AND expires_at > $1`, [
        input.now,
        input.jti,
        buf(input.enrolleeId),
      ]);
      if (used.rowCount !== 1) {
        const r = (await c.query(`SELECT enrollee_id, used_at FROM tokens WHERE jti = $1`, [input.jti])).rows[0];
        if (!r || !Buffer.from(r.enrollee_id as Buffer).equals(buf(input.enrolleeId))) {
          throw new EnrollError('ERR_TOKEN_INVALID', 'the service has no such token');
        }
        if (r.used_at != null) throw new EnrollError('ERR_TOKEN_USED', 'this one-time token was already used');
        throw new EnrollError('ERR_TOKEN_EXPIRED', 'this token has expired');
      }
      const enrolled = await c.query(
        `UPDATE enrollees SET state = 'enrolled', enrolled_at = $1, failed_attempts = 0 WHERE id = $2 AND method = 'token' AND state = 'pending'`,
        [input.now, buf(input.enrolleeId)],
      );
      if (enrolled.rowCount !== 1) {
        throw new EnrollError('ERR_ENROLLEE_REVOKED', 'this identity is no longer pending (revoked, or already enrolled)');
      }
      await c.query(`INSERT INTO certificates (serial, enrollee_id, kind, der, issued_at, not_after) VALUES ($1, $2, 'enroll', $3, $4, $5)`, [
        input.cert.serial,
        buf(input.enrolleeId),
        buf(input.cert.der),
        input.now,
        input.cert.notAfter,
      ]);
    });
  }

  async recordRenewal(input: { enrolleeId: Uint8Array; previousSerial: string; now: number; cert: NewCertificate }): Promise<void> {
    checkCert(input.cert);
    await this.#db.tx(async (c) => {
      // FOR SHARE on the identity: a revocation committing meanwhile waits for us, or we see it.
      const r = (
        await c.query(
          `SELECT c.*, ${WITH_IDENTITY} FROM certificates c JOIN enrollees e ON e.id = c.enrollee_id WHERE c.serial = $1 FOR SHARE OF e`,
          [input.previousSerial],
        )
      ).rows[0];
      if (!r || !Buffer.from(r.enrollee_id as Buffer).equals(buf(input.enrolleeId))) {
        throw new EnrollError('ERR_CERT_REVOKED', 'the service did not issue this certificate');
      }
      if (r.e_state !== 'enrolled' || r.revoked_at != null) throw new EnrollError('ERR_CERT_REVOKED', 'this certificate has been revoked');
      if (Number(r.not_after) <= input.now) throw new EnrollError('ERR_CERT_REVOKED', 'this certificate has expired');
      await c.query(`INSERT INTO certificates (serial, enrollee_id, kind, der, issued_at, not_after) VALUES ($1, $2, 'renew', $3, $4, $5)`, [
        input.cert.serial,
        buf(input.enrolleeId),
        buf(input.cert.der),
        input.now,
        input.cert.notAfter,
      ]);
    });
  }

  async getCertificate(serial: string): Promise<{ cert: CertificateRecord; identity: TokenIdentity } | undefined> {
    if (!SERIAL_RE.test(serial)) return undefined;
    const r = (await this.#db.query(`SELECT c.*, ${WITH_IDENTITY} FROM certificates c JOIN enrollees e ON e.id = c.enrollee_id WHERE c.serial = $1`, [serial])).rows[0];
    return r && { cert: toCert(r), identity: toIdentity(r) };
  }

  async listCertificates(enrolleeId: Uint8Array): Promise<CertificateRecord[]> {
    return (await this.#db.query(`SELECT * FROM certificates WHERE enrollee_id = $1 ORDER BY issued_at, serial`, [buf(enrolleeId)])).rows.map(toCert);
  }

  async revokeCertificates(enrolleeId: Uint8Array, now: number): Promise<number> {
    return (await this.#db.query(`UPDATE certificates SET revoked_at = $1 WHERE enrollee_id = $2 AND revoked_at IS NULL`, [now, buf(enrolleeId)])).rowCount ?? 0;
  }

  async revokedCertificates(now: number): Promise<{ serial: string; revokedAt: number }[]> {
    const rows = (
      await this.#db.query(
        `SELECT c.serial AS serial, coalesce(c.revoked_at, e.revoked_at, c.issued_at) AS revoked_at
         FROM certificates c JOIN enrollees e ON e.id = c.enrollee_id
         WHERE (c.revoked_at IS NOT NULL OR e.state = 'revoked') AND c.not_after > $1
         ORDER BY c.serial`,
        [now],
      )
    ).rows;
    return rows.map((r) => ({ serial: String(r.serial), revokedAt: Number(r.revoked_at) }));
  }

  async nextCrlNumber(): Promise<number> {
    // One statement: replicas issuing CRLs at once each get their own number.
    const r = await this.#db.query(
      `INSERT INTO meta (key, value) VALUES ('crl_number', '1')
       ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text
       RETURNING value`,
    );
    return Number(r.rows[0]!.value);
  }

  async close(): Promise<void> {}
}
