/**
 * Approving an enrollee's card with the service: binds SHA-256(EIK_B) to one bundle the
 * service issued to this enroller, with an expiry.
 */
import { equalBytes, fromHex, toHex } from '../../crypto/bytes.js';
import { EnrollError } from '../../errors.js';
import type { Attributes } from '../../protocol/codec/attributes.js';
import { encodeCard, type EnrolleeCard } from '../../protocol/codec/card.js';
import { enrolleeId as enrolleeIdOf } from '../../protocol/enrollment/index.js';
import { decodeApproved, encodeApprove } from '../../protocol/messages/service.js';
import type { CachedBundle, EnrollerHome } from './home.js';
import { connectService } from './service-client.js';

export interface ApproveOptions {
  card: EnrolleeCard;
  /** The bundle to bind; defaults to the card's bundle id, else the next fresh bundle (of `eka`, if given). */
  bundleId?: string;
  eka?: 1 | 2;
  ttl: number;
  petName?: string;
  /** Attributes to ask for (checked against this enroller's scope by the service). */
  attributes?: Attributes;
  now: () => number;
  /** Told when the service's key is trusted on first use and pinned (service-client.ts). */
  onPinned?: (address: string, key: Uint8Array) => void;
}

export interface ApproveResult {
  enrolleeId: Uint8Array;
  expiresAt: number;
  bundle: CachedBundle;
  petName: string | undefined;
  attributes: Attributes;
}

export function chooseBundle(enroller: EnrollerHome, card: EnrolleeCard, bundleId: string | undefined, now: number, eka?: 1 | 2): CachedBundle {
  const fromCard = card.bundleId ? toHex(card.bundleId) : undefined;
  if (bundleId && fromCard && !fromCard.startsWith(bundleId.toLowerCase())) {
    throw new EnrollError('ERR_USAGE', `the card names bundle ${fromCard}, but --bundle says ${bundleId}`);
  }
  const wanted = bundleId ?? fromCard;
  const b = wanted ? enroller.findBundle(wanted) : enroller.nextFreshBundle(now, eka);
  if (b.state !== 'fresh') {
    throw new EnrollError('ERR_BUNDLE_USED', `bundle ${b.id} was already used${b.enrollee ? ` for enrollee ${b.enrollee}` : ''}`, {
      hint: 'a bundle serves one enrollee only; choose a fresh one from `ockam-enroll enroller bundle list`',
    });
  }
  if (b.expires_at <= now) {
    throw new EnrollError('ERR_BUNDLE_EXPIRED', `bundle ${b.id} has expired`, { hint: 'fetch fresh bundles with `ockam-enroll enroller bundle fetch`' });
  }
  return b;
}

export async function approveCard(enroller: EnrollerHome, opts: ApproveOptions): Promise<ApproveResult> {
  const bundle = chooseBundle(enroller, opts.card, opts.bundleId, opts.now(), opts.eka);
  const petName = opts.petName ?? opts.card.petName;
  const card: EnrolleeCard = {
    version: 1,
    eikB: opts.card.eikB,
    bundleId: fromHex(bundle.id),
    ...(petName ? { petName } : {}),
  };
  const svc = await connectService({
    address: bundle.service,
    keyPair: await enroller.keyPair(),
    known: enroller.known,
    ...(opts.onPinned ? { onPinned: opts.onPinned } : {}),
  });
  try {
    await svc.channel.send(encodeApprove({ bundleId: fromHex(bundle.id), ttl: opts.ttl, card: encodeCard(card), ...(opts.attributes ? { attributes: opts.attributes } : {}) }));
    let approved;
    try {
      approved = decodeApproved(await svc.channel.receive(30_000));
    } catch (err) {
      if (err instanceof EnrollError && (err.code === 'ERR_BUNDLE_USED' || err.code === 'ERR_BUNDLE_EXPIRED' || err.code === 'ERR_BUNDLE_UNKNOWN')) {
        enroller.updateBundle(bundle.id, { state: 'refused' });
      }
      throw err;
    }
    const expectId = enrolleeIdOf(card.eikB);
    if (!equalBytes(approved.enrolleeId, expectId)) throw new EnrollError('ERR_PROTOCOL', 'the service approved a different enrollee id');
    svc.commitPin();
    enroller.updateBundle(bundle.id, {
      state: 'approved',
      enrollee: toHex(approved.enrolleeId),
      ...(petName ? { name: petName } : {}),
      approved_at: opts.now(),
      approval_expires_at: approved.expiresAt,
    });
    return { enrolleeId: approved.enrolleeId, expiresAt: approved.expiresAt, bundle, petName, attributes: opts.attributes ?? {} };
  } finally {
    await svc.channel.close();
  }
}
