/**
 * The service side of one enrollment message: the five checks of docs/protocol.md §5.4 in
 * order, the durable commit, and the sealed acceptance. Returns the response frame; the
 * caller sends it. Precise reasons go to the decision log; the peer gets only an
 * ENROLL_STATUS, with crypto failures collapsed into the opaque REJECTED.
 */
import type { KeyObject } from 'node:crypto';
import { concat, equalBytes, toHex } from '../../crypto/bytes.js';
import { importX25519Private } from '../../crypto/x25519.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import { mlKem768Decapsulator, mlKem768Keygen, type MlKemDecapsulator } from '../../crypto/mlkem.js';
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
import type { Sealer } from '../../store/sealing.js';
import type { SignedPrekeyRecord } from '../../store/types.js';
import { commitQueueFor } from './commits.js';
import { issueCredential } from './credentials.js';
import { sameAttributes } from '../../protocol/codec/attributes.js';
import type { ServiceHome } from './home.js';
import { beforeCommit } from './hooks.js';
import { DEFAULT_FAIL_RATE_PER_IP, parseRate, peerIpKey, TokenBuckets } from './limits.js';
import type { DecisionFields, DecisionLog } from './log.js';

export interface EnrollOutcome {
  status: EnrollStatus;
  response: Uint8Array;
}

/**
 * SPK_A private keys, unsealed and imported once per SPK rather than once per message (an
 * AES-GCM open and a ~40 µs X25519 private-key import each time). Keyed by the sealer, so
 * by service home, then by SPK id; the public key is compared on every use. SPKs are few
 * (one per rotation), so the map stays small; it is bounded anyway.
 */
const spkKeys = new WeakMap<Sealer, Map<number, { publicKey: Uint8Array; key: KeyObject }>>();
const MAX_CACHED_SPKS = 64;

function spkKey(sealer: Sealer, spk: SignedPrekeyRecord): KeyObject {
  let bySealer = spkKeys.get(sealer);
  if (bySealer === undefined) {
    bySealer = new Map();
    spkKeys.set(sealer, bySealer);
  }
  const hit = bySealer.get(spk.id);
  if (hit !== undefined && equalBytes(hit.publicKey, spk.publicKey)) return hit.key;
  const raw = sealer.open(spk.privateSealed, 'spk', spk.publicKey);
  try {
    const key = importX25519Private(raw, 'SPK_A');
    if (bySealer.size >= MAX_CACHED_SPKS) bySealer.clear();
    bySealer.set(spk.id, { publicKey: Uint8Array.from(spk.publicKey), key });
    return key;
  } finally {
    raw.fill(0);
  }
}

/**
 * PQSPK_A decapsulation keys, expanded from their sealed seeds once per SPK (an unseal and
 * an ML-KEM-768 KeyGen, about 0.7 ms) rather than once per message, and prepared for
 * decapsulation (mlKem768Decapsulator: the public matrix expanded once); like spkKeys.
 */
const kemKeys = new WeakMap<Sealer, Map<number, { hash: Uint8Array; secretKey: Uint8Array; decapsulator: MlKemDecapsulator }>>();

function kemSecretKey(sealer: Sealer, spk: SignedPrekeyRecord): { hash: Uint8Array; secretKey: Uint8Array; decapsulator: MlKemDecapsulator } {
  const kem = spk.kem;
  if (!kem) throw new EnrollError('ERR_STORE', `signed prekey ${spk.id} has no KEM prekey`);
  if (kem.seedSealed.length === 0) {
    // Erased by a rotation once its bundles had expired (rotation.ts): unreachable for a live bundle.
    throw new EnrollError('ERR_STORE', `the KEM prekey of signed prekey ${spk.id} was erased after its bundles expired`);
  }
  let bySealer = kemKeys.get(sealer);
  if (bySealer === undefined) {
    bySealer = new Map();
    kemKeys.set(sealer, bySealer);
  }
  const hit = bySealer.get(spk.id);
  if (hit !== undefined && equalBytes(hit.hash, kem.hash)) return hit;
  const seed = sealer.open(kem.seedSealed, 'kem', kem.hash);
  try {
    const pair = mlKem768Keygen(seed);
    if (!equalBytes(pair.publicKey, kem.publicKey)) throw new EnrollError('ERR_STORE', `the KEM prekey of signed prekey ${spk.id} does not match its seed`);
    const entry = { hash: Uint8Array.from(kem.hash), secretKey: pair.secretKey, decapsulator: mlKem768Decapsulator(pair.secretKey) };
    if (bySealer.size >= MAX_CACHED_SPKS) {
      for (const e of bySealer.values()) e.secretKey.fill(0);
      bySealer.clear();
    }
    bySealer.set(spk.id, entry);
    return entry;
  } finally {
    seed.fill(0);
  }
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

export async function handleEnrollment(
  svc: ServiceHome,
  message: Uint8Array,
  now: number,
  log: DecisionLog,
  peer?: string,
  opts: HandleEnrollmentOptions = {},
): Promise<EnrollOutcome> {
  const reject = (status: EnrollStatus, reason: string, fields: Record<string, unknown> = {}): EnrollOutcome => {
    log('rejected', { reason, peer, ...fields });
    return { status, response: encodeEnrollResponse(status) };
  };

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
  // The lockout counts only failures past decryption (check 5), with those still being
  // recorded: only a holder of EIK_B's private key and of the bundle can make a message that
  // decrypts, so whoever has merely seen the card cannot consume this enrollee's attempts.
  const flights = attemptsInFlight(svc);
  const busy = flights.get(id) ?? 0;
  if (enrollee.failedAttempts + busy >= svc.settings.maxFailedAttempts) {
    return reject(ENROLL_STATUS.LOCKED, `ERR_ENROLLEE_LOCKED: ${enrollee.failedAttempts} failed attempts, ${busy} in flight`, who);
  }
  // A message that fails to decrypt is charged to its source instead (anyone can make one
  // from the card), checked here before any crypto and taken below in the same synchronous
  // step as the decryption, so concurrent messages from one source cannot exceed its bucket.
  const failures = failuresFor(svc, opts.failuresPerSource);
  const source = peerIpKey(peer);
  const sourceWait = failures?.available(source) ?? 0;
  if (sourceWait > 0) {
    const fields = { peer, ...who, reason: `ERR_RATE_LIMITED: over ${failures!.spec.text} failed decryptions from this address`, retry_ms: sourceWait };
    if (opts.onSourceLimited) opts.onSourceLimited(fields);
    else log('limited', { limit: 'fail-rate-per-ip', ...fields });
    return { status: ENROLL_STATUS.RATE_LIMITED, response: encodeEnrollResponse(ENROLL_STATUS.RATE_LIMITED) };
  }

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
