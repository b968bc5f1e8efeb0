/**
 * The enrollee's home: `<home>/enrollee/` holds
 * - `eik_b.key`          EIK_B, made once by `enrollee init`, before meeting an enroller;
 * - `enrollee.json`      its pet name, and the service key it pinned (init --service-key);
 * - `bundle.txt`         the last bundle it was given (its id goes on the card);
 * - `ik_b.pending.key`   IK_B while an enrollment is in flight: kept so that a retry after a
 *                        crash uses the same identity the service may already have accepted;
 * - `ik_b.key`           IK_B, the long-term identity, once the service accepted it;
 * - `service.json`       the service's key (IK_A), address, enrollee id and times;
 * - `session.json`       the session keys and counters after acceptance (secret, 0600).
 */
import { join } from 'node:path';
import { toHex } from '../../crypto/bytes.js';
import { generateX25519, type KeyPair } from '../../crypto/x25519.js';
import { EnrollError } from '../../errors.js';
import { pathExists } from '../../keystore/files.js';
import { Keystore } from '../../keystore/keystore.js';
import type { PassphraseSource } from '../../keystore/passphrase.js';
import type { EnrolleeCard } from '../../protocol/codec/card.js';
import { enrolleeId } from '../../protocol/enrollment/index.js';

export const EIK_B_FILE = 'eik_b.key';
export const IK_B_FILE = 'ik_b.key';
export const IK_B_PENDING_FILE = 'ik_b.pending.key';
export const SERVICE_FILE = 'service.json';
export const SESSION_FILE = 'session.json';
export const BUNDLE_FILE = 'bundle.txt';
export const SETTINGS_FILE = 'enrollee.json';

export interface EnrolledService {
  service_key: string;
  address: string;
  enrollee_id: string;
  identity_key: string;
  pet_name: string;
  enrolled_at: number;
}

export interface SessionState {
  k_s2e: string;
  k_e2s: string;
  send_counter: string;
  recv_counter: string;
}

interface Settings {
  pet_name?: string;
  /** The service key (IK_A, 64 hex) every bundle must carry: `enrollee init --service-key`. */
  service_key?: string;
}

export class EnrolleeHome {
  readonly keystore: Keystore;
  readonly encrypt: boolean;

  private constructor(keystore: Keystore, encrypt: boolean) {
    this.keystore = keystore;
    this.encrypt = encrypt;
  }

  static async init(
    home: string,
    opts: { petName?: string; force?: boolean; passphrase?: PassphraseSource; serviceKey?: Uint8Array },
  ): Promise<EnrolleeHome> {
    const e = EnrolleeHome.#openKeystore(home, opts.passphrase);
    if (e.keystore.hasKey(EIK_B_FILE) && !opts.force) {
      throw new EnrollError('ERR_KEY_EXISTS', `an enrollee is already initialised in ${e.keystore.dir}`, {
        hint: 'print its card with `ockam-enroll enrollee card`, or use --force to make a new EIK_B',
      });
    }
    const eikB = generateX25519();
    await e.keystore.saveKeyPair(EIK_B_FILE, eikB, { purpose: 'EIK_B', force: opts.force ?? false, encrypt: e.encrypt });
    eikB.wipe();
    if (opts.force) {
      for (const f of [BUNDLE_FILE, IK_B_PENDING_FILE]) e.keystore.remove(f);
    }
    const settings: Settings = {
      ...(opts.petName ? { pet_name: opts.petName } : {}),
      ...(opts.serviceKey ? { service_key: toHex(opts.serviceKey) } : {}),
    };
    e.keystore.writeJson(SETTINGS_FILE, settings, { overwrite: true });
    return e;
  }

  static open(home: string, opts: { passphrase?: PassphraseSource } = {}): EnrolleeHome {
    // Checked before the keystore opens, which would create a never-initialised home.
    // pathExists reports a home the user cannot read (EACCES) as such, not as "not initialised".
    if (!pathExists(join(home, 'enrollee', EIK_B_FILE))) {
      throw new EnrollError('ERR_KEY_MISSING', `no enrollee is initialised in ${join(home, 'enrollee')}`, {
        hint: 'run `ockam-enroll enrollee init` first, or pass the right --home',
      });
    }
    const e = EnrolleeHome.#openKeystore(home, opts.passphrase);
    // session.json holds session keys (0600, like the key files): one readable by others is
    // refused, with the chmod that fixes it, as every secret file is, not used without a word.
    if (pathExists(e.keystore.path(SESSION_FILE))) e.keystore.readBytes(SESSION_FILE, { secret: true });
    return e;
  }

  static #openKeystore(home: string, passphrase: PassphraseSource | undefined): EnrolleeHome {
    const keystore = Keystore.open(home, 'enrollee', passphrase ? { passphrase } : {});
    return new EnrolleeHome(keystore, passphrase !== undefined && passphrase.kind !== 'none');
  }

  eikBPublic(): Uint8Array {
    return this.keystore.loadPublicKey(EIK_B_FILE);
  }

  eikB(): Promise<KeyPair> {
    return this.keystore.loadKeyPair(EIK_B_FILE);
  }

  enrolleeId(): Uint8Array {
    return enrolleeId(this.eikBPublic());
  }

  petName(): string | undefined {
    const s = this.keystore.readJson<Settings>(SETTINGS_FILE);
    return typeof s?.pet_name === 'string' ? s.pet_name : undefined;
  }

  /**
   * The service key pinned at init (`enrollee init --service-key`): every bundle this
   * enrollee uses must carry it as IK_A (join.ts checkBundleServiceKey). Undefined: none.
   */
  pinnedServiceKey(): Uint8Array | undefined {
    const s = this.keystore.readJson<Settings>(SETTINGS_FILE, { trust: true });
    if (s?.service_key === undefined) return undefined;
    if (typeof s.service_key !== 'string' || !/^[0-9a-f]{64}$/.test(s.service_key)) {
      throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${this.keystore.path(SETTINGS_FILE)}: "service_key" must be 64 lowercase hex digits`, {
        hint: 'run `ockam-enroll enrollee init --force --service-key KEY` to pin the service key again',
      });
    }
    return new Uint8Array(Buffer.from(s.service_key, 'hex'));
  }

  /** The card: EIK_B, the pet name, and the id of the bundle it holds (if any). */
  card(bundleId?: Uint8Array): EnrolleeCard {
    const name = this.petName();
    return {
      version: 1,
      eikB: this.eikBPublic(),
      ...(bundleId ? { bundleId } : {}),
      ...(name ? { petName: name } : {}),
    };
  }

  heldBundleText(): string | undefined {
    const b = this.keystore.readBytes(BUNDLE_FILE);
    return b ? Buffer.from(b).toString('utf8').trim() : undefined;
  }

  holdBundle(text: string): void {
    this.keystore.writeBytes(BUNDLE_FILE, `${text}\n`, { overwrite: true });
  }

  enrolled(): EnrolledService | undefined {
    // A pin (IK_A, the address): refused if anyone else could have written it (issue #18 finding 8).
    return this.keystore.readJson<EnrolledService>(SERVICE_FILE, { trust: true });
  }

  /** IK_B for this attempt: the pending one from an interrupted attempt, else a fresh one saved before use. */
  async identityForAttempt(): Promise<KeyPair> {
    if (this.keystore.hasKey(IK_B_PENDING_FILE)) return this.keystore.loadKeyPair(IK_B_PENDING_FILE);
    const ikB = generateX25519();
    await this.keystore.saveKeyPair(IK_B_PENDING_FILE, ikB, { purpose: 'IK_B', encrypt: this.encrypt });
    return ikB;
  }

  /** The IK_B of an interrupted attempt, if one is kept. */
  async pendingIdentity(): Promise<KeyPair | undefined> {
    return this.keystore.hasKey(IK_B_PENDING_FILE) ? this.keystore.loadKeyPair(IK_B_PENDING_FILE) : undefined;
  }

  /**
   * Records an accepted enrollment. The pending IK_B becomes the identity last, so a crash
   * at any point leaves a state that a re-run of `join` completes. `session` is absent when
   * the enrollment was recovered after such a crash.
   */
  async commitEnrollment(ikB: KeyPair, service: EnrolledService, session: SessionState | undefined): Promise<void> {
    if (session) this.keystore.writeJson(SESSION_FILE, session, { secret: true, overwrite: true });
    await this.keystore.saveKeyPair(IK_B_FILE, ikB, { purpose: 'IK_B', force: true, encrypt: this.encrypt });
    // service.json marks the enrollee as enrolled (`enrolled()`), so it is written only once
    // ik_b.key is on disk: a crash before it leaves a state that `join` completes (recovery
    // through the pending IK_B), never "enrolled" without an identity key.
    this.keystore.writeJson(SERVICE_FILE, service, { overwrite: true });
    this.keystore.remove(IK_B_PENDING_FILE);
  }

  identity(): Promise<KeyPair> {
    if (!this.keystore.hasKey(IK_B_FILE)) {
      throw new EnrollError('ERR_KEY_MISSING', 'this enrollee is not enrolled yet', { hint: 'run `ockam-enroll enrollee join` first' });
    }
    return this.keystore.loadKeyPair(IK_B_FILE);
  }

  describe(): { enrollee_id: string; eik_b: string; pet_name: string | undefined; pinned_service_key?: string } {
    const pin = this.pinnedServiceKey();
    return { enrollee_id: toHex(this.enrolleeId()), eik_b: toHex(this.eikBPublic()), pet_name: this.petName(), ...(pin ? { pinned_service_key: toHex(pin) } : {}) };
  }
}
