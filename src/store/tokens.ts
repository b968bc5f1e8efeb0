/**
 * The store of token enrollment (docs/token-enrollment.md): one-time tokens and the
 * certificates issued with them, beside the X3DH tables in the same SQLite file.
 *
 * A token identity is an ordinary row of `enrollees` (method 'token'; pet_name holds its
 * name; expires_at its token's expiry while pending), so `service enrollee list|show|revoke`
 * cover it unchanged. Two tables are added with CREATE TABLE IF NOT EXISTS, so an existing
 * store gains them on first use and nothing is migrated:
 * - tokens:        jti → identity, expiry, used_at (set once, in the issuing transaction);
 * - certificates:  serial → identity, DER, not_after, revoked_at.
 *
 * This is a second connection to the store's database file: the X3DH store keeps its
 * connection private. Both run with WAL, synchronous=FULL and IMMEDIATE transactions, so
 * the single-use guarantees below hold across connections and processes alike:
 * - a token is redeemed at most once: `redeemToken` marks it used, enrolls the identity and
 *   records the certificate in one transaction, with conditional updates, and fails as a
 *   whole if any of the three does not apply;
 * - a revoked identity gets no certificate, and its certificates count as revoked whether or
 *   not `revokeCertificates` ran (the CRL and /whoami read the identity's state too).
 * Times are unix seconds; serials are 32 lowercase hex characters.
 */
import Database from 'better-sqlite3';
import { EnrollError } from '../errors.js';
import type { EnrolleeRecord, EnrolleeState } from './types.js';
import { checkAttributes, type Attributes } from '../protocol/codec/attributes.js';
import { attributesColumn } from './sqlite.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tokens (
  jti         TEXT PRIMARY KEY CHECK (length(jti) BETWEEN 22 AND 64),
  enrollee_id BLOB NOT NULL REFERENCES enrollees(id) ON DELETE CASCADE,
  enroller    BLOB,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_enrollee ON tokens(enrollee_id);
CREATE TABLE IF NOT EXISTS certificates (
  serial      TEXT PRIMARY KEY CHECK (length(serial) = 32),
  enrollee_id BLOB NOT NULL REFERENCES enrollees(id),
  kind        TEXT NOT NULL CHECK (kind IN ('enroll','renew')),
  der         BLOB NOT NULL,
  issued_at   INTEGER NOT NULL,
  not_after   INTEGER NOT NULL,
  revoked_at  INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS certificates_enrollee ON certificates(enrollee_id);
`;

export interface TokenRecord {
  jti: string;
  enrolleeId: Uint8Array;
  enroller: Uint8Array | null;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
}

export type CertificateKind = 'enroll' | 'renew';

export interface CertificateRecord {
  serial: string;
  enrolleeId: Uint8Array;
  kind: CertificateKind;
  der: Uint8Array;
  issuedAt: number;
  notAfter: number;
  revokedAt: number | null;
}

/** The parts of an identity's `enrollees` row that token enrollment reads. */
export interface TokenIdentity {
  id: Uint8Array;
  name: string;
  state: EnrolleeState;
  method: EnrolleeRecord['method'];
  revokedAt: number | null;
  /** The identity's attributes as the store holds them now (docs/policies.md): what its next certificate carries. */
  attributes: Attributes;
}

export interface CreateTokenInput {
  id: Uint8Array;
  name: string;
  enroller: Uint8Array | null;
  jti: string;
  now: number;
  expiresAt: number;
  /** Attributes for the identity (checked against the enroller's scope by the caller); absent or {} for none. */
  attributes?: Attributes;
}

export interface NewCertificate {
  serial: string;
  der: Uint8Array;
  notAfter: number;
}

export interface RedeemTokenInput {
  jti: string;
  enrolleeId: Uint8Array;
  now: number;
  cert: NewCertificate;
}

export interface TokenStore {
  /** Creates a pending identity (method 'token') and its one-time token, atomically. ERR_NAME_TAKEN if a live identity has the name. */
  createTokenIdentity(input: CreateTokenInput): Promise<void>;
  getToken(jti: string): Promise<{ token: TokenRecord; identity: TokenIdentity } | undefined>;
  /**
   * In one transaction: marks the token used (it must be unused and unexpired), enrolls its
   * pending identity and records the certificate. Throws ERR_TOKEN_INVALID, ERR_TOKEN_USED,
   * ERR_TOKEN_EXPIRED or ERR_ENROLLEE_REVOKED, and then changes nothing.
   */
  redeemToken(input: { jti: string; enrolleeId: Uint8Array; now: number; cert: NewCertificate }): Promise<void>;
  /** Records a renewal's certificate, if the identity is still enrolled and `previousSerial` is its live certificate. ERR_CERT_REVOKED otherwise. */
  recordRenewal(input: { enrolleeId: Uint8Array; previousSerial: string; now: number; cert: NewCertificate }): Promise<void>;
  getCertificate(serial: string): Promise<{ cert: CertificateRecord; identity: TokenIdentity } | undefined>;
  listCertificates(enrolleeId: Uint8Array): Promise<CertificateRecord[]>;
  /** Marks every unrevoked certificate of the identity revoked; returns how many. */
  revokeCertificates(enrolleeId: Uint8Array, now: number): Promise<number>;
  /** Serials to list in the CRL: revoked (or of a revoked identity) and not yet expired. */
  revokedCertificates(now: number): Promise<{ serial: string; revokedAt: number }[]>;
  /** The next CRL number (RFC 5280 §5.2.3), persisted. */
  nextCrlNumber(): Promise<number>;
  close(): Promise<void>;
}

type Row = Record<string, unknown>;

function bytes(v: unknown): Uint8Array {
  return new Uint8Array(v as Buffer);
}
function buf(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.length);
}
function num(v: unknown): number | null {
  return v == null ? null : Number(v);
}

export function toToken(r: Row): TokenRecord {
  return {
    jti: String(r.jti),
    enrolleeId: bytes(r.enrollee_id),
    enroller: r.enroller == null ? null : bytes(r.enroller),
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
    usedAt: num(r.used_at),
  };
}

export function toCert(r: Row): CertificateRecord {
  return {
    serial: String(r.serial),
    enrolleeId: bytes(r.enrollee_id),
    kind: r.kind as CertificateKind,
    der: bytes(r.der),
    issuedAt: Number(r.issued_at),
    notAfter: Number(r.not_after),
    revokedAt: num(r.revoked_at),
  };
}

export function toIdentity(r: Row): TokenIdentity {
  return {
    id: bytes(r.e_id),
    name: String(r.e_pet_name ?? ''),
    state: r.e_state as EnrolleeState,
    method: r.e_method as EnrolleeRecord['method'],
    revokedAt: num(r.e_revoked_at),
    attributes: r.e_attributes == null ? NO_ATTRIBUTES : storedAttributes(r.e_attributes),
  };
}

const NO_ATTRIBUTES: Attributes = Object.freeze({});

/** The enrollees.attributes column (canonical JSON), checked again as every read of it is (sqlite.ts toEnrollee). */
function storedAttributes(v: unknown): Attributes {
  try {
    return checkAttributes(JSON.parse(String(v)), 'ERR_STORE');
  } catch (cause) {
    throw new EnrollError('ERR_STORE', `the store holds malformed enrollee attributes: ${(cause as Error).message}`, { cause });
  }
}

export const SERIAL_RE = /^[0-9a-f]{32}$/;

/** The identity's columns toIdentity reads, from `enrollees e` (both stores). */
export const WITH_IDENTITY = `e.id AS e_id, e.pet_name AS e_pet_name, e.state AS e_state, e.method AS e_method, e.revoked_at AS e_revoked_at, e.attributes AS e_attributes`;

export class SqliteTokenStore implements TokenStore {
  readonly #db: Database.Database;
  readonly #stmt: ReturnType<SqliteTokenStore['prepare']>;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#stmt = this.prepare();
  }

  /** Opens a connection to the service store at `path` (which must exist: `service init` made it) and adds the token tables. */
  static open(path: string): SqliteTokenStore {
    let db: Database.Database;
    try {
      db = new Database(path, { fileMustExist: true });
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      db.exec(SCHEMA);
    } catch (cause) {
      throw new EnrollError('ERR_STORE', `cannot open the token tables of ${path}: ${(cause as Error).message}`, {
        cause,
        hint: 'run `ockam-enroll service init` first, and check the file is writable',
      });
    }
    return new SqliteTokenStore(db);
  }

  private prepare() {
    const db = this.#db;
    const withIdentity = WITH_IDENTITY;
    return {
      nameTaken: db.prepare(
        `SELECT 1 FROM enrollees WHERE method = 'token' AND pet_name = ?
           AND (state = 'enrolled' OR (state = 'pending' AND expires_at > ?)) LIMIT 1`,
      ).pluck(),
      insertIdentity: db.prepare(
        `INSERT INTO enrollees (id, method, state, pet_name, enroller, approved_at, expires_at, attributes)
         VALUES (?, 'token', 'pending', ?, ?, ?, ?, ?)`,
      ),
      insertToken: db.prepare(`INSERT INTO tokens (jti, enrollee_id, enroller, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
      getToken: db.prepare(`SELECT t.*, ${withIdentity} FROM tokens t JOIN enrollees e ON e.id = t.enrollee_id WHERE t.jti = ?`),
      useToken: db.prepare(`UPDATE tokens SET used_at = ? WHERE jti = ? AND enrollee_id = ? AND used_at IS NULL AND expires_at > ?`),
      enroll: db.prepare(
        `UPDATE enrollees SET state = 'enrolled', enrolled_at = ?, failed_attempts = 0
         WHERE id = ? AND method = 'token' AND state = 'pending'`,
      ),
      insertCert: db.prepare(
        `INSERT INTO certificates (serial, enrollee_id, kind, der, issued_at, not_after) VALUES (?, ?, ?, ?, ?, ?)`,
      ),
      getCert: db.prepare(`SELECT c.*, ${withIdentity} FROM certificates c JOIN enrollees e ON e.id = c.enrollee_id WHERE c.serial = ?`),
      listCerts: db.prepare(`SELECT * FROM certificates WHERE enrollee_id = ? ORDER BY issued_at, serial`),
      revokeCerts: db.prepare(`UPDATE certificates SET revoked_at = ? WHERE enrollee_id = ? AND revoked_at IS NULL`),
      revoked: db.prepare(
        `SELECT c.serial AS serial, coalesce(c.revoked_at, e.revoked_at, c.issued_at) AS revoked_at
         FROM certificates c JOIN enrollees e ON e.id = c.enrollee_id
         WHERE (c.revoked_at IS NOT NULL OR e.state = 'revoked') AND c.not_after > ?
         ORDER BY c.serial`,
      ),
      crlNumber: db.prepare(
        `INSERT INTO meta (key, value) VALUES ('crl_number', '1')
         ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)
         RETURNING value`,
      ).pluck(),
    };
  }

  async createTokenIdentity(input: CreateTokenInput): Promise<void> {
    const s = this.#stmt;
    this.#db.transaction(() => {
      if (s.nameTaken.get(input.name, input.now) !== undefined) {
        throw new EnrollError('ERR_NAME_TAKEN', `an enrolled or pending identity is already named ${JSON.stringify(input.name)}`, {
          hint: 'choose another --name, or revoke the other identity first (`ockam-enroll service enrollee revoke`)',
        });
      }
      s.insertIdentity.run(buf(input.id), input.name, input.enroller && buf(input.enroller), input.now, input.expiresAt, attributesColumn(input.attributes));
      s.insertToken.run(input.jti, buf(input.id), input.enroller && buf(input.enroller), input.now, input.expiresAt);
    }).immediate();
  }

  async getToken(jti: string): Promise<{ token: TokenRecord; identity: TokenIdentity } | undefined> {
    const r = this.#stmt.getToken.get(jti) as Row | undefined;
    return r && { token: toToken(r), identity: toIdentity(r) };
  }

  async redeemToken(input: RedeemTokenInput): Promise<void> {
    checkCert(input.cert);
    this.#db.transaction(() => this.#redeemOne(input)).immediate();
  }

  /**
   * Group commit of redemptions (the service's commit thread, roles/service/commits.ts): the
   * batch in ONE IMMEDIATE transaction, so one WAL sync; each redemption keeps its
   * conditional updates, so a token is still redeemed at most once within a batch. If one
   * fails, the batch runs again with a savepoint per redemption, and that one comes back as
   * its EnrollError while the others commit.
   */
  redeemTokens(inputs: RedeemTokenInput[]): (EnrollError | undefined)[] {
    const checked = inputs.map((i) => {
      try {
        checkCert(i.cert);
        return undefined;
      } catch (e) {
        return e as EnrollError;
      }
    });
    if (checked.every((c) => c === undefined)) {
      try {
        this.#db.transaction(() => inputs.forEach((i) => this.#redeemOne(i))).immediate();
        return inputs.map(() => undefined);
      } catch (err) {
        if (!(err instanceof EnrollError)) throw err;
      }
    }
    const one = this.#db.transaction((i: RedeemTokenInput) => this.#redeemOne(i));
    return this.#db.transaction(() =>
      inputs.map((i, k) => {
        if (checked[k] !== undefined) return checked[k];
        try {
          one(i);
          return undefined;
        } catch (err) {
          if (err instanceof EnrollError) return err;
          throw err;
        }
      }),
    ).immediate();
  }

  /** The body of redeemToken; the caller holds the transaction. */
  #redeemOne(input: RedeemTokenInput): void {
    const s = this.#stmt;
    if (s.useToken.run(input.now, input.jti, buf(input.enrolleeId), input.now).changes !== 1) {
      const r = s.getToken.get(input.jti) as Row | undefined;
      if (!r || !Buffer.from(r.enrollee_id as Buffer).equals(buf(input.enrolleeId))) {
        throw new EnrollError('ERR_TOKEN_INVALID', 'the service has no such token');
      }
      if (r.used_at != null) throw new EnrollError('ERR_TOKEN_USED', 'this one-time token was already used');
      throw new EnrollError('ERR_TOKEN_EXPIRED', 'this token has expired');
    }
    if (s.enroll.run(input.now, buf(input.enrolleeId)).changes !== 1) {
      throw new EnrollError('ERR_ENROLLEE_REVOKED', 'this identity is no longer pending (revoked, or already enrolled)');
    }
    s.insertCert.run(input.cert.serial, buf(input.enrolleeId), 'enroll', buf(input.cert.der), input.now, input.cert.notAfter);
  }

  async recordRenewal(input: { enrolleeId: Uint8Array; previousSerial: string; now: number; cert: NewCertificate }): Promise<void> {
    checkCert(input.cert);
    const s = this.#stmt;
    this.#db.transaction(() => {
      const r = s.getCert.get(input.previousSerial) as Row | undefined;
      if (!r || !Buffer.from(r.enrollee_id as Buffer).equals(buf(input.enrolleeId))) {
        throw new EnrollError('ERR_CERT_REVOKED', 'the service did not issue this certificate');
      }
      if (r.e_state !== 'enrolled' || r.revoked_at != null) throw new EnrollError('ERR_CERT_REVOKED', 'this certificate has been revoked');
      if (Number(r.not_after) <= input.now) throw new EnrollError('ERR_CERT_REVOKED', 'this certificate has expired');
      s.insertCert.run(input.cert.serial, buf(input.enrolleeId), 'renew', buf(input.cert.der), input.now, input.cert.notAfter);
    }).immediate();
  }

  async getCertificate(serial: string): Promise<{ cert: CertificateRecord; identity: TokenIdentity } | undefined> {
    if (!SERIAL_RE.test(serial)) return undefined;
    const r = this.#stmt.getCert.get(serial) as Row | undefined;
    return r && { cert: toCert(r), identity: toIdentity(r) };
  }

  async listCertificates(enrolleeId: Uint8Array): Promise<CertificateRecord[]> {
    return (this.#stmt.listCerts.all(buf(enrolleeId)) as Row[]).map(toCert);
  }

  async revokeCertificates(enrolleeId: Uint8Array, now: number): Promise<number> {
    return this.#stmt.revokeCerts.run(now, buf(enrolleeId)).changes;
  }

  async revokedCertificates(now: number): Promise<{ serial: string; revokedAt: number }[]> {
    return (this.#stmt.revoked.all(now) as Row[]).map((r) => ({ serial: String(r.serial), revokedAt: Number(r.revoked_at) }));
  }

  async nextCrlNumber(): Promise<number> {
    return Number(this.#stmt.crlNumber.get());
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}

export function checkCert(c: NewCertificate): void {
  if (!SERIAL_RE.test(c.serial)) throw new EnrollError('ERR_INVALID_ARG', '"serial" must be 32 lowercase hex characters');
  if (!(c.der instanceof Uint8Array) || c.der.length === 0) throw new EnrollError('ERR_INVALID_ARG', '"der" must be the certificate');
  if (!Number.isInteger(c.notAfter)) throw new EnrollError('ERR_INVALID_ARG', '"notAfter" must be unix seconds');
}
