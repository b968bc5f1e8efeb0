/**
 * `enroller onboard`: the enroller side of the enroller ↔ enrollee channel
 * (protocol/messages/onboard.ts). The enrollee initiates Noise XX with EIK_B as its static
 * key; the enroller answers with its own key, shows the short authentication string, hands
 * over a bundle, approves the card with the service, and tells the enrollee to go ahead.
 */
import { equalBytes, toHex } from '../../crypto/bytes.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import { bundleFromText, encodeBundle } from '../../protocol/codec/index.js';
import { decodeCard } from '../../protocol/codec/card.js';
import { encodeError } from '../../protocol/messages/common.js';
import { decodeCardMsg, decodeResult, encodeGo, encodeOffer } from '../../protocol/messages/onboard.js';
import { PROLOGUE_ENROLLER_ENROLLEE } from '../../protocol/messages/service.js';
import { shortAuthString } from '../../protocol/sas.js';
import { acceptChannel } from '../../transport/channel.js';
import type { FramedConnection } from '../../transport/connection.js';
import { approveCard } from './approve.js';
import type { EnrollerHome } from './home.js';

export interface OnboardOptions {
  ttl: number;
  /** The EKA version of the bundle to offer (docs/protocol.md §5A.3); default any (the first fresh one). */
  eka?: 1 | 2;
  petName?: string;
  now: () => number;
  /** Called with the short authentication string as soon as the channel is up. */
  onSas?: (sas: string) => void;
  /** How long to wait for the enrollee's card, and then for its result. */
  stepTimeoutMs?: number;
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

export async function onboard(enroller: EnrollerHome, conn: FramedConnection, opts: OnboardOptions): Promise<OnboardResult> {
  const stepTimeoutMs = opts.stepTimeoutMs ?? 120_000;
  const channel = await acceptChannel(conn, { staticKeyPair: await enroller.keyPair(), prologue: PROLOGUE_ENROLLER_ENROLLEE });
  try {
    const sas = shortAuthString(channel.handshakeHash);
    opts.onSas?.(sas);
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
