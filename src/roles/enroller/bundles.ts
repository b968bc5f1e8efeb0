/**
 * Fetching bundles from the service into the enroller's cache.
 */
import { toHex } from '../../crypto/bytes.js';
import { EnrollError } from '../../errors.js';
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
  opts: { service: string; count: number; eka?: 1 | 2; serviceKey?: Uint8Array; now: () => number; progress?: (n: number) => void },
): Promise<FetchResult> {
  const eka = opts.eka ?? 2;
  const svc = await connectService({
    address: opts.service,
    keyPair: await enroller.keyPair(),
    known: enroller.known,
    ...(opts.serviceKey ? { serviceKey: opts.serviceKey } : {}),
  });
  const fetched: CachedBundle[] = [];
  try {
    let remaining = opts.count;
    while (remaining > 0) {
      const n = Math.min(remaining, MAX_BUNDLES_PER_REQUEST);
      await svc.channel.send(encodeFetchBundles(n, eka));
      const batch: CachedBundle[] = [];
      for (;;) {
        const item = decodeBundleStream(await svc.channel.receive(60_000));
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
      // Saved per batch: bundles the service recorded are never lost to a later failure.
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
