/**
 * The enrollee's side of the lifecycle (docs/protocol.md §7.9, §7.10), over its session
 * channel (Noise XX, IK_B ↔ the pinned IK_A, §6.4):
 *
 * - **status**: STATUS_REQUEST → STATUS, then ADDRESS_REQUEST → ADDRESS. A newer
 *   announcement signed by the pinned IK_A moves the saved service address (service.json,
 *   written atomically), so the next session goes to where the service is now.
 * - **the identity key in use**: `ik_b.key`, and while a rotation is unfinished also
 *   `ik_b.old.key` (rotate.ts). The service admits exactly one of them, so a session tries
 *   the new key, then the old; whichever the service admits tells how far the rotation got.
 * - **watch**: the channel stays open with a STATUS_REQUEST every interval; the service
 *   closes it with an ERROR when it revokes this enrollee (lifecycle.ts on its side). A
 *   credential that is due or whose subject changed (§7.9.4) is fetched on that channel.
 */
import { equalBytes, fromHex, toHex } from '../../crypto/bytes.js';
import type { KeyPair } from '../../crypto/x25519.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import { verifyAnnouncement, type AddressAnnouncement } from '../../protocol/announce.js';
import { credentialFromText } from '../../protocol/credential.js';
import { credentialSubjectDigest } from '../../protocol/credential-fields.js';
import { messageType } from '../../protocol/messages/common.js';
import {
  decodeStatus,
  encodeStatusRequest,
  KIND_SESSION,
  kindFrame,
  PROLOGUE_ENROLLEE_SERVICE,
  type StatusReport,
} from '../../protocol/messages/service.js';
import { decodeAddress, decodeCredentialMsg, encodeAddressRequest, encodeCredentialRequest } from '../../protocol/messages/session.js';
import { formatAddress, parseAddress } from '../../transport/address.js';
import { initiateChannel, type SecureChannel } from '../../transport/channel.js';
import { connectTcp } from '../../transport/tcp.js';
import { acceptCredential, CREDENTIAL_FILE, CREDENTIAL_NEXT_FILE, saveCredential, storedCredential } from './credential.js';
import { IK_B_FILE, SERVICE_FILE, type EnrolledService, type EnrolleeHome } from './home.js';

/** IK_B before a rotation the service has not confirmed yet (rotate.ts). */
export const IK_B_OLD_FILE = 'ik_b.old.key';
/** How long to wait for each reply on the session channel. */
export const REPLY_TIMEOUT_MS = 15_000;

/**
 * service.json with the sequence number of the last address announcement taken (0 or absent:
 * none), and the address before it, tried when the new one cannot be reached (the operator
 * may announce the new address before the service listens there).
 */
export type ServiceRecord = EnrolledService & { address_seq?: number; previous_address?: string };

export function serviceRecord(enrollee: EnrolleeHome): ServiceRecord {
  const svc = enrollee.enrolled() as ServiceRecord | undefined;
  if (!svc) throw new EnrollError('ERR_KEY_MISSING', 'this enrollee is not enrolled yet', { hint: 'run `ockam-enroll enrollee join` first' });
  if (typeof svc.service_key !== 'string' || typeof svc.address !== 'string') {
    throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${enrollee.keystore.path(SERVICE_FILE)} lacks the service key or address`);
  }
  return svc;
}

function knownSeq(svc: ServiceRecord): number {
  const s = svc.address_seq;
  return typeof s === 'number' && Number.isSafeInteger(s) && s >= 0 ? s : 0;
}

/** Opens a session channel to `address` as `ikB`, requiring the service key `ikA` (before msg 3, §6.4). */
export async function openSession(address: string, ikB: KeyPair, ikA: Uint8Array): Promise<SecureChannel> {
  const conn = await connectTcp(address);
  try {
    await conn.writeFrame(kindFrame(KIND_SESSION));
    return await initiateChannel(conn, {
      staticKeyPair: ikB,
      prologue: PROLOGUE_ENROLLEE_SERVICE,
      verifyRemote(key) {
        if (!equalBytes(key, ikA)) {
          throw new EnrollError('ERR_SERVICE_KEY_MISMATCH', `the service at ${address} presented ${toHex(key)}, not the key this enrollee enrolled with`);
        }
      },
    });
  } catch (err) {
    conn.destroy();
    throw err;
  }
}

/**
 * A session to the saved address or, when nothing answers there, to the address before the
 * last move (§7.10): the pinned IK_A authenticates either, so the fallback trusts nothing new.
 */
export async function openSessionAt(svc: ServiceRecord, ikB: KeyPair, ikA: Uint8Array): Promise<SecureChannel> {
  try {
    return await openSession(svc.address, ikB, ikA);
  } catch (err) {
    const previous = svc.previous_address;
    if (!isEnrollError(err, 'ERR_UNREACHABLE') || typeof previous !== 'string' || previous === svc.address) throw err;
    return openSession(previous, ikB, ikA);
  }
}

/** STATUS, with the subject digest of the credential the service would issue now (§7.9.4; a service before it leaves it out). */
export async function requestStatus(channel: SecureChannel, timeoutMs = REPLY_TIMEOUT_MS): Promise<StatusReport> {
  await channel.send(encodeStatusRequest({ wantSubjectDigest: true }));
  return decodeStatus(await channel.receive(timeoutMs));
}

/** The service's latest address announcement (undefined: it never moved). */
export async function requestAddress(channel: SecureChannel, timeoutMs = REPLY_TIMEOUT_MS): Promise<AddressAnnouncement | undefined> {
  await channel.send(encodeAddressRequest());
  return decodeAddress(await channel.receive(timeoutMs));
}

/**
 * Takes an announcement if it is newer than the one last taken and verifies under the
 * pinned IK_A (protocol/announce.ts); then service.json gets the new address and seq in
 * one atomic write. Returns the new address, or undefined when there was nothing to learn.
 */
export function learnAddress(enrollee: EnrolleeHome, a: AddressAnnouncement | undefined): string | undefined {
  if (a === undefined) return undefined;
  const svc = serviceRecord(enrollee);
  const newer = verifyAnnouncement(a, {
    ikA: fromHex(svc.service_key, 'service_key'),
    knownSeq: knownSeq(svc),
    // The enrollee will connect there: it must be a tcp://HOST:PORT it can use.
    checkAddress: (addr) => void parseAddress(addr),
  });
  if (!newer) return undefined;
  const address = formatAddress(parseAddress(a.address));
  const record: ServiceRecord = { ...svc, address, address_seq: a.seq, previous_address: svc.address };
  enrollee.keystore.writeJson(SERVICE_FILE, record, { overwrite: true });
  return address;
}

export interface AdmittedSession {
  channel: SecureChannel;
  report: StatusReport;
  ikB: KeyPair;
  /** The key file the service admitted: ik_b.key, or ik_b.old.key mid-rotation. */
  file: string;
  svc: ServiceRecord;
}

/**
 * Opens a session with the identity key the service admits: `ik_b.key`, then, if the
 * service does not know that one and a rotation is unfinished, `ik_b.old.key`. When the new
 * key is admitted while the old file is still there, the service has switched: the
 * rotation is completed here (service.json names the new key; the old file goes).
 */
export async function admittedSession(enrollee: EnrolleeHome, onInfo?: (line: string) => void): Promise<AdmittedSession> {
  const svc = serviceRecord(enrollee);
  const ikA = fromHex(svc.service_key, 'service_key');
  const files = [IK_B_FILE, ...(enrollee.keystore.hasKey(IK_B_OLD_FILE) ? [IK_B_OLD_FILE] : [])];
  for (let i = 0; ; i++) {
    const file = files[i]!;
    if (file === IK_B_FILE && !enrollee.keystore.hasKey(IK_B_FILE)) {
      throw new EnrollError('ERR_KEY_MISSING', 'this enrollee is not enrolled yet', { hint: 'run `ockam-enroll enrollee join` first' });
    }
    const ikB = await enrollee.keystore.loadKeyPair(file);
    const channel = await openSessionAt(svc, ikB, ikA);
    try {
      const report = await requestStatus(channel);
      if (file === IK_B_FILE && files.length > 1) {
        if (finishRotation(enrollee, svc, ikB, onInfo) === 'missing') await fetchCredential(enrollee, ikB, onInfo);
      } else if (file === IK_B_OLD_FILE) onInfo?.('a key rotation was interrupted before the service took the new key: run `ockam-enroll enrollee rotate` to finish it');
      return { channel, report, ikB, file, svc: serviceRecord(enrollee) };
    } catch (err) {
      channel.connection.destroy();
      // The service does not know this key: the other file may be the one it has.
      if (isEnrollError(err, 'ERR_ENROLLEE_UNKNOWN') && i + 1 < files.length) continue;
      throw err;
    }
  }
}

/**
 * The service admits `ikB` from ik_b.key: the home switches to it, key and credential
 * together (docs/protocol.md §7.9.2). `credential` is the one ROTATED carried (checked by the
 * caller); without it, one staged by an interrupted run is used if it names this enrollee,
 * key and service. Each step is one atomic write or removal, in an order that never leaves
 * credential.txt naming another key than service.json:
 *   1. credential.next.txt ← the new credential (staged)
 *   2. credential.txt removed, unless it already names the new key
 *   3. service.json identity_key ← the new key
 *   4. credential.txt ← the staged credential, then credential.next.txt removed
 *   5. ik_b.old.key removed (while it exists, a crash above still finds both keys)
 * Returns 'installed' (a credential for the new key is in place), or 'missing' (none came:
 * the ROTATED that carried it was lost, or the service predates it; fetchCredential asks).
 */
export function finishRotation(
  enrollee: EnrolleeHome,
  svc: ServiceRecord,
  ikB: KeyPair,
  onInfo?: (line: string) => void,
  credential?: string,
): 'installed' | 'missing' {
  const ks = enrollee.keystore;
  const hex = toHex(ikB.publicKey);
  const names = (c: { credential: { enrolleeId: Uint8Array; ikB: Uint8Array; issuer: Uint8Array } } | undefined): boolean =>
    c !== undefined && toHex(c.credential.enrolleeId) === svc.enrollee_id && toHex(c.credential.ikB) === hex && toHex(c.credential.issuer) === svc.service_key;
  if (credential !== undefined) ks.writeBytes(CREDENTIAL_NEXT_FILE, `${credential}\n`, { overwrite: true });
  const staged = stagedCredential(enrollee);
  const next = names(staged) ? staged!.text : undefined;
  let current;
  try {
    current = storedCredential(enrollee);
  } catch {
    current = undefined; // a damaged file is replaced or removed below
  }
  const currentIsNew = names(current);
  if (!currentIsNew) ks.remove(CREDENTIAL_FILE);
  if (svc.identity_key !== hex) {
    ks.writeJson(SERVICE_FILE, { ...serviceRecord(enrollee), identity_key: hex } satisfies ServiceRecord, { overwrite: true });
    if (credential === undefined) onInfo?.(`finished an interrupted key rotation: the service knows this enrollee by ${hex}`);
  }
  if (next !== undefined) saveCredential(enrollee, next);
  ks.remove(CREDENTIAL_NEXT_FILE);
  ks.remove(IK_B_OLD_FILE);
  return next !== undefined || currentIsNew ? 'installed' : 'missing';
}

/** credential.next.txt, decoded, or undefined (absent or unreadable: then it is not used). */
function stagedCredential(enrollee: EnrolleeHome): { text: string; credential: { enrolleeId: Uint8Array; ikB: Uint8Array; issuer: Uint8Array } } | undefined {
  const b = enrollee.keystore.readBytes(CREDENTIAL_NEXT_FILE);
  if (b === undefined) return undefined;
  const text = Buffer.from(b).toString('utf8').trim();
  try {
    return { text, credential: credentialFromText(text) };
  } catch {
    return undefined;
  }
}

/** CREDENTIAL_REQUEST (§7.9.2) on a session of its own; the answer is checked as an acceptance's and kept. */
async function requestCredential(enrollee: EnrolleeHome, svc: ReturnType<typeof serviceRecord>, ikB: KeyPair, ikA: Uint8Array): Promise<void> {
  const channel = await openSessionAt(svc, ikB, ikA);
  try {
    await channel.send(encodeCredentialRequest());
    const bytes = decodeCredentialMsg(await channel.receive(REPLY_TIMEOUT_MS));
    saveCredential(enrollee, acceptCredential(bytes, { ikA, enrolleeId: fromHex(svc.enrollee_id, 'enrollee_id'), ikB: ikB.publicKey }));
    await channel.close();
  } finally {
    channel.connection.destroy();
  }
}

/**
 * Asks the service for a credential for `ikB` on a session of its own (CREDENTIAL_REQUEST,
 * §7.9.2), checks it as an acceptance's (credential.ts acceptCredential) and keeps it. For a
 * rotation whose ROTATED was lost. A service that does not know the request, or any other
 * failure, leaves the device without a credential, said in an info line, not an error: the
 * rotation itself is done.
 */
export async function fetchCredential(enrollee: EnrolleeHome, ikB: KeyPair, onInfo?: (line: string) => void): Promise<boolean> {
  const svc = serviceRecord(enrollee);
  const ikA = fromHex(svc.service_key, 'service_key');
  try {
    await requestCredential(enrollee, svc, ikB, ikA);
    onInfo?.(`the service issued a credential for the new identity key, in ${enrollee.keystore.path(CREDENTIAL_FILE)}`);
    return true;
  } catch (err) {
    onInfo?.(`no credential for the new identity key (${err instanceof Error ? err.message : String(err)}); the old one named the replaced key and was removed`);
    return false;
  }
}

export interface StatusResult extends StatusReport {
  /** The address the session went to. */
  address: string;
  /** The new address taken from a newer announcement, if any. */
  moved: string | undefined;
}

/**
 * `enrollee status`: one session — STATUS, then the address announcement — then close.
 * An address request refused with ERR_PROTOCOL (a service without §7.9) is not an error.
 */
export async function checkStatus(enrollee: EnrolleeHome, onInfo?: (line: string) => void): Promise<StatusResult> {
  const s = await admittedSession(enrollee, onInfo);
  let result: StatusResult;
  try {
    const moved = await learnFrom(enrollee, s.channel);
    await s.channel.close();
    result = { ...s.report, address: s.svc.address, moved };
  } finally {
    s.channel.connection.destroy();
  }
  await renewCredentialIfDue(enrollee, s.ikB, Math.floor(Date.now() / 1000), onInfo, s.report.subjectDigest);
  return result;
}

/**
 * Why the kept credential should be replaced now, or undefined when it is fine.
 *
 * Credentials are short-lived (24 h by default, docs/threat-model.md §5.15) so that a
 * revocation reaches offline verifiers within one lifetime: the device renews its own over
 * the session it keeps anyway, once half the lifetime has passed (or when it has none, or one
 * for another key): 'due'. When `subjectDigest` (from STATUS, §7.9.4) differs from the kept
 * credential's, the service would now say something else about this device — its attributes
 * changed (`service enrollee set-attr`/`unset-attr`) — so it is reissued at once: 'changed'.
 */
export function credentialRenewal(enrollee: EnrolleeHome, ikB: KeyPair, now: number, subjectDigest?: Uint8Array): 'due' | 'changed' | undefined {
  let kept;
  try {
    kept = storedCredential(enrollee);
  } catch {
    kept = undefined;
  }
  if (kept === undefined) return 'due';
  const c = kept.credential;
  if (subjectDigest !== undefined && !equalBytes(subjectDigest, credentialSubjectDigest(c.petName, c.version === 2 ? c.attributes : {}))) return 'changed';
  if (!equalBytes(c.ikB, ikB.publicKey) || now >= c.issuedAt + Math.floor((c.expiresAt - c.issuedAt) / 2)) return 'due';
  return undefined;
}

function renewedLine(enrollee: EnrolleeHome, why: 'due' | 'changed'): string {
  return why === 'changed'
    ? `the service changed what it says about this enrollee (its attributes): fetched the reissued credential, in ${enrollee.keystore.path(CREDENTIAL_FILE)}`
    : `renewed this enrollee's credential, in ${enrollee.keystore.path(CREDENTIAL_FILE)}`;
}

function notRenewedLine(err: unknown): string {
  return `the credential was not renewed (${err instanceof Error ? err.message : String(err)}); the one kept stays until it expires`;
}

/**
 * Renews the kept credential when credentialRenewal says so, on a session of its own. A
 * revoked device is refused the session, so it gets no new one. A failed renewal is said in
 * an info line; the status itself stands. Returns whether a new credential was kept.
 */
export async function renewCredentialIfDue(enrollee: EnrolleeHome, ikB: KeyPair, now: number, onInfo?: (line: string) => void, subjectDigest?: Uint8Array): Promise<boolean> {
  const why = credentialRenewal(enrollee, ikB, now, subjectDigest);
  if (why === undefined) return false;
  const svc = serviceRecord(enrollee);
  const ikA = fromHex(svc.service_key, 'service_key');
  try {
    await requestCredential(enrollee, svc, ikB, ikA);
    onInfo?.(renewedLine(enrollee, why));
    return true;
  } catch (err) {
    onInfo?.(notRenewedLine(err));
    return false;
  }
}

/**
 * The watch's renewal: CREDENTIAL_REQUEST (§7.9.2) on the watch's own channel, between two
 * STATUS requests, so a `set-attr` reaches a watching device within one interval without a
 * second handshake. An ERROR that ends the session (a revocation pushed meanwhile, a closed
 * channel) is thrown; any other refusal (the service's 6/h credential limit) is an info line.
 */
async function renewOnChannel(enrollee: EnrolleeHome, channel: SecureChannel, ikB: KeyPair, why: 'due' | 'changed', onInfo?: (line: string) => void): Promise<boolean> {
  const svc = serviceRecord(enrollee);
  try {
    await channel.send(encodeCredentialRequest());
    const bytes = decodeCredentialMsg(await channel.receive(REPLY_TIMEOUT_MS));
    saveCredential(enrollee, acceptCredential(bytes, { ikA: fromHex(svc.service_key, 'service_key'), enrolleeId: fromHex(svc.enrollee_id, 'enrollee_id'), ikB: ikB.publicKey }));
  } catch (err) {
    if (isEnrollError(err, 'ERR_ENROLLEE_REVOKED') || isEnrollError(err, 'ERR_ENROLLEE_UNKNOWN') || isEnrollError(err, 'ERR_CONNECTION_CLOSED') || isEnrollError(err, 'ERR_TIMEOUT')) {
      throw closedBecause(err);
    }
    onInfo?.(notRenewedLine(err));
    return false;
  }
  onInfo?.(renewedLine(enrollee, why));
  return true;
}

/**
 * After a failed renewal the watch asks again only when the subject digest moves on, or after
 * this long: the service grants 6 credential requests an hour per key (CREDENTIAL_REQUEST_RATE),
 * so one every 10 minutes stays within it rather than spending the interval's pace on refusals.
 */
export const WATCH_RENEW_RETRY_MS = 10 * 60_000;

async function learnFrom(enrollee: EnrolleeHome, channel: SecureChannel): Promise<string | undefined> {
  let a: AddressAnnouncement | undefined;
  try {
    a = await requestAddress(channel);
  } catch (err) {
    if (isEnrollError(err, 'ERR_PROTOCOL')) return undefined;
    throw err;
  }
  return learnAddress(enrollee, a);
}

export interface WatchOptions {
  /** Time between two STATUS_REQUESTs. */
  intervalMs: number;
  onInfo?: (line: string) => void;
  /** Called with the first report, and with every report that differs from the one before. */
  onStatus: (s: StatusResult) => void;
}

/**
 * `enrollee status --watch`: keeps the session open, asking for STATUS every interval and
 * listening in between, so that an ERROR the service pushes (a revocation, §7.9) ends the
 * watch within moments rather than at the next request. Returns only by throwing: a
 * revocation is ERR_ENROLLEE_REVOKED, a closed or silent service ERR_CONNECTION_CLOSED /
 * ERR_TIMEOUT.
 */
export async function watchStatus(enrollee: EnrolleeHome, opts: WatchOptions): Promise<never> {
  const s = await admittedSession(enrollee, opts.onInfo);
  const channel = s.channel;
  try {
    const moved = await learnFrom(enrollee, channel);
    let last = { ...s.report, address: s.svc.address, moved };
    // As `enrollee status` does (checkStatus), then after every report: a credential that is
    // due, or that no longer says what the service would sign now (§7.9.4), is replaced.
    let failed: { digest: string; at: number } | undefined;
    const renew = async (report: StatusReport): Promise<boolean> => {
      const why = credentialRenewal(enrollee, s.ikB, Math.floor(Date.now() / 1000), report.subjectDigest);
      if (why === undefined) return false;
      const digest = report.subjectDigest === undefined ? '' : toHex(report.subjectDigest);
      if (failed !== undefined && failed.digest === digest && Date.now() - failed.at < WATCH_RENEW_RETRY_MS) return false;
      const renewed = await renewOnChannel(enrollee, channel, s.ikB, why, opts.onInfo);
      failed = renewed ? undefined : { digest, at: Date.now() };
      return renewed;
    };
    await renew(s.report);
    opts.onStatus(last);
    opts.onInfo?.(`watching the session with the service at ${serviceRecord(enrollee).address} (a request every ${opts.intervalMs / 1000}s)`);
    for (;;) {
      // Between requests, a pending receive: anything the service sends now is unsolicited,
      // and the only unsolicited message is an ERROR that closes the channel.
      let pushed: Uint8Array | undefined;
      try {
        pushed = await channel.receive(opts.intervalMs);
      } catch (err) {
        if (!isEnrollError(err, 'ERR_TIMEOUT')) throw closedBecause(err);
      }
      if (pushed !== undefined) {
        try {
          messageType(pushed, [], 'status watch');
        } catch (err) {
          throw closedBecause(err);
        }
      }
      let report: StatusReport;
      try {
        report = await requestStatus(channel);
      } catch (err) {
        throw closedBecause(err);
      }
      const next = { ...report, address: s.svc.address, moved: undefined };
      // A reissued credential is a change of the report too (its `credential` field).
      const reissued = await renew(report);
      if (reissued || !sameReport(last, next)) opts.onStatus(next);
      last = next;
    }
  } finally {
    channel.connection.destroy();
  }
}

function sameReport(a: StatusReport, b: StatusReport): boolean {
  return equalBytes(a.enrolleeId, b.enrolleeId) && a.enrolledAt === b.enrolledAt && a.petName === b.petName && a.addr === b.addr;
}

/** A peer's ERROR that ended the watch, said in the watch's own words (same code, so the same exit status). */
function closedBecause(err: unknown): unknown {
  if (!(err instanceof EnrollError)) return err;
  if (err.code === 'ERR_ENROLLEE_REVOKED') {
    return new EnrollError('ERR_ENROLLEE_REVOKED', 'the service revoked this enrollee and closed the session', {
      cause: err,
      hint: 'this device must be onboarded again (`ockam-enroll enrollee init --force`, then join) to reach the service',
    });
  }
  if (err.code === 'ERR_ENROLLEE_UNKNOWN') {
    return new EnrollError('ERR_ENROLLEE_UNKNOWN', `the service closed the session: ${err.message.replace(/^the peer refused: /, '')}`, {
      cause: err,
      ...(err.hint ? { hint: err.hint } : { hint: 'if this enrollee rotated its key meanwhile, run `ockam-enroll enrollee status` again' }),
    });
  }
  if (err.code === 'ERR_CONNECTION_CLOSED') {
    return new EnrollError('ERR_CONNECTION_CLOSED', 'the service closed the session', { cause: err, hint: 'is the service still running? run `ockam-enroll enrollee status` again' });
  }
  return err;
}
