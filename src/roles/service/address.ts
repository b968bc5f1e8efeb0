/**
 * Moving the service (docs/protocol.md §7.10): `service address set` signs an announcement
 * of the new address with IK_A, records it in the store and makes it the address put in new
 * bundles; enrolled enrollees fetch it over their session channel (ADDRESS_REQUEST, §7.9.1).
 *
 * The store's latest announcement is the source of truth: a running `service start` picks
 * it up within a tick of its lifecycle watcher (lifecycle.ts), and settings.json is updated
 * too so that a service started later begins with it. The listen address is another thing
 * (`service start --listen`): the operator moves the listener, this moves what is announced.
 */
import { audit } from '../../audit/index.js';
import { signAnnouncement } from '../../protocol/announce.js';
import { decodeAddressRequest, encodeAddress } from '../../protocol/messages/session.js';
import type { LifecycleStore, StoredAnnouncement } from '../../store/lifecycle.js';
import type { SecureChannel } from '../../transport/channel.js';
import { formatAddress, parseAddress } from '../../transport/address.js';
import { DEFAULT_SERVICE_SETTINGS, type ServiceHome } from './home.js';

export interface AddressChange {
  /** The announcement now in force. */
  announcement: StoredAnnouncement;
  /** The address bundles carried before. */
  previous: string;
  /** False when the address was already announced: nothing was signed or written. */
  changed: boolean;
}

/** `service address set`: announces `address` (tcp://HOST:PORT, normalised) as the service's address. */
export async function announceAddress(svc: ServiceHome, address: string, now: number): Promise<AddressChange> {
  const addr = formatAddress(parseAddress(address));
  const previous = svc.settings.address;
  const store = await svc.lifecycleStore();
  try {
    const latest = await store.latestAnnouncement();
    if (latest && latest.address === addr && previous === addr) return { announcement: latest, previous, changed: false };
    const announcement = await store.addAnnouncement(addr, now, (seq) => signAnnouncement(svc.ikA.privateKey, seq, addr));
    // After the store: settings.json only tells a service started later where to begin; a
    // crash in between leaves the store's announcement, which the watcher applies anyway.
    const { roleSettings } = await import('../../cli/settings.js');
    (await roleSettings(svc.keystore.dir, { ...DEFAULT_SERVICE_SETTINGS })).set('address', addr);
    svc.settings.address = addr;
    // After the commit, as src/audit asks of decisions made outside `service start`.
    await audit(svc, 'address-set', { address: addr, previous, seq: announcement.seq });
    return { announcement, previous, changed: true };
  } finally {
    await store.close();
  }
}

/** The latest announcement, if the service ever moved. */
export async function currentAnnouncement(svc: ServiceHome): Promise<StoredAnnouncement | undefined> {
  const store = await svc.lifecycleStore();
  try {
    return await store.latestAnnouncement();
  } finally {
    await store.close();
  }
}

/** ADDRESS_REQUEST → ADDRESS with the latest announcement (present = 0 if the service never moved). */
export async function serveAddressRequest(store: LifecycleStore, channel: SecureChannel, msg: Uint8Array): Promise<void> {
  decodeAddressRequest(msg);
  const a = await store.latestAnnouncement();
  await channel.send(encodeAddress(a && { seq: a.seq, address: a.address, signature: a.signature }));
}
