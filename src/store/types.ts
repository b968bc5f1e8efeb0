/**
 * The service's store, as an interface. The SQLite implementation (sqlite.ts) is the only one
 * today; the methods are async so that a server database can be added without changing the
 * service role.
 *
 * Guarantees every implementation must keep (tests in test/store check them):
 * - an OPK is used at most once: `commitEnrollment` consumes it in the same transaction that
 *   records EK_B and marks the enrollee enrolled, and fails if it was consumed already;
 * - a pending entry past its expiry is refused (`getPending` reports it as expired);
 * - a revoked enrollee is refused;
 * - an EK_B is accepted at most once (replay).
 * Times are unix seconds. Keys and ids are raw bytes.
 */

import type { EnrollError } from '../errors.js';
import type { Attributes } from '../protocol/codec/attributes.js';
import type { EnrollerScopes } from '../policy/scopes.js';

export type EnrolleeState = 'pending' | 'enrolled' | 'revoked';
export type EnrollmentMethod = 'x3dh' | 'token';
export type BundleState = 'issued' | 'approved' | 'consumed' | 'revoked';

export interface EnrollerRecord {
  publicKey: Uint8Array;
  name: string | null;
  addedAt: number;
  revokedAt: number | null;
  /** What it may assign (schema 3, docs/policies.md "Scopes"); absent or {} assigns nothing. */
  scopes?: EnrollerScopes;
}

/**
 * PQSPK_A, the ML-KEM-768 prekey made and rotated with an SPK (EKA v2, docs/protocol.md
 * §3.3). Table `kem_prekeys` in SQLite, one row per SPK at most.
 */
export interface KemPrekeyRecord {
  /** PQSPK_A: the ML-KEM-768 encapsulation key, 1184 bytes. */
  publicKey: Uint8Array;
  /** SHA-256(publicKey): the KEM_hash of every v2 bundle made with this SPK; unique. */
  hash: Uint8Array;
  /** The 64-byte ML-KEM-768 seed d ‖ z, sealed under the store key (purpose `kem`, rowId = hash). */
  seedSealed: Uint8Array;
}

export interface SignedPrekeyRecord {
  id: number;
  publicKey: Uint8Array;
  /** SPK_A's private key, sealed under the store key (see sealing.ts). */
  privateSealed: Uint8Array;
  signature: Uint8Array;
  createdAt: number;
  retiredAt: number | null;
  /** Its PQSPK_A; null (or absent) for an SPK made before EKA v2, which serves v1 bundles only. */
  kem?: KemPrekeyRecord | null;
}

export interface BundleRecord {
  id: Uint8Array;
  spkId: number;
  opkPublic: Uint8Array;
  /** OPK_A's private key, sealed under the store key; null once consumed. */
  opkPrivateSealed: Uint8Array | null;
  addr: string;
  /** Static key of the enroller the bundle was served to. */
  enroller: Uint8Array;
  createdAt: number;
  expiresAt: number;
  state: BundleState;
  /**
   * The EKA version of the bundle (its version byte): 2 for a bundle carrying its SPK's
   * KEM_hash. Absent means 1. The service refuses a message of the other version for it
   * (docs/protocol.md §5A.3, no downgrade).
   */
  eka?: 1 | 2;
}

export interface EnrolleeRecord {
  /** SHA-256(EIK_B) for X3DH enrollees. */
  id: Uint8Array;
  method: EnrollmentMethod;
  state: EnrolleeState;
  /** EIK_B while pending; deleted once IK_B replaces it (seed: "deletes EIK_B"). */
  eikB: Uint8Array | null;
  ikB: Uint8Array | null;
  petName: string | null;
  enroller: Uint8Array | null;
  bundleId: Uint8Array | null;
  approvedAt: number | null;
  expiresAt: number | null;
  enrolledAt: number | null;
  revokedAt: number | null;
  failedAttempts: number;
  /** Its attributes (schema 3, docs/policies.md); absent or {} for none. */
  attributes?: Attributes;
}

export interface ApproveInput {
  enrolleeId: Uint8Array;
  eikB: Uint8Array;
  bundleId: Uint8Array;
  petName: string | null;
  enroller: Uint8Array;
  now: number;
  expiresAt: number;
  /** Attributes to record with the approval (checked against the enroller's scope by the caller). */
  attributes?: Attributes;
}

/** What the service needs to run checks 3–5 for one enrollee, fetched in one query. */
export interface PendingLookup {
  enrollee: EnrolleeRecord;
  bundle: BundleRecord;
  spk: SignedPrekeyRecord;
}

export type PendingResult =
  | { status: 'ok'; pending: PendingLookup }
  | { status: 'unknown' }
  | { status: 'expired' }
  | { status: 'revoked' }
  | { status: 'enrolled' }
  | { status: 'opk-used' };

export interface CommitEnrollmentInput {
  enrolleeId: Uint8Array;
  bundleId: Uint8Array;
  ekB: Uint8Array;
  ikB: Uint8Array;
  now: number;
}

/** A service outlet (docs/portals.md): streams to `service/NAME` are connected to host:port. */
export interface OutletRecord {
  name: string;
  host: string;
  port: number;
  /** The outlet's `--allow` (src/portal/allow.ts); null admits every enrolled identity. */
  allow: string | null;
  createdAt: number;
}

/**
 * A running `service start` (schema step 5, docs/architecture.md "Device outlets across
 * replicas"): its id (random per start), the address its replica link listens on for the
 * other replicas (null: none, `--peer-listen` off), and its heartbeat. Times are Unix seconds.
 */
export interface ReplicaRecord {
  id: string;
  address: string | null;
  startedAt: number;
  lastSeen: number;
}

/** One device outlet name registered by a device's session on a replica (schema step 5). */
export interface DeviceOutletHolder {
  replicaId: string;
  /** The replica's replica-link address (null: it has none). */
  address: string | null;
  /** The session on that replica (a device may run several `enrollee outlet` processes). */
  session: number;
  name: string;
  since: number;
  /** The replica's last heartbeat. */
  lastSeen: number;
}

export interface ServiceStore {
  // replicas and the device outlets they hold (schema step 5, docs/architecture.md)
  /** Inserts or refreshes replica `r.id` (its address, started_at and last_seen). */
  replicaHeartbeat(r: ReplicaRecord): Promise<void>;
  /** Every replica row, the most recently seen first. */
  listReplicas(): Promise<ReplicaRecord[]>;
  /** Removes replica `id` and every device outlet it holds (a clean stop). */
  removeReplica(id: string): Promise<void>;
  /** Removes the replicas last seen before `seenBefore`, and their device outlets; returns how many replicas. */
  pruneReplicas(seenBefore: number): Promise<number>;
  /** Records that `session` on replica `replicaId` serves `names` for device `enrolleeId` (replacing that session's names). */
  putDeviceOutlets(rec: { replicaId: string; session: number; enrolleeId: Uint8Array; names: readonly string[]; since: number }): Promise<void>;
  /** Forgets what `session` on `replicaId` registered (the session ended). */
  removeDeviceOutlets(replicaId: string, session: number): Promise<void>;
  /**
   * The device outlets of `enrolleeId` held by replicas whose heartbeat is at or after
   * `seenSince` (a stale replica's rows are ignored), the newest registration first.
   */
  findDeviceOutlets(enrolleeId: Uint8Array, seenSince: number): Promise<DeviceOutletHolder[]>;

  // service outlets (schema step 4, docs/portals.md); read at every stream open
  /** Adds or replaces outlet `name`. */
  putOutlet(rec: OutletRecord): Promise<void>;
  getOutlet(name: string): Promise<OutletRecord | undefined>;
  listOutlets(): Promise<OutletRecord[]>;
  /** Returns false if there was no such outlet. */
  removeOutlet(name: string): Promise<boolean>;
  // enrollers
  /** Allows (or re-allows) an enroller; its scopes are replaced by `scopes` (none when absent). */
  allowEnroller(publicKey: Uint8Array, name: string | null, now: number, scopes?: EnrollerScopes): Promise<EnrollerRecord>;
  listEnrollers(): Promise<EnrollerRecord[]>;
  getEnroller(publicKey: Uint8Array): Promise<EnrollerRecord | undefined>;
  /** Returns false if no such (unrevoked) enroller. Also revokes its unused bundles and drops its pending approvals. */
  revokeEnroller(publicKey: Uint8Array, now: number): Promise<boolean>;

  // signed prekeys
  addSignedPrekey(rec: Omit<SignedPrekeyRecord, 'id' | 'retiredAt'>): Promise<SignedPrekeyRecord>;
  currentSignedPrekey(): Promise<SignedPrekeyRecord | undefined>;
  /** The KEM prekey whose SHA-256 is `hash`, current or retired (the KEM prekey answer, §7.2). */
  getKemPrekey(hash: Uint8Array): Promise<KemPrekeyRecord | undefined>;

  // bundles
  insertBundles(rows: BundleRecord[]): Promise<void>;
  getBundle(id: Uint8Array): Promise<BundleRecord | undefined>;

  // approvals: binds the enrollee id to one issued bundle served to this enroller
  approve(input: ApproveInput): Promise<EnrolleeRecord>;

  // the enrollment checks
  isEkAccepted(ekB: Uint8Array): Promise<boolean>;
  lookupPending(enrolleeId: Uint8Array, now: number): Promise<PendingResult>;
  /**
   * Optional: checks 2 and 3 of docs/protocol.md §5.4 in one read, with the same answers as
   * `isEkAccepted(ekB)` (then `{ status: 'replay' }`) followed by `lookupPending`.
   */
  checkMessage?(ekB: Uint8Array, enrolleeId: Uint8Array, now: number): Promise<{ status: 'replay' } | PendingResult>;
  /** Atomically records EK_B, consumes the OPK and enrolls IK_B. Throws ERR_REPLAY / ERR_OPK_USED / ERR_ENROLLEE_UNKNOWN on a lost race. */
  commitEnrollment(input: CommitEnrollmentInput): Promise<EnrolleeRecord>;
  /**
   * Optional group commit: `commitEnrollment` for each input in one durable transaction;
   * each input succeeds or fails on its own (failures come back as their EnrollError, in
   * place). Resolves only once the whole batch is durable.
   */
  commitEnrollments?(inputs: CommitEnrollmentInput[]): Promise<(EnrolleeRecord | EnrollError)[]>;
  recordFailure(enrolleeId: Uint8Array): Promise<number>;

  // enrollees
  listEnrollees(state?: EnrolleeState): Promise<EnrolleeRecord[]>;
  /** Finds by full id or an unambiguous hex prefix (≥ 8 hex chars). */
  findEnrollee(idOrPrefix: string): Promise<EnrolleeRecord | undefined>;
  getEnrolleeByIdentityKey(ikB: Uint8Array): Promise<EnrolleeRecord | undefined>;
  revokeEnrollee(id: Uint8Array, now: number): Promise<boolean>;
  /**
   * Sets `set` and removes `unset` (each must be present) on a pending or enrolled enrollee,
   * in one transaction; undefined if no such enrollee, ERR_ENROLLEE_REVOKED if revoked.
   */
  setAttributes(id: Uint8Array, set: Attributes, unset: readonly string[]): Promise<{ before: EnrolleeRecord; after: EnrolleeRecord } | undefined>;

  counts(): Promise<Record<EnrolleeState, number>>;
  close(): Promise<void>;
}
