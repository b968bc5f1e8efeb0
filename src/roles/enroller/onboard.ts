/**
 * `enroller onboard`: the enroller side of the enroller ↔ enrollee channel
 * (protocol/messages/onboard.ts). The enrollee initiates Noise XX with EIK_B as its static
 * key; the enroller answers with its own key, shows the short authentication string, hands
 * over a bundle, approves the card with the service, and tells the enrollee to go ahead.
 */
import { equalBytes, toHex } from '../../crypto/bytes.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import { bundleFromText, encodeBundle } from '../../protocol/codec/index.js';
import type { Bundle } from '../../protocol/codec/bundle.js';
import { decodeCard, type EnrolleeCard } from '../../protocol/codec/card.js';
import { enrolleeId } from '../../protocol/enrollment/index.js';
import { encodeError } from '../../protocol/messages/common.js';
import { decodeCardMsg, decodeResult, encodeGo, encodeOffer } from '../../protocol/messages/onboard.js';
import { PROLOGUE_ENROLLER_ENROLLEE } from '../../protocol/messages/service.js';
import { shortAuthString } from '../../protocol/sas.js';
import { acceptChannel, type SecureChannel } from '../../transport/channel.js';
import type { FramedConnection } from '../../transport/connection.js';
import { approveCard } from './approve.js';
import type { CachedBundle, EnrollerHome } from './home.js';

export interface OnboardOptions {
  ttl: number;
  /** The EKA version of the bundle to offer (docs/protocol.md §5A.3); default any (the first fresh one). */
  eka?: 1 | 2;
  petName?: string;
  now: () => number;
  /** Called with the short authentication string as soon as the channel is up. */
  onSas?: (sas: string) => void;
  /**
   * The comparison of the short authentication string (docs/protocol.md §6.4): called once
   * the channel is up and before anything is sent; nothing is offered or approved unless it
   * resolves to true. Absent only for `--no-confirm` or when `expectEnrolleeId` pins the key.
   */
  confirm?: (sas: string, enrolleeId: Uint8Array) => Promise<boolean>;
  /**
   * The enrollee id (SHA-256 of EIK_B) that must be at the other end (`--expect-enrollee`,
   * `--card`): any other key is refused right after Noise msg 3, before anything is sent.
   */
  expectEnrolleeId?: Uint8Array;
  /** How long to wait for the enrollee's card, and then for its result. */
  stepTimeoutMs?: number;
  /** How long the Noise handshake may take (default 10 s). */
  handshakeTimeoutMs?: number;
}

export interface OnboardResult {
  sas: string;
  enrolleeId: string;
  petName: string | undefined;
  bundleId: string;
  approvalExpiresAt: number;
  /** The enrollee's ENROLL_STATUS, or undefined if it did not report one in time. */
  enrollStatus: number | undefined;
  /** The EKA version of the bundle offered. */
  eka: 1 | 2;
}

/**
 * One enrollee met and checked, not approved yet: the channel is up, its key is the
 * expected one or its SAS was confirmed, and its card names the bundle it was offered.
 */
export interface Meeting {
  channel: SecureChannel;
  sas: string;
  cached: CachedBundle;
  bundle: Bundle;
  card: EnrolleeCard;
}

/**
 * Everything before the approval: a failure here has approved nothing, so a listener can
 * go on waiting for the right device (a connection that never completes the handshake, a
 * key that is not the expected one or a SAS answered "no" does not spend the run).
 */
export async function meetEnrollee(enroller: EnrollerHome, conn: FramedConnection, opts: OnboardOptions): Promise<Meeting> {
  const stepTimeoutMs = opts.stepTimeoutMs ?? 120_000;
  const channel = await acceptChannel(conn, {
    staticKeyPair: await enroller.keyPair(),
    prologue: PROLOGUE_ENROLLER_ENROLLEE,
    ...(opts.handshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: opts.handshakeTimeoutMs } : {}),
    // A cheap comparison of public bytes, before anything is sent on the channel.
    verifyRemote: (eikB) => {
      if (opts.expectEnrolleeId !== undefined && !equalBytes(enrolleeId(eikB), opts.expectEnrolleeId)) {
        throw new EnrollError('ERR_ENROLLEE_UNEXPECTED', `the enrollee that connected is ${toHex(enrolleeId(eikB))}, not the expected ${toHex(opts.expectEnrolleeId)}; it was refused`, {
          hint: 'another device connected: make sure the device you mean runs `enrollee join --enroller`, or check the id given to --expect-enrollee / --card',
        });
      }
    },
  });
  try {
    const sas = shortAuthString(channel.handshakeHash);
    opts.onSas?.(sas);
    if (opts.confirm !== undefined && !(await opts.confirm(sas, enrolleeId(channel.remoteStaticKey)))) {
      const refused = new EnrollError('ERR_SAS_NOT_CONFIRMED', 'the enroller did not confirm the short authentication string; nothing was approved', {
        hint: 'compare the strings on both screens; if they differ, someone is in the middle',
      });
      await channel.send(encodeError(refused)).catch(() => undefined);
      throw new EnrollError('ERR_SAS_NOT_CONFIRMED', `the short authentication string ${sas} was not confirmed; enrollee ${toHex(enrolleeId(channel.remoteStaticKey))} was not approved`, {
        hint: 'approve only a device that shows the same string',
      });
    }
    const cached = enroller.nextFreshBundle(opts.now(), opts.eka);
    const bundle = bundleFromText(cached.text, { now: opts.now() });
    await channel.send(encodeOffer(encodeBundle(bundle)));

    const card = decodeCard(decodeCardMsg(await channel.receive(stepTimeoutMs)));
    // The card's EIK_B is the key that just authenticated the channel: the enroller
    // approves exactly the device it is talking to.
    if (!equalBytes(card.eikB, channel.remoteStaticKey)) {
      throw new EnrollError('ERR_PROTOCOL', 'the enrollee\'s card does not carry the key it used on this channel');
    }
    if (!card.bundleId || !equalBytes(card.bundleId, bundle.bundleId)) {
      throw new EnrollError('ERR_PROTOCOL', 'the enrollee\'s card does not name the bundle it was offered');
    }
    return { channel, sas, cached, bundle, card };
  } catch (err) {
    await channel.close().catch(() => undefined);
    throw err;
  }
}

/** The approval and what follows it: from here on the run is spent, whatever happens. */
export async function completeOnboarding(enroller: EnrollerHome, m: Meeting, opts: OnboardOptions): Promise<OnboardResult> {
  const stepTimeoutMs = opts.stepTimeoutMs ?? 120_000;
  const { channel, cached, bundle, card, sas } = m;
  try {
    let approved;
    try {
      approved = await approveCard(enroller, {
        card,
        bundleId: cached.id,
        ttl: opts.ttl,
        ...(opts.petName ? { petName: opts.petName } : {}),
        now: opts.now,
      });
    } catch (err) {
      if (err instanceof EnrollError) await channel.send(encodeError(err)).catch(() => undefined);
      throw err;
    }
    await channel.send(encodeGo(approved.enrolleeId, approved.expiresAt));
    let enrollStatus: number | undefined;
    try {
      enrollStatus = decodeResult(await channel.receive(stepTimeoutMs));
    } catch (err) {
      if (!isEnrollError(err, 'ERR_TIMEOUT') && !isEnrollError(err, 'ERR_CONNECTION_CLOSED')) throw err;
    }
    return {
      sas,
      enrolleeId: toHex(approved.enrolleeId),
      petName: approved.petName,
      bundleId: cached.id,
      approvalExpiresAt: approved.expiresAt,
      enrollStatus,
      eka: bundle.version,
    };
  } finally {
    await channel.close().catch(() => undefined);
  }
}

export async function onboard(enroller: EnrollerHome, conn: FramedConnection, opts: OnboardOptions): Promise<OnboardResult> {
  return completeOnboarding(enroller, await meetEnrollee(enroller, conn, opts), opts);
}
