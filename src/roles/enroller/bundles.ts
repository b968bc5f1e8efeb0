/**
 * Fetching bundles from the service into the enroller's cache.
 */
import { toHex } from '../../crypto/bytes.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import { bundleToText, decodeBundle, verifyBundle } from '../../protocol/codec/index.js';
import { decodeBundleStream, encodeFetchBundles, MAX_BUNDLES_PER_REQUEST } from '../../protocol/messages/service.js';
import { connectService } from './service-client.js';
import type { CachedBundle, EnrollerHome } from './home.js';

export interface FetchResult {
  fetched: CachedBundle[];
  serviceKey: Uint8Array;
  pinnedNow: boolean;
  address: string;
}

export async function fetchBundles(
  enroller: EnrollerHome,
  opts: { service: string; count: number; eka?: 1 | 2; serviceKey?: Uint8Array; now: () => number; progress?: (n: number) => void; onPinned?: (address: string, key: Uint8Array) => void },
): Promise<FetchResult> {
  const eka = opts.eka ?? 2;
  const svc = await connectService({
    address: opts.service,
    keyPair: await enroller.keyPair(),
    known: enroller.known,
    ...(opts.serviceKey ? { serviceKey: opts.serviceKey } : {}),
    ...(opts.onPinned ? { onPinned: opts.onPinned } : {}),
  });
  const fetched: CachedBundle[] = [];
  try {
    let remaining = opts.count;
    while (remaining > 0) {
      const n = Math.min(remaining, MAX_BUNDLES_PER_REQUEST);
      await svc.channel.send(encodeFetchBundles(n, eka));
      const batch: CachedBundle[] = [];
      for (;;) {
        const reply = await svc.channel.receive(60_000);
        const item = fetched.length === 0 && batch.length === 0 ? olderServiceHint(eka, svc.address, () => decodeBundleStream(reply)) : decodeBundleStream(reply);
        if ('end' in item) {
          if (item.end !== batch.length) throw new EnrollError('ERR_PROTOCOL', `the service announced ${item.end} bundles but sent ${batch.length}`);
          break;
        }
        if (batch.length >= n) throw new EnrollError('ERR_PROTOCOL', 'the service sent more bundles than asked for');
        // Every bundle must be signed by the key we just authenticated (and pinned).
        const bundle = verifyBundle(decodeBundle(item.bundle), { now: opts.now(), ikA: svc.serviceKey });
        if (bundle.version !== eka) {
          throw new EnrollError('ERR_PROTOCOL', `asked for EKA v${eka} bundles, the service sent a version ${bundle.version} bundle`);
        }
        batch.push({
          id: toHex(bundle.bundleId),
          service: svc.address,
          text: bundleToText(bundle),
          expires_at: bundle.expiresAt,
          fetched_at: opts.now(),
          state: 'fresh',
        });
      }
      // The first batch that verifies is the successful exchange that pins the key; then
      // saved per batch: bundles the service recorded are never lost to a later failure.
      svc.commitPin();
      enroller.saveBundles([...enroller.bundles(), ...batch]);
      fetched.push(...batch);
      remaining -= n;
      opts.progress?.(fetched.length);
    }
  } finally {
    await svc.channel.close();
  }
  return { fetched, serviceKey: svc.serviceKey, pinnedNow: svc.pinnedNow, address: svc.address };
}

/**
 * A service from before EKA v2 reads FETCH_BUNDLES as count u16 alone, so the eka byte of a
 * v2 request (§7.3) comes back as ERROR ERR_FRAME_MALFORMED "fetch bundles: 1 trailing
 * bytes…". v2 is the default, so say what that most likely means and what to do.
 */
function olderServiceHint<T>(eka: 1 | 2, address: string, decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    if (eka === 2 && isEnrollError(err, 'ERR_FRAME_MALFORMED') && /fetch bundles: .*trailing bytes/.test(err.message)) {
      throw new EnrollError('ERR_FRAME_MALFORMED', err.message, {
        cause: err,
        hint: `the service at ${address} likely predates EKA v2 (it read the request's eka byte as extra): upgrade it, or fetch v1 bundles with --eka v1`,
      });
    }
    throw err;
  }
}
