/**
 * `enrollee join`: compute the enrollment message from a bundle and send it straight to
 * the bundle's Addr; or first meet an enroller over Noise XX to receive the bundle and
 * be approved.
 */
import { concat, equalBytes, toHex } from '../../crypto/bytes.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import type { Bundle } from '../../protocol/codec/bundle.js';
import { bundleToText, decodeBundle, encodeCard, verifyBundle } from '../../protocol/codec/index.js';
import { enrolleeSession, initiate, initiateV2 } from '../../protocol/enrollment/index.js';
import { encodeError } from '../../protocol/messages/common.js';
import { decodeGo, decodeOffer, encodeCardMsg, encodeResult } from '../../protocol/messages/onboard.js';
import {
  ACCEPT_AAD,
  decodeAcceptance,
  decodeEnrollResponse,
  ENROLL_STATUS,
  KIND_ENROLL,
  kindFrame,
  PROLOGUE_ENROLLER_ENROLLEE,
} from '../../protocol/messages/service.js';
import { shortAuthString } from '../../protocol/sas.js';
import { initiateChannel } from '../../transport/channel.js';
import type { FramedConnection } from '../../transport/connection.js';
import { connectTcp } from '../../transport/tcp.js';
import { acceptCredential, saveCredential, storedCredential } from './credential.js';
import type { EnrolleeHome, EnrolledService } from './home.js';
import { fetchKemPrekey } from './kem-prekey.js';
import { statusWithKey } from './status.js';

/**
 * No fallback (docs/protocol.md §5A.3): the enrollee enrolls with the EKA version it was told
 * to use (`--eka`, default 2), and refuses a bundle of another version before it sends its
 * card or anything else. A v2 bundle is never used with v1: its version byte is signed.
 */
export function requireEka(bundle: Bundle, eka: 1 | 2): Bundle {
  if (bundle.version !== eka) {
    throw new EnrollError('ERR_EKA_VERSION', `this is a version ${bundle.version} bundle (EKA v${bundle.version}), and this enrollee requires EKA v${eka}`, {
      hint:
        eka === 2
          ? 'have the enroller fetch v2 bundles (`enroller bundle fetch --eka v2`), or pass --eka v1 to enroll without the post-quantum KEM'
          : 'pass --eka v2 to enroll with this bundle',
    });
  }
  return bundle;
}

export interface JoinResult {
  enrolleeId: string;
  identityKey: string;
  serviceKey: string;
  address: string;
  petName: string;
  enrolledAt: number;
  /** The credential's text form (OECR1:…), when the service issued one (credential.ts). */
  credential?: string;
  /** The EKA version of the enrollment: the bundle's (1: X3DH, 2: hybrid with ML-KEM-768). */
  eka?: 1 | 2;
}

function joinResult(service: EnrolledService): JoinResult {
  return {
    enrolleeId: service.enrollee_id,
    identityKey: service.identity_key,
    serviceKey: service.service_key,
    address: service.address,
    petName: service.pet_name,
    enrolledAt: service.enrolled_at,
  };
}

/**
 * The service key an enrollee was told to expect (docs/threat-model.md §5.2, bundle
 * pinning): `enrollee join --service-key`, or the one pinned at `enrollee init
 * --service-key`. `from` names where it came from, for the error.
 */
export interface ExpectedServiceKey {
  key: Uint8Array;
  from: string;
}

/**
 * Refuses a bundle whose IK_A is not the expected service key, with ERR_BUNDLE_SERVICE_KEY:
 * a comparison of public bytes, run before the bundle's signatures are checked and before
 * anything is sent anywhere (like `step ca bootstrap --fingerprint`). A bundle that names
 * the expected key must then verify under it (verifyBundle), so no other IK_A can sign one.
 */
export function checkBundleServiceKey(bundle: Bundle, expected: ExpectedServiceKey | undefined): void {
  if (expected === undefined || equalBytes(bundle.ikA, expected.key)) return;
  throw new EnrollError(
    'ERR_BUNDLE_SERVICE_KEY',
    `the bundle is for the service key ${toHex(bundle.ikA)}, not the expected ${toHex(expected.key)} (${expected.from}); it was not used`,
    { hint: 'this bundle comes from another service, or was forged: get a bundle from the service whose key you expect (compare it with the key `service init` printed)' },
  );
}

/** Rejection statuses worth retrying while waiting for an approval to arrive. */
const WAITABLE = new Set(['ERR_ENROLLEE_UNKNOWN']);

export async function enrollWithBundle(
  enrollee: EnrolleeHome,
  bundle: Bundle,
  opts: { now: () => number; waitSeconds?: number; onWaiting?: () => void; timeoutMs?: number; expectServiceKey?: ExpectedServiceKey },
): Promise<JoinResult> {
  checkBundleServiceKey(bundle, opts.expectServiceKey);
  const deadline = opts.now() + (opts.waitSeconds ?? 0);
  let told = false;
  // PQSPK_A of a v2 bundle: fetched once and checked against the signed KEM_hash, then
  // used by every attempt (each with its own EK_B and KEM encapsulation).
  let kemPrekey: Uint8Array | undefined;
  for (;;) {
    try {
      if (bundle.version === 2) kemPrekey ??= await fetchKemPrekey(bundle, opts.timeoutMs ?? 15_000);
      return { ...(await enrollOnce(enrollee, bundle, kemPrekey, opts.timeoutMs ?? 15_000)), eka: bundle.version };
    } catch (err) {
      if (err instanceof EnrollError && err.code === 'ERR_BUNDLE_USED') {
        const recovered = await recoverAcceptedEnrollment(enrollee, bundle);
        if (recovered) return { ...recovered, eka: bundle.version };
      }
      if (err instanceof EnrollError && WAITABLE.has(err.code) && opts.now() < deadline) {
        if (!told) opts.onWaiting?.();
        told = true;
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      throw err;
    }
  }
}

/**
 * An earlier attempt may have been accepted by the service and then lost (the process was
 * killed before it saved the result): the service then refuses a new attempt as USED. The
 * pending IK_B kept in the keystore is that attempt's identity; if the service admits it on
 * the authenticated channel (IK_B ↔ the bundle's IK_A) as this enrollee, the enrollment is
 * completed from the service's own record. The session keys of the lost acceptance cannot
 * be recovered and are not needed: later sessions use Noise with IK_B.
 */
async function recoverAcceptedEnrollment(enrollee: EnrolleeHome, bundle: Bundle): Promise<JoinResult | undefined> {
  const ikB = await enrollee.pendingIdentity();
  if (!ikB) return undefined;
  let report;
  try {
    report = await statusWithKey(bundle.addr, ikB, bundle.ikA);
  } catch {
    return undefined; // not enrolled under this key: the USED refusal stands
  }
  if (!equalBytes(report.enrolleeId, enrollee.enrolleeId())) return undefined;
  const service: EnrolledService = {
    service_key: toHex(bundle.ikA),
    address: report.addr || bundle.addr,
    enrollee_id: toHex(report.enrolleeId),
    identity_key: toHex(ikB.publicKey),
    pet_name: report.petName,
    enrolled_at: report.enrolledAt,
  };
  // The lost acceptance's credential was saved before it was lost, or never arrived: keep
  // the file only if it is this enrollment's (a damaged one is dropped, not fatal here).
  let kept;
  try {
    kept = storedCredential(enrollee);
  } catch {
    kept = undefined;
    saveCredential(enrollee, undefined);
  }
  const credential = kept && equalBytes(kept.credential.enrolleeId, report.enrolleeId) && equalBytes(kept.credential.ikB, ikB.publicKey) ? kept.text : undefined;
  if (kept && credential === undefined) saveCredential(enrollee, undefined);
  await enrollee.commitEnrollment(ikB, service, undefined);
  return { ...joinResult(service), ...(credential !== undefined ? { credential } : {}) };
}

async function enrollOnce(enrollee: EnrolleeHome, bundle: Bundle, kemPrekey: Uint8Array | undefined, timeoutMs: number): Promise<JoinResult> {
  if (enrollee.enrolled()) {
    throw new EnrollError('ERR_KEY_EXISTS', 'this enrollee is already enrolled', {
      hint: 'see `ockam-enroll enrollee status`; to enroll afresh, run `enrollee init --force` in a new home',
    });
  }
  const eikB = await enrollee.eikB();
  const ikB = await enrollee.identityForAttempt();
  // EK_B is fresh per attempt and wiped by initiate(), with the DH outputs (and SS in v2).
  const attempt = bundle.version === 2 ? initiateV2({ bundle, kemPrekey: kemPrekey!, eikB, ikB }) : initiate({ bundle, eikB, ikB });
  const conn = await connectTcp(bundle.addr, { readTimeoutMs: timeoutMs });
  let sealed: Uint8Array;
  try {
    await conn.writeFrame(kindFrame(KIND_ENROLL));
    await conn.writeFrame(attempt.message);
    sealed = decodeEnrollResponse(await conn.readFrame(timeoutMs));
  } finally {
    conn.destroy();
  }
  const session = enrolleeSession(attempt.session);
  const acceptance = decodeAcceptance(session.recv.open(sealed, concat(ACCEPT_AAD, attempt.enrolleeId)));
  if (!equalBytes(acceptance.enrolleeId, attempt.enrolleeId)) {
    throw new EnrollError('ERR_PROTOCOL', 'the acceptance names a different enrollee');
  }
  // A version 2 acceptance carries the service's credential for this enrollee: checked against
  // the bundle's IK_A, this id and this IK_B, and kept in credential.txt (not secret).
  const credential =
    acceptance.credential === undefined
      ? undefined
      : acceptCredential(acceptance.credential, { ikA: bundle.ikA, enrolleeId: attempt.enrolleeId, ikB: ikB.publicKey });
  saveCredential(enrollee, credential);
  const service: EnrolledService = {
    service_key: toHex(bundle.ikA),
    address: acceptance.addr || bundle.addr,
    enrollee_id: toHex(attempt.enrolleeId),
    identity_key: toHex(ikB.publicKey),
    pet_name: acceptance.petName,
    enrolled_at: acceptance.enrolledAt,
  };
  const send = session.send.exportState();
  const recv = session.recv.exportState();
  await enrollee.commitEnrollment(ikB, service, {
    k_s2e: toHex(recv.key),
    k_e2s: toHex(send.key),
    send_counter: send.counter.toString(),
    recv_counter: recv.counter.toString(),
  });
  return { ...joinResult(service), ...(credential !== undefined ? { credential } : {}) };
}

/**
 * Joins through an enroller: Noise XX as initiator with EIK_B as the static key, receive
 * the bundle, send the card, wait for GO, enroll, report the status back.
 */
export async function joinViaEnroller(
  enrollee: EnrolleeHome,
  conn: FramedConnection,
  opts: {
    now: () => number;
    eka?: 1 | 2;
    onSas?: (sas: string) => void;
    /**
     * The device's side of the SAS comparison (docs/protocol.md §6.4): asked while the
     * enroller asks its own; the card is sent only after a yes. `signal` aborts the question
     * when the enroller refuses or goes away first. Absent for `--yes`.
     */
    confirm?: (sas: string, signal: AbortSignal) => Promise<boolean>;
    onBundle?: (b: Bundle) => void;
    stepTimeoutMs?: number;
    expectServiceKey?: ExpectedServiceKey;
  },
): Promise<JoinResult & { sas: string }> {
  const step = opts.stepTimeoutMs ?? 120_000;
  const eikB = await enrollee.eikB();
  const channel = await initiateChannel(conn, { staticKeyPair: eikB, prologue: PROLOGUE_ENROLLER_ENROLLEE });
  try {
    const sas = shortAuthString(channel.handshakeHash);
    opts.onSas?.(sas);
    // Both people compare at once: the offer arrives only after the enroller's yes, and a
    // refusal from the enroller (an ERROR in its place) ends the device's question too.
    const asked = new AbortController();
    let offerMsg: Uint8Array;
    try {
      const confirmed = opts.confirm?.(sas, asked.signal).then(async (yes) => {
        if (yes) return;
        const refused = new EnrollError('ERR_SAS_NOT_CONFIRMED', 'the enrollee\'s user did not confirm the short authentication string', {
          hint: 'compare the strings on both screens; if they differ, someone is in the middle',
        });
        await channel.send(encodeError(refused)).catch(() => undefined);
        throw new EnrollError('ERR_SAS_NOT_CONFIRMED', `the short authentication string ${sas} was not confirmed; nothing was sent to the enroller`, {
          hint: 'join only an enroller that shows the same string',
        });
      });
      [offerMsg] = await Promise.all([channel.receive(step).then((m) => decodeOffer(m)), confirmed]);
    } finally {
      asked.abort();
    }
    const offered = decodeBundle(offerMsg);
    try {
      checkBundleServiceKey(offered, opts.expectServiceKey);
    } catch (err) {
      // The enroller is told instead of a card, so it approves nothing with this bundle.
      const told = new EnrollError('ERR_BUNDLE_SERVICE_KEY', `the enrollee expects the service key ${toHex(opts.expectServiceKey!.key)}; the offered bundle is for ${toHex(offered.ikA)}`, {
        hint: 'fetch bundles from the service the enrollee expects (`enroller bundle fetch --service … --service-key …`)',
      });
      await channel.send(encodeError(told)).catch(() => undefined);
      throw err;
    }
    const bundle = requireEka(verifyBundle(offered, { now: opts.now() }), opts.eka ?? 2);
    enrollee.holdBundle(bundleToText(bundle));
    opts.onBundle?.(bundle);
    await channel.send(encodeCardMsg(encodeCard(enrollee.card(bundle.bundleId))));
    const go = decodeGo(await channel.receive(step));
    if (!equalBytes(go.enrolleeId, enrollee.enrolleeId())) {
      throw new EnrollError('ERR_PROTOCOL', 'the enroller approved a different enrollee id');
    }
    let result: JoinResult;
    try {
      result = await enrollWithBundle(enrollee, bundle, { now: opts.now });
    } catch (err) {
      const status = err instanceof EnrollError ? statusOf(err) : ENROLL_STATUS.UNAVAILABLE;
      await channel.send(encodeResult(status)).catch(() => undefined);
      throw err;
    }
    await channel.send(encodeResult(ENROLL_STATUS.ACCEPTED)).catch(() => undefined);
    return { ...result, sas };
  } finally {
    await channel.close().catch(() => undefined);
  }
}

function statusOf(err: EnrollError): number {
  switch (err.code) {
    case 'ERR_REPLAY':
      return ENROLL_STATUS.REPLAY;
    case 'ERR_ENROLLEE_UNKNOWN':
      return ENROLL_STATUS.UNKNOWN;
    case 'ERR_APPROVAL_EXPIRED':
      return ENROLL_STATUS.EXPIRED;
    case 'ERR_ENROLLEE_REVOKED':
      return ENROLL_STATUS.REVOKED;
    case 'ERR_BUNDLE_USED':
      return ENROLL_STATUS.USED;
    case 'ERR_ENROLLEE_LOCKED':
      return ENROLL_STATUS.LOCKED;
    case 'ERR_RATE_LIMITED':
      return ENROLL_STATUS.RATE_LIMITED;
    default:
      return isEnrollError(err, 'ERR_UNREACHABLE') ? ENROLL_STATUS.UNAVAILABLE : ENROLL_STATUS.REJECTED;
  }
}
