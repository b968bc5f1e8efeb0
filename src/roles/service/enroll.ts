/**
 * The service side of one enrollment message: the five checks of docs/protocol.md §5.4 in
 * order, the durable commit, and the sealed acceptance. Returns the response frame; the
 * caller sends it. Precise reasons go to the decision log; the peer gets only an
 * ENROLL_STATUS, with crypto failures collapsed into the opaque REJECTED.
 */
import { concat, toHex } from '../../crypto/bytes.js';
import { importX25519Private } from '../../crypto/x25519.js';
import { EnrollError, isEnrollError, type ErrorCode } from '../../errors.js';
import {
  accept,
  acceptV2,
  ENROLLMENT_MESSAGE_LEN,
  ENROLLMENT_MESSAGE_V2_LEN,
  MESSAGE_VERSION_V2,
  parseHeader,
  parseHeaderV2,
  serviceSession,
} from '../../protocol/enrollment/index.js';
import {
  ACCEPT_AAD,
  ENROLL_STATUS,
  encodeAcceptance,
  encodeEnrollResponse,
  type EnrollStatus,
} from '../../protocol/messages/service.js';
import type { OpenResult } from '../../pool/job.js';
import { kemSecretKey, spkKey } from '../../pool/keys.js';
import type { EnrollPool } from '../../pool/pool.js';
import type { BundleRecord, EnrolleeRecord, SignedPrekeyRecord } from '../../store/types.js';
import { commitQueueFor } from './commits.js';
import { credentialTtl, credentialVersion, issueCredential } from './credentials.js';
import { sameAttributes, type Attributes } from '../../protocol/codec/attributes.js';
import { serviceCsk } from './csk.js';
import type { ServiceHome } from './home.js';
import { beforeCommit, enrollLifecycleFor } from './hooks.js';
import { DEFAULT_FAIL_RATE_PER_IP, parseRate, peerIpKey, TokenBuckets } from './limits.js';
import type { DecisionFields, DecisionLog } from './log.js';

export interface EnrollOutcome {
  status: EnrollStatus;
  response: Uint8Array;
}

/** The refusals of commitEnrollment(s) that mean another request won (store/sqlite.ts #commitOne). */
const LOST_RACE_STATUS: Partial<Record<string, EnrollStatus>> = {
  ERR_REPLAY: ENROLL_STATUS.REPLAY,
  ERR_ENROLLEE_UNKNOWN: ENROLL_STATUS.UNKNOWN, // the approval expired or was replaced meanwhile
  ERR_OPK_USED: ENROLL_STATUS.USED,
  ERR_BUNDLE_USED: ENROLL_STATUS.USED,
  ERR_REJECTED: ENROLL_STATUS.USED, // IK_B enrolled for another enrollee meanwhile
};

/**
 * Failures after decryption (check 5) still being recorded, per enrollee id: they count
 * against the lockout with the recorded ones, so that concurrent messages cannot run more
 * failing checks past decryption than maxFailedAttempts.
 */
const inFlight = new WeakMap<ServiceHome, Map<string, number>>();

function attemptsInFlight(svc: ServiceHome): Map<string, number> {
  let m = inFlight.get(svc);
  if (m === undefined) {
    m = new Map();
    inFlight.set(svc, m);
  }
  return m;
}

/** The failed-decryption buckets of a caller that brings none (the library's default). */
const defaultFailures = new WeakMap<ServiceHome, TokenBuckets>();

function failuresFor(svc: ServiceHome, given: TokenBuckets | null | undefined): TokenBuckets | null {
  if (given !== undefined) return given;
  let b = defaultFailures.get(svc);
  if (b === undefined) {
    b = new TokenBuckets(parseRate(DEFAULT_FAIL_RATE_PER_IP, 'failRatePerIp')!);
    defaultFailures.set(svc, b);
  }
  return b;
}

export interface HandleEnrollmentOptions {
  /**
   * Asked just before the commit: false when the answer can no longer reach the peer (it
   * closed its connection, say, while an --on-enroll hook ran). Nothing is committed then,
   * so the enrollee's next attempt enrolls it as if this one had never come.
   */
  canAnswer?: () => boolean;
  /**
   * Failed decryptions (check 4) per source, keyed by peerIpKey(peer) (docs/threat-model.md
   * §5.4): a source over its limit gets RATE_LIMITED before any crypto runs for its message.
   * null: no limit. Default: one set per service home at DEFAULT_FAIL_RATE_PER_IP.
   */
  failuresPerSource?: TokenBuckets | null;
  /** Told of each refusal by failuresPerSource (service start throttles these lines); default: a `limited` line. */
  onSourceLimited?: (fields: DecisionFields) => void;
}

/** The refusal of an enrollment message: logged as `rejected`, answered with its status alone. */
function rejection(log: DecisionLog, peer: string | undefined, status: EnrollStatus, reason: string, fields: Record<string, unknown> = {}): EnrollOutcome {
  log('rejected', { reason, peer, ...fields });
  return { status, response: encodeEnrollResponse(status) };
}

/** LOCKED once the recorded failures and those in flight reach maxFailedAttempts; else undefined. */
function lockedOut(svc: ServiceHome, failedAttempts: number, busy: number, log: DecisionLog, peer: string | undefined, who: Record<string, unknown>): EnrollOutcome | undefined {
  if (failedAttempts + busy < svc.settings.maxFailedAttempts) return undefined;
  return rejection(log, peer, ENROLL_STATUS.LOCKED, `ERR_ENROLLEE_LOCKED: ${failedAttempts} failed attempts, ${busy} in flight`, who);
}

/**
 * RATE_LIMITED when the message's source is over its failed-decryption bucket (checked before
 * any crypto; docs/threat-model.md §5.4); else undefined.
 */
function sourceLimited(failures: TokenBuckets | null, source: string, log: DecisionLog, peer: string | undefined, who: Record<string, unknown>, opts: HandleEnrollmentOptions): EnrollOutcome | undefined {
  const sourceWait = failures?.available(source) ?? 0;
  if (sourceWait <= 0) return undefined;
  const fields = { peer, ...who, reason: `ERR_RATE_LIMITED: over ${failures!.spec.text} failed decryptions from this address`, retry_ms: sourceWait };
  if (opts.onSourceLimited) opts.onSourceLimited(fields);
  else log('limited', { limit: 'fail-rate-per-ip', ...fields });
  return { status: ENROLL_STATUS.RATE_LIMITED, response: encodeEnrollResponse(ENROLL_STATUS.RATE_LIMITED) };
}

export async function handleEnrollment(
  svc: ServiceHome,
  message: Uint8Array,
  now: number,
  log: DecisionLog,
  peer?: string,
  opts: HandleEnrollmentOptions = {},
): Promise<EnrollOutcome> {
  const reject = (status: EnrollStatus, reason: string, fields: Record<string, unknown> = {}): EnrollOutcome => rejection(log, peer, status, reason, fields);

  // Check 1: the length (176: EKA v1; 1265 starting with 0x02: EKA v2), before anything else.
  let eka: 1 | 2;
  if (message.length === ENROLLMENT_MESSAGE_LEN) eka = 1;
  else if (message.length === ENROLLMENT_MESSAGE_V2_LEN && message[0] === MESSAGE_VERSION_V2) eka = 2;
  else if (message.length === ENROLLMENT_MESSAGE_V2_LEN) {
    return reject(ENROLL_STATUS.MALFORMED, `ERR_MESSAGE_LENGTH: ${message.length} bytes starting with ${message[0]}, expected ${MESSAGE_VERSION_V2}`);
  } else {
    return reject(ENROLL_STATUS.MALFORMED, `ERR_MESSAGE_LENGTH: ${message.length} bytes, expected ${ENROLLMENT_MESSAGE_LEN} (v1) or ${ENROLLMENT_MESSAGE_V2_LEN} (v2)`);
  }
  const { ekB, enrolleeId } = eka === 1 ? parseHeader(message) : parseHeaderV2(message);
  const id = toHex(enrolleeId);
  const store = svc.store;

  // Check 2: replay of an accepted EK_B. Check 3: a pending, unexpired approval for this id;
  // no DH is computed before it passes. In one read where the store has it.
  const found = store.checkMessage
    ? await store.checkMessage(ekB, enrolleeId, now)
    : (await store.isEkAccepted(ekB))
      ? ({ status: 'replay' } as const)
      : await store.lookupPending(enrolleeId, now);
  switch (found.status) {
    case 'replay':
      return reject(ENROLL_STATUS.REPLAY, 'ERR_REPLAY: EK_B already accepted', { enrollee: id });
    case 'unknown':
      return reject(ENROLL_STATUS.UNKNOWN, 'ERR_ENROLLEE_UNKNOWN: no pending approval', { enrollee: id });
    case 'expired':
      return reject(ENROLL_STATUS.EXPIRED, 'ERR_APPROVAL_EXPIRED: approval past its expiry', { enrollee: id });
    case 'revoked':
      return reject(ENROLL_STATUS.REVOKED, 'ERR_ENROLLEE_REVOKED', { enrollee: id });
    case 'enrolled':
      return reject(ENROLL_STATUS.USED, 'ERR_BUNDLE_USED: enrollee already enrolled', { enrollee: id });
    case 'opk-used':
      return reject(ENROLL_STATUS.USED, 'ERR_OPK_USED: the approval\'s OPK is consumed or revoked', { enrollee: id });
    case 'ok':
      break;
  }
  const { enrollee, bundle, spk } = found.pending;
  const who = { enrollee: id, name: enrollee.petName, enroller: enrollee.enroller ? toHex(enrollee.enroller) : undefined };
  // No downgrade (docs/protocol.md §5A.3): the approval's bundle fixes the EKA version. A v1 message for a v2
  // bundle (or the reverse) is refused before any crypto, and is no failed attempt: it
  // reveals nothing about the keys.
  const bundleEka = bundle.eka ?? 1;
  if (bundleEka !== eka) {
    return reject(ENROLL_STATUS.REJECTED, `ERR_EKA_VERSION: an EKA v${eka} message for a v${bundleEka} bundle`, { ...who, eka });
  }
  // With a pool (service start --workers N ≥ 1), checks 4 and 5, the credential of either
  // version (§4.4 with IK_A, §4.6 with the CSK and the attributes) and the sealed acceptance
  // run on its workers; without one (--workers 0, library use), here.
  const pool = enrollLifecycleFor(svc)?.pool;
  if (pool !== undefined) return enrollOnPool(svc, pool, { message, eka, ekB, enrolleeId, id, found: found.pending, who, now, log, peer, opts });
  // The lockout counts only failures past decryption (check 5), with those still being
  // recorded: only a holder of EIK_B's private key and of the bundle can make a message that
  // decrypts, so whoever has merely seen the card cannot consume this enrollee's attempts.
  const flights = attemptsInFlight(svc);
  const busy = flights.get(id) ?? 0;
  const locked = lockedOut(svc, enrollee.failedAttempts, busy, log, peer, who);
  if (locked) return locked;
  // A message that fails to decrypt is charged to its source instead (anyone can make one
  // from the card), checked here before any crypto and taken below in the same synchronous
  // step as the decryption, so concurrent messages from one source cannot exceed its bucket.
  const failures = failuresFor(svc, opts.failuresPerSource);
  const source = peerIpKey(peer);
  const limited = sourceLimited(failures, source, log, peer, who, opts);
  if (limited) return limited;

  // Checks 4 and 5: recompute SK and h with the approval's bundle, decrypt, verify POP.
  let opkPrivate: Uint8Array | undefined;
  let result;
  try {
    const spkA = spkKey(svc.sealer, spk);
    const kem = eka === 2 ? kemSecretKey(svc.sealer, spk) : undefined;
    opkPrivate = svc.sealer.open(bundle.opkPrivateSealed!, 'opk', bundle.id);
    const pending = {
      eikB: enrollee.eikB!,
      spkA,
      opkA: importX25519Private(opkPrivate, 'OPK_A'),
      addr: bundle.addr,
    };
    result =
      kem === undefined
        ? accept(message, svc.ikAPrivate, {
            isReplay: () => false, // check 2 ran above against the store
            lookupPending: () => pending,
          })
        : // v2 (§5A.5): decapsulation, then the DHs, the AEAD and the POP; ML-KEM's implicit
          // rejection ends as the same ERR_ENROLLMENT_DECRYPT as a bad tag.
          acceptV2(message, svc.ikAPrivate, {
            isReplay: () => false,
            lookupPending: () => ({ ...pending, kemHash: kem.hash, kemSecretKey: kem.decapsulator }),
          });
  } catch (err) {
    if (isEnrollError(err, 'ERR_ENROLLMENT_DECRYPT')) {
      failures?.take(source);
      return reject(ENROLL_STATUS.REJECTED, `${err.code}: ${err.message}`, { ...who, counted: 'source' });
    }
    if (isEnrollError(err, 'ERR_POP_INVALID')) {
      // In flight from here (no await in between since the check above) until recorded.
      flights.set(id, (flights.get(id) ?? 0) + 1);
      const release = () => {
        const n = (flights.get(id) ?? 1) - 1;
        if (n > 0) flights.set(id, n);
        else flights.delete(id);
      };
      const attempts = await store.recordFailure(enrolleeId).finally(release);
      return reject(ENROLL_STATUS.REJECTED, `${err.code}: ${err.message}`, { ...who, failed_attempts: attempts });
    }
    throw err;
  } finally {
    opkPrivate?.fill(0);
  }

  // The operator's --on-enroll hook (hooks.ts), after checks 1–5 and before the commit: a
  // refusal records and consumes nothing, and is no crypto failure (no lockout count).
  const denied = await beforeCommit(svc, { enrollee, bundle, ikB: result.ikB, peer, now });
  if (denied !== undefined) return reject(ENROLL_STATUS.REJECTED, denied.reason, { ...who, ...denied.fields });
  if (opts.canAnswer !== undefined && !opts.canAnswer()) {
    return reject(ENROLL_STATUS.UNAVAILABLE, 'ERR_CONNECTION_CLOSED: the peer closed before its enrollment was committed; nothing recorded', who);
  }

  // The credential (docs/protocol.md §4.4) is signed while the commit waits for the disk (on
  // service start's signing thread, credentials.ts); a lost race below leaves it unused.
  const signing = issueCredential(svc, { enrolleeId, ikB: result.ikB, petName: enrollee.petName, now, attributes: enrollee.attributes });
  signing.catch(() => undefined);

  // Commit durably (EK_B recorded, OPK consumed, IK_B enrolled) before the acceptance leaves:
  // grouped with the other enrollments of this event-loop turn into one transaction, and
  // resolved only after its COMMIT (commits.ts).
  let enrolled;
  try {
    enrolled = await commitQueueFor(store).commit({ enrolleeId, bundleId: bundle.id, ekB, ikB: result.ikB, now });
  } catch (err) {
    // A lost race is the store's conditional update refusing this enrollment; anything else
    // (ERR_STORE: the disk, a lock) committed nothing, and the caller answers UNAVAILABLE.
    const status = err instanceof EnrollError ? LOST_RACE_STATUS[err.code] : undefined;
    if (status === undefined) throw err;
    return reject(status, `${(err as EnrollError).code}: ${(err as EnrollError).message} (lost a race)`, who);
  }

  // It rides in the sealed acceptance, version 2 (§5.7), with the committed pet name (a
  // re-approval under another name may have landed between the lookup and the commit).
  let cred = await signing;
  // Likewise the committed attributes: a set-attr may have landed meanwhile (docs/policies.md).
  if (cred.petName !== (enrolled.petName ?? '') || (enrolled.attributes !== undefined && !sameAttributes(cred.attributes, enrolled.attributes))) {
    cred = await issueCredential(svc, { enrolleeId, ikB: result.ikB, petName: enrolled.petName, now, attributes: enrolled.attributes });
  }
  const session = serviceSession(result.session);
  const sealed = session.send.seal(
    encodeAcceptance({ enrolleeId, enrolledAt: now, petName: enrolled.petName ?? '', addr: svc.settings.address, credential: cred.credential }),
    concat(ACCEPT_AAD, enrolleeId),
  );
  log('accepted', { ...who, peer, eka, ik_b: toHex(result.ikB), credential_expires_at: new Date(cred.expiresAt * 1000).toISOString() });
  return { status: ENROLL_STATUS.ACCEPTED, response: encodeEnrollResponse(ENROLL_STATUS.ACCEPTED, sealed) };
}

/**
 * Messages being opened on the pool, per enrollee id and per source: the pool's answer
 * comes back asynchronously, so the lockout (check 5's failures) and the per-source bucket
 * (check 4's) cannot be checked and charged in one synchronous step as in this thread.
 * Instead no message is sent to the pool unless, should every message of its enrollee (and
 * of its source) then in flight fail, the lockout would still not be reached (and its
 * source's bucket still hold a token for each). A message that would go past waits for those
 * in flight and starts over from checks 2 and 3, so the answers are those of some order of
 * the messages one at a time, as without the pool.
 */
class InFlight {
  readonly #n = new Map<string, number>();
  readonly #waiters = new Map<string, (() => void)[]>();

  count(key: string): number {
    return this.#n.get(key) ?? 0;
  }

  enter(key: string): void {
    this.#n.set(key, this.count(key) + 1);
  }

  leave(key: string): void {
    const n = this.count(key) - 1;
    if (n > 0) this.#n.set(key, n);
    else this.#n.delete(key);
    const w = this.#waiters.get(key);
    if (w === undefined) return;
    this.#waiters.delete(key);
    for (const wake of w) wake();
  }

  /** Resolves when one of `key`'s messages in flight leaves. */
  settled(key: string): Promise<void> {
    return new Promise((resolve) => {
      const w = this.#waiters.get(key);
      if (w === undefined) this.#waiters.set(key, [resolve]);
      else w.push(resolve);
    });
  }
}

const opening = new WeakMap<ServiceHome, { ids: InFlight; sources: InFlight }>();

function openingFor(svc: ServiceHome): { ids: InFlight; sources: InFlight } {
  let o = opening.get(svc);
  if (o === undefined) {
    o = { ids: new InFlight(), sources: new InFlight() };
    opening.set(svc, o);
  }
  return o;
}

interface PoolEnrollment {
  message: Uint8Array;
  eka: 1 | 2;
  ekB: Uint8Array;
  enrolleeId: Uint8Array;
  id: string;
  found: { enrollee: EnrolleeRecord; bundle: BundleRecord; spk: SignedPrekeyRecord };
  who: Record<string, unknown>;
  now: number;
  log: DecisionLog;
  peer: string | undefined;
  opts: HandleEnrollmentOptions;
}

/** A job's failure that is no verdict on the message (a dead worker, a sealed key): the server answers UNAVAILABLE. */
function jobFailure(r: { code: string; message: string }): EnrollError {
  return new EnrollError(r.code as ErrorCode, r.message);
}

/**
 * handleEnrollment after checks 1–3 and the version check, with checks 4 and 5, the
 * credential and the sealed acceptance on the pool (src/pool); the lockout, the hook, the
 * commit and the answer's order stay here.
 */
async function enrollOnPool(svc: ServiceHome, pool: EnrollPool, e: PoolEnrollment): Promise<EnrollOutcome> {
  const { enrollee, bundle, spk } = e.found;
  const { id, who, log, peer, opts, now } = e;
  const reject = (status: EnrollStatus, reason: string, fields: Record<string, unknown> = {}): EnrollOutcome => rejection(log, peer, status, reason, fields);
  const again = () => handleEnrollment(svc, e.message, now, log, peer, opts);
  const flights = attemptsInFlight(svc);
  const op = openingFor(svc);
  const busy = flights.get(id) ?? 0;
  const locked = lockedOut(svc, enrollee.failedAttempts, busy, log, peer, who);
  if (locked) return locked;
  if (enrollee.failedAttempts + busy + op.ids.count(id) >= svc.settings.maxFailedAttempts) {
    await op.ids.settled(id);
    return again();
  }
  const failures = failuresFor(svc, opts.failuresPerSource);
  const source = peerIpKey(peer);
  const limited = sourceLimited(failures, source, log, peer, who, opts);
  if (limited) return limited;
  if (failures !== null && failures.tokens(source) < op.sources.count(source) + 1) {
    await op.sources.settled(source);
    return again();
  }

  const job = {
    eka: e.eka,
    message: e.message,
    eikB: enrollee.eikB!,
    bundleId: bundle.id,
    opkSealed: bundle.opkPrivateSealed!,
    bundleAddr: bundle.addr,
    enrolleeId: e.enrolleeId,
    issuedAt: now,
    expiresAt: now + credentialTtl(svc),
    petName: enrollee.petName ?? '',
    addr: svc.settings.address,
  };
  // The credential's version and attributes, as issueCredential decides them in this thread.
  const credentialFor = (attributes: Attributes | undefined) => {
    if (credentialVersion(svc, attributes) !== 2) return undefined;
    const csk = serviceCsk(svc);
    return { attributes: attributes ?? {}, csk: { certificate: csk.certificate, seedSealed: csk.seedSealed } };
  };
  const credential = credentialFor(enrollee.attributes);
  op.ids.enter(id);
  op.sources.enter(source);
  let r: OpenResult;
  try {
    r = await pool.open(job, spk, credential);
  } finally {
    op.ids.leave(id);
    op.sources.leave(source);
  }
  // From here to the charge, synchronous: the reservations above just left.
  if (!r.ok) {
    if (r.code === 'ERR_ENROLLMENT_DECRYPT') {
      failures?.take(source);
      return reject(ENROLL_STATUS.REJECTED, `${r.code}: ${r.message}`, { ...who, counted: 'source' });
    }
    if (r.code === 'ERR_POP_INVALID') {
      flights.set(id, (flights.get(id) ?? 0) + 1);
      const release = () => {
        const n = (flights.get(id) ?? 1) - 1;
        if (n > 0) flights.set(id, n);
        else flights.delete(id);
      };
      const attempts = await svc.store.recordFailure(e.enrolleeId).finally(release);
      return reject(ENROLL_STATUS.REJECTED, `${r.code}: ${r.message}`, { ...who, failed_attempts: attempts });
    }
    throw jobFailure(r);
  }

  const denied = await beforeCommit(svc, { enrollee, bundle, ikB: r.ikB, peer, now });
  if (denied !== undefined) return reject(ENROLL_STATUS.REJECTED, denied.reason, { ...who, ...denied.fields });
  if (opts.canAnswer !== undefined && !opts.canAnswer()) {
    return reject(ENROLL_STATUS.UNAVAILABLE, 'ERR_CONNECTION_CLOSED: the peer closed before its enrollment was committed; nothing recorded', who);
  }
  let enrolled;
  try {
    enrolled = await commitQueueFor(svc.store).commit({ enrolleeId: e.enrolleeId, bundleId: bundle.id, ekB: e.ekB, ikB: r.ikB, now });
  } catch (err) {
    const status = err instanceof EnrollError ? LOST_RACE_STATUS[err.code] : undefined;
    if (status === undefined) throw err;
    return reject(status, `${(err as EnrollError).code}: ${(err as EnrollError).message} (lost a race)`, who);
  }
  // The acceptance carries the committed pet name, the committed attributes (a set-attr may
  // have landed meanwhile, docs/policies.md) and the address now in force; if any moved since
  // the job was sent, the job runs again with them (the first answer is dropped unsent).
  // Committed by now, so a worker lost meanwhile is retried once on its replacement.
  let response = r.response;
  const committedCredential = enrolled.attributes === undefined ? credential : credentialFor(enrolled.attributes);
  const sameCredential =
    committedCredential === undefined ? credential === undefined : credential !== undefined && sameAttributes(credential.attributes, committedCredential.attributes);
  if ((enrolled.petName ?? '') !== job.petName || svc.settings.address !== job.addr || !sameCredential) {
    const redo = { ...job, petName: enrolled.petName ?? '', addr: svc.settings.address };
    const r2 = await pool.open(redo, spk, committedCredential).catch((err: unknown) => (isEnrollError(err, 'ERR_INTERNAL') ? pool.open(redo, spk, committedCredential) : Promise.reject(err)));
    if (!r2.ok) throw jobFailure(r2);
    response = r2.response;
  }
  log('accepted', { ...who, peer, eka: e.eka, ik_b: toHex(r.ikB), credential_expires_at: new Date(job.expiresAt * 1000).toISOString() });
  return { status: ENROLL_STATUS.ACCEPTED, response };
}
