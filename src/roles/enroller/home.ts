/**
 * The enroller's home: `<home>/enroller/` holds
 * - `enroller.key`          its static X25519 key (its identity towards the service);
 * - `known_services.json`   pinned service keys, like ssh's known_hosts;
 * - `bundles.json`          the bundle cache: bundles fetched and not yet handed out, and
 *                           which enrollee each used one went to.
 */
import { join } from 'node:path';
import { toHex } from '../../crypto/bytes.js';
import { generateX25519, type KeyPair } from '../../crypto/x25519.js';
import { EnrollError } from '../../errors.js';
import { KnownServices } from '../../keystore/known-services.js';
import { pathExists } from '../../keystore/files.js';
import { Keystore } from '../../keystore/keystore.js';
import type { PassphraseSource } from '../../keystore/passphrase.js';

export const ENROLLER_KEY_FILE = 'enroller.key';
export const BUNDLES_FILE = 'bundles.json';
/**
 * The bundle cache holds about 650 bytes per bundle and `bundle fetch --count` goes up to
 * 100 000, so it gets a larger cap than the keystore's 1 MiB default for its small files.
 */
export const MAX_BUNDLES_FILE_BYTES = 256 << 20;

export type CachedBundleState = 'fresh' | 'approved' | 'refused';

export interface CachedBundle {
  id: string;
  /** The service address the bundle was fetched from (where approvals go). */
  service: string;
  /** The bundle's text form (OEB2:…, or OEB1:… for EKA v1). */
  text: string;
  expires_at: number;
  fetched_at: number;
  state: CachedBundleState;
  enrollee?: string;
  name?: string;
  approved_at?: number;
  approval_expires_at?: number;
}

/** A cached bundle's EKA version, from its text form's prefix (OEB2: is v2, §4.3). */
export function cachedBundleEka(b: Pick<CachedBundle, 'text'>): 1 | 2 {
  return b.text.startsWith('OEB2:') ? 2 : 1;
}

interface BundleFile {
  version: 1;
  bundles: CachedBundle[];
}

export class EnrollerHome {
  readonly keystore: Keystore;
  readonly known: KnownServices;

  private constructor(keystore: Keystore) {
    this.keystore = keystore;
    this.known = new KnownServices(keystore);
  }

  static async init(home: string, opts: { force?: boolean; encrypt?: boolean; passphrase?: PassphraseSource }): Promise<{ enroller: EnrollerHome; publicKey: Uint8Array }> {
    const keystore = Keystore.open(home, 'enroller', opts.passphrase ? { passphrase: opts.passphrase } : {});
    if (keystore.hasKey(ENROLLER_KEY_FILE) && !opts.force) {
      throw new EnrollError('ERR_KEY_EXISTS', `an enroller is already initialised in ${keystore.dir} (key ${toHex(keystore.loadPublicKey(ENROLLER_KEY_FILE))})`, {
        hint: 'use --force to replace its key (the service would have to allow the new key)',
      });
    }
    const kp = generateX25519();
    await keystore.saveKeyPair(ENROLLER_KEY_FILE, kp, { purpose: 'enroller', force: opts.force ?? false, encrypt: opts.encrypt ?? false });
    return { enroller: new EnrollerHome(keystore), publicKey: kp.publicKey };
  }

  static open(home: string, opts: { passphrase?: PassphraseSource } = {}): EnrollerHome {
    // Checked before Keystore.open, which would create the directories of a home that
    // was never initialised.
    // pathExists reports a home the user cannot read (EACCES) as such, not as "not initialised".
    if (!pathExists(join(home, 'enroller', ENROLLER_KEY_FILE))) {
      throw new EnrollError('ERR_KEY_MISSING', `no enroller is initialised in ${join(home, 'enroller')}`, {
        hint: 'run `ockam-enroll enroller init` first, or pass the right --home',
      });
    }
    return new EnrollerHome(Keystore.open(home, 'enroller', opts.passphrase ? { passphrase: opts.passphrase } : {}));
  }

  publicKey(): Uint8Array {
    return this.keystore.loadPublicKey(ENROLLER_KEY_FILE);
  }

  keyPair(): Promise<KeyPair> {
    return this.keystore.loadKeyPair(ENROLLER_KEY_FILE);
  }

  bundles(): CachedBundle[] {
    const f = this.keystore.readJson<BundleFile>(BUNDLES_FILE, { maxBytes: MAX_BUNDLES_FILE_BYTES });
    if (f === undefined) return [];
    if (typeof f !== 'object' || f === null || f.version !== 1 || !Array.isArray(f.bundles)) {
      throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${this.keystore.path(BUNDLES_FILE)} is not a bundle cache`);
    }
    return f.bundles;
  }

  saveBundles(bundles: CachedBundle[]): void {
    const f: BundleFile = { version: 1, bundles };
    this.keystore.writeJson(BUNDLES_FILE, f, { overwrite: true });
  }

  /** Finds a cached bundle by full id or unambiguous prefix. */
  findBundle(idOrPrefix: string): CachedBundle {
    const p = idOrPrefix.trim().toLowerCase();
    if (!/^[0-9a-f]{4,32}$/.test(p)) throw new EnrollError('ERR_USAGE', `"${idOrPrefix}" is not a bundle id (hex)`);
    const hits = this.bundles().filter((b) => b.id.startsWith(p));
    if (hits.length === 0) {
      throw new EnrollError('ERR_BUNDLE_NOT_CACHED', `no cached bundle has id ${idOrPrefix}`, { hint: 'see `ockam-enroll enroller bundle list`' });
    }
    if (hits.length > 1) throw new EnrollError('ERR_USAGE', `bundle id prefix ${idOrPrefix} is ambiguous`, { hint: 'give more characters' });
    return hits[0]!;
  }

  /** The first fresh, unexpired bundle of EKA version `eka` (default any), for onboarding. */
  nextFreshBundle(now: number, eka?: 1 | 2): CachedBundle {
    const all = this.bundles();
    const b = all.find((x) => x.state === 'fresh' && x.expires_at > now + 60 && (eka === undefined || cachedBundleEka(x) === eka));
    if (!b) {
      // The address the cache already knows (the latest fetch's) beats a placeholder.
      const service = all.length > 0 ? all[all.length - 1]!.service : 'tcp://HOST:PORT';
      throw new EnrollError('ERR_BUNDLE_NOT_CACHED', `the bundle cache has no fresh${eka === undefined ? '' : ` EKA v${eka}`} bundle`, {
        hint: `fetch some with \`ockam-enroll enroller bundle fetch --service ${service}${eka === undefined ? '' : ` --eka v${eka}`}\``,
      });
    }
    return b;
  }

  updateBundle(id: string, patch: Partial<CachedBundle>): void {
    const all = this.bundles();
    const i = all.findIndex((b) => b.id === id);
    if (i < 0) throw new EnrollError('ERR_BUNDLE_UNKNOWN', `no cached bundle has id ${id}`);
    all[i] = { ...all[i]!, ...patch };
    this.saveBundles(all);
  }
}
