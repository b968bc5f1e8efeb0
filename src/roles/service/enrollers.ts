/**
 * The service's side of an enroller's Noise channel: only enrollers on the allow list are
 * served; they fetch bundles and approve enrollees' cards.
 */
import { checkScope } from '../../policy/scopes.js';
import { toHex } from '../../crypto/bytes.js';
import { generateX25519 } from '../../crypto/x25519.js';
import { systemRandom, type RandomSource } from '../../crypto/random.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import { bundleSigner, encodeBundle, signBundle, type BundleSigner } from '../../protocol/codec/bundle.js';
import { decodeCard } from '../../protocol/codec/card.js';
import { enrolleeId as enrolleeIdOf } from '../../protocol/enrollment/index.js';
import { encodeError } from '../../protocol/messages/common.js';
import {
  decodeApprove,
  decodeFetchBundles,
  encodeApproved,
  encodeBundleMsg,
  encodeBundlesEnd,
  MSG_APPROVE,
  MSG_FETCH_BUNDLES,
  MSG_TOKEN_CREATE,
} from '../../protocol/messages/service.js';
import type { BundleRecord, EnrollerRecord } from '../../store/types.js';
import type { SecureChannel } from '../../transport/channel.js';
import type { ServiceHome } from './home.js';
import type { DecisionLog } from './log.js';

/** How long an enroller's channel may sit idle between requests. */
export const ENROLLER_IDLE_MS = 60_000;

export async function serveEnroller(
  svc: ServiceHome,
  channel: SecureChannel,
  log: DecisionLog,
  opts: { now: () => number; random?: RandomSource; peer?: string },
): Promise<void> {
  const key = channel.remoteStaticKey;
  const rec = await svc.store.getEnroller(key);
  if (!rec || rec.revokedAt !== null) {
    log('enroller-refused', { enroller: toHex(key), peer: opts.peer, reason: rec ? 'revoked' : 'not on the allow list' });
    await channel.send(
      encodeError(
        new EnrollError('ERR_ENROLLER_NOT_ALLOWED', `this enroller (${toHex(key)}) is not allowed by the service`, {
          hint: `on the service, run: ockam-enroll service enroller allow ${toHex(key)}`,
        }),
      ),
    );
    await channel.close();
    return;
  }
  for (;;) {
    let msg: Uint8Array;
    try {
      msg = await channel.receive(ENROLLER_IDLE_MS);
    } catch (err) {
      if (isEnrollError(err, 'ERR_CONNECTION_CLOSED') || isEnrollError(err, 'ERR_TIMEOUT')) return;
      throw err;
    }
    // Re-check on every request: a revocation takes effect at once.
    const current = await svc.store.getEnroller(key);
    if (!current || current.revokedAt !== null) {
      await channel.send(encodeError(new EnrollError('ERR_ENROLLER_NOT_ALLOWED', 'this enroller has been revoked')));
      await channel.close();
      return;
    }
    try {
      if (msg[0] === MSG_FETCH_BUNDLES) {
        const req = decodeFetchBundles(msg);
        await serveBundles(svc, channel, current, req.count, req.eka, log, opts);
      }
      else if (msg[0] === MSG_APPROVE) await serveApprove(svc, channel, current, msg, log, opts.now());
      else if (msg[0] === MSG_TOKEN_CREATE) await (await import('./tokens.js')).serveTokenCreate(svc, channel, current, msg, log, opts.now());
      else throw new EnrollError('ERR_PROTOCOL', `unexpected request type ${msg[0]}`);
    } catch (err) {
      // A store fault is the service's, not a refusal: answered ERR_UNAVAILABLE (server.ts).
      if (!(err instanceof EnrollError) || err.code === 'ERR_STORE') throw err;
      log(msg[0] === MSG_TOKEN_CREATE ? 'token-refused' : 'approve-refused', { enroller: toHex(key), enroller_name: current.name, reason: `${err.code}: ${err.message}` });
      await channel.send(encodeError(err));
      if (err.code === 'ERR_PROTOCOL' || err.code === 'ERR_FRAME_MALFORMED') {
        await channel.close();
        return;
      }
    }
  }
}

const bundleSigners = new WeakMap<ServiceHome, BundleSigner>();

/** IK_A prepared once per service home for signing bundles (bundleSigner). */
function bundleSignerFor(svc: ServiceHome): BundleSigner {
  let signer = bundleSigners.get(svc);
  if (signer === undefined) {
    signer = bundleSigner(svc.ikA.privateKey);
    bundleSigners.set(svc, signer);
  }
  return signer;
}

async function serveBundles(
  svc: ServiceHome,
  channel: SecureChannel,
  enroller: EnrollerRecord,
  count: number,
  eka: 1 | 2,
  log: DecisionLog,
  opts: { now: () => number; random?: RandomSource },
): Promise<void> {
  const random = opts.random ?? systemRandom;
  const spk = await svc.store.currentSignedPrekey();
  if (!spk) throw new EnrollError('ERR_STORE', 'the service has no signed prekey', { hint: 'run `ockam-enroll service init`' });
  // A v2 bundle carries the KEM_hash of the current SPK's PQSPK_A (§4.5).
  const kemHash = eka === 2 ? spk.kem?.hash : undefined;
  if (eka === 2 && kemHash === undefined) {
    throw new EnrollError('ERR_EKA_VERSION', 'the service\'s signed prekey predates EKA v2: it has no ML-KEM prekey', {
      hint: 'on the service, run `ockam-enroll service prekey rotate`, or fetch v1 bundles with --eka v1',
    });
  }
  const now = opts.now();
  const expiresAt = now + svc.settings.bundleTtl;
  const rows: BundleRecord[] = [];
  const encoded: Uint8Array[] = [];
  const signer = bundleSignerFor(svc);
  for (let i = 0; i < count; i++) {
    const opk = generateX25519(random);
    const bundleId = random(16);
    const bundle = signBundle(
      {
        bundleId,
        ikA: svc.ikA.publicKey,
        spkA: spk.publicKey,
        spkSig: spk.signature,
        opkA: opk.publicKey,
        ...(kemHash !== undefined ? { kemHash } : {}),
        expiresAt,
        addr: svc.settings.address,
      },
      signer,
      random,
    );
    rows.push({
      id: bundleId,
      spkId: spk.id,
      opkPublic: opk.publicKey,
      opkPrivateSealed: svc.sealer.seal(opk.privateKey, 'opk', bundleId),
      addr: svc.settings.address,
      enroller: enroller.publicKey,
      createdAt: now,
      expiresAt,
      state: 'issued',
      eka,
    });
    opk.wipe();
    encoded.push(encodeBundle(bundle));
  }
  // The OPKs are on disk before any bundle leaves: a bundle the enroller holds is always known.
  await svc.store.insertBundles(rows);
  for (const b of encoded) await channel.send(encodeBundleMsg(b));
  await channel.send(encodeBundlesEnd(count));
  log('bundles', { enroller: toHex(enroller.publicKey), enroller_name: enroller.name, count, eka });
}

async function serveApprove(
  svc: ServiceHome,
  channel: SecureChannel,
  enroller: EnrollerRecord,
  msg: Uint8Array,
  log: DecisionLog,
  now: number,
): Promise<void> {
  const req = decodeApprove(msg);
  const card = decodeCard(req.card);
  if (card.bundleId && Buffer.compare(Buffer.from(card.bundleId), Buffer.from(req.bundleId)) !== 0) {
    throw new EnrollError('ERR_BUNDLE_UNKNOWN', 'the card names a different bundle than the approval');
  }
  const id = enrolleeIdOf(card.eikB);
  const expiresAt = now + req.ttl;
  // The scope is checked here, on the record the store holds, before anything is written:
  // the request comes from the enroller being limited (docs/threat-model.md).
  const attributes = req.attributes ?? {};
  checkScope(enroller.scopes, attributes, enroller.name ?? toHex(enroller.publicKey).slice(0, 16));
  const rec = await svc.store.approve({
    enrolleeId: id,
    eikB: card.eikB,
    bundleId: req.bundleId,
    petName: card.petName ?? null,
    enroller: enroller.publicKey,
    now,
    expiresAt,
    attributes,
  });
  log('approved', {
    enrollee: toHex(id),
    name: rec.petName,
    ...(Object.keys(attributes).length > 0 ? { attributes } : {}),
    enroller: toHex(enroller.publicKey),
    enroller_name: enroller.name,
    expires_at: new Date(expiresAt * 1000).toISOString(),
  });
  await channel.send(encodeApproved({ enrolleeId: id, expiresAt }));
}
