/**
 * The enroller's side of token enrollment: asking the service, over the enroller's Noise
 * channel (service-client.ts), to create an identity and its one-time token.
 */
import { toHex } from '../../crypto/bytes.js';
import { EnrollError } from '../../errors.js';
import { normaliseServiceAddress } from '../../keystore/known-services.js';
import { decodeTokenUnverified } from '../../protocol/token/claims.js';
import { decodeTokenCreated, encodeTokenCreate } from '../../protocol/messages/service.js';
import type { EnrollerHome } from './home.js';
import { connectService } from './service-client.js';

export interface TokenRequest {
  service: string;
  name: string;
  ttl: number;
  serviceKey?: Uint8Array;
  /** Told when the service's key is trusted on first use and pinned (service-client.ts). */
  onPinned?: (address: string, key: Uint8Array) => void;
}

export interface TokenResult {
  jwt: string;
  identityId: string;
  name: string;
  expiresAt: number;
  /** The HTTPS URL the token sends the enrollee to (its iss). */
  issuer: string;
  address: string;
  serviceKey: Uint8Array;
  pinnedNow: boolean;
}

/**
 * The service to use when --service is not given: the one service this enroller knows, from
 * its bundle cache and its pinned keys. ERR_USAGE when it knows none or several.
 */
export function defaultService(enr: EnrollerHome): string {
  const known = new Set<string>();
  for (const b of enr.bundles()) known.add(normaliseServiceAddress(b.service));
  for (const s of enr.known.list()) known.add(s.address);
  if (known.size === 1) return [...known][0]!;
  throw new EnrollError(
    'ERR_USAGE',
    known.size === 0 ? 'this enroller knows no service yet: --service is required' : `this enroller knows ${known.size} services: choose one with --service`,
    { hint: known.size === 0 ? 'pass --service tcp://HOST:PORT' : `known: ${[...known].sort().join(', ')}` },
  );
}

export async function requestToken(enr: EnrollerHome, req: TokenRequest): Promise<TokenResult> {
  const svc = await connectService({
    address: req.service,
    keyPair: await enr.keyPair(),
    known: enr.known,
    ...(req.serviceKey ? { serviceKey: req.serviceKey } : {}),
    ...(req.onPinned ? { onPinned: req.onPinned } : {}),
  });
  try {
    await svc.channel.send(encodeTokenCreate({ ttl: req.ttl, name: req.name }));
    const t = decodeTokenCreated(await svc.channel.receive(30_000));
    // The answer must be a token for what was asked: same identity, same name, parseable.
    const { claims } = decodeTokenUnverified(t.jwt);
    if (claims.sub !== toHex(t.identityId) || claims.name !== req.name || claims.exp !== t.expiresAt) {
      throw new EnrollError('ERR_PROTOCOL', 'the service answered with a token for another identity');
    }
    svc.commitPin();
    return {
      jwt: t.jwt,
      identityId: claims.sub,
      name: claims.name,
      expiresAt: claims.exp,
      issuer: claims.iss,
      address: svc.address,
      serviceKey: svc.serviceKey,
      pinnedNow: svc.pinnedNow,
    };
  } finally {
    await svc.channel.close();
  }
}
