/**
 * The service's home: `<home>/service/` holds
 * - `ik_a.key`      IK_A, the service's identity key (X25519): it signs bundles and SPKs
 *                   (XEdDSA), is DH2's key in every enrollment, and is the static key of
 *                   every Noise channel the service answers;
 * - `settings.json` the enrollment address and the lifetimes (conf);
 * - `store.db`      the SQLite store;
 * - the CA and HTTPS files of token enrollment (pki.ts).
 * The store key that seals prekey private keys in the database is derived from IK_A's
 * private key (HKDF, info "ockam-enroll/v1/store-key"), so a passphrase on ik_a.key
 * protects it too and there is no second secret file to lose.
 */
import { isIP } from 'node:net';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { hkdfSha256, sha256 } from '../../crypto/hash.js';
import { utf8 } from '../../crypto/bytes.js';
import { generateX25519, importX25519Private, type KeyPair } from '../../crypto/x25519.js';
import { signSpk } from '../../protocol/codec/bundle.js';
import { MLKEM768_SEED_LEN, mlKem768Keygen } from '../../crypto/mlkem.js';
import { systemRandom, type RandomSource } from '../../crypto/random.js';
import { EnrollError } from '../../errors.js';
import { Keystore } from '../../keystore/keystore.js';
import type { PassphraseSource } from '../../keystore/passphrase.js';
import { Sealer } from '../../store/sealing.js';
import { SqliteStore } from '../../store/sqlite.js';
import { SqliteTokenStore, type TokenStore } from '../../store/tokens.js';
import type { ServiceStore, SignedPrekeyRecord } from '../../store/types.js';
import { formatAddress, parseAddress } from '../../transport/address.js';
import { DEFAULT_HTTPS_ADDRESS, defaultHttpsListen, parseHttpsAddress } from '../../transport/https-address.js';
import { DEFAULT_CLIENT_CERT_DAYS, MAX_CLIENT_CERT_DAYS } from '../../x509/constants.js';
// pki.ts loads the X.509 library: imported on first use only, so commands that never touch
// the CA (list, allow, revoke) start fast.
import type { ServicePki } from './pki.js';

export const IK_A_FILE = 'ik_a.key';
export const STORE_FILE = 'store.db';

export interface ServiceSettings {
  /** The enrollment address put in bundles (tcp://HOST:PORT). */
  address: string;
  /** Default listen address for `service start`. */
  listen: string;
  /** Seconds a bundle stays usable after it is made. */
  bundleTtl: number;
  /** Default seconds an approval stays pending (the enroller may ask for less or more). */
  approvalTtl: number;
  /** Failed enrollment attempts after which an enrollee is locked out. */
  maxFailedAttempts: number;
  /** Token enrollment: the HTTPS URL put in tokens (`iss`) and in the server certificate. */
  httpsAddress: string;
  /** Default HTTPS listen address for `service start`. */
  httpsListen: string;
  /** Lifetime in days of the client certificates the CA issues. */
  certDays: number;
  /**
   * Whether the operator chose the HTTPS address (init --https-address): then `service start`
   * fails if it cannot serve HTTPS. With the default address it warns and serves TCP only,
   * so that X3DH-only services never collide on the default port.
   */
  httpsRequired: boolean;
  /** Seconds the credential issued with each acceptance stays valid (roles/service/credentials.ts). */
  credentialTtl: number;
}

export const DEFAULT_SERVICE_SETTINGS: ServiceSettings = {
  address: 'tcp://127.0.0.1:4100',
  listen: '127.0.0.1:4100',
  bundleTtl: 7 * 86400,
  approvalTtl: 3600,
  maxFailedAttempts: 20,
  httpsAddress: DEFAULT_HTTPS_ADDRESS,
  httpsListen: '127.0.0.1:4443',
  certDays: DEFAULT_CLIENT_CERT_DAYS,
  httpsRequired: false,
  credentialTtl: 365 * 86400,
};

export interface ServiceInitOptions {
  address?: string;
  /** https://HOST:PORT for token enrollment (default https://127.0.0.1:4443). */
  httpsAddress?: string;
  /** Client certificate lifetime in days (default 90). */
  certDays?: number;
  force?: boolean;
  encrypt?: boolean;
  passphrase?: PassphraseSource;
  random?: RandomSource;
  now: number;
}

export class ServiceHome {
  readonly keystore: Keystore;
  readonly ikA: KeyPair;
  readonly ikAPrivate: KeyObject;
  readonly sealer: Sealer;
  readonly store: ServiceStore;
  readonly settings: ServiceSettings;
  #tokens: TokenStore | undefined;
  #pki: Promise<ServicePki | undefined> | undefined;

  private constructor(keystore: Keystore, ikA: KeyPair, store: ServiceStore, settings: ServiceSettings) {
    this.keystore = keystore;
    this.ikA = ikA;
    this.ikAPrivate = importX25519Private(ikA.privateKey, 'IK_A');
    this.sealer = new Sealer(deriveStoreKey(ikA.privateKey));
    this.store = store;
    this.settings = settings;
  }

  static dir(home: string): string {
    return join(home, 'service');
  }

  /** `service init`: makes IK_A, the first SPK_A and the store. */
  static async init(home: string, opts: ServiceInitOptions): Promise<ServiceHome> {
    const keystore = Keystore.open(home, 'service', opts.passphrase ? { passphrase: opts.passphrase } : {});
    if (keystore.hasKey(IK_A_FILE) && !opts.force) {
      throw new EnrollError('ERR_KEY_EXISTS', `a service is already initialised in ${keystore.dir}`, {
        hint: 'use --force to replace its identity (every enrolled device would have to enroll again)',
      });
    }
    const address = opts.address ? formatAddress(parseAddress(opts.address)) : DEFAULT_SERVICE_SETTINGS.address;
    const https = parseHttpsAddress(opts.httpsAddress ?? DEFAULT_HTTPS_ADDRESS);
    const httpsRequired = opts.httpsAddress !== undefined;
    const certDays = opts.certDays ?? DEFAULT_CLIENT_CERT_DAYS;
    if (!Number.isInteger(certDays) || certDays < 1 || certDays > MAX_CLIENT_CERT_DAYS) {
      throw new EnrollError('ERR_USAGE', `--cert-days must be 1..${MAX_CLIENT_CERT_DAYS}, got ${certDays}`);
    }
    const random = opts.random ?? systemRandom;
    const ikA = generateX25519(random);
    const dbPath = join(keystore.dir, STORE_FILE);
    if (opts.force) {
      // A new IK_A cannot open the old store's sealed prekeys: start the store afresh too.
      for (const suffix of ['', '-wal', '-shm']) keystore.remove(STORE_FILE + suffix);
    }
    await keystore.saveKeyPair(IK_A_FILE, ikA, { purpose: 'IK_A', force: opts.force ?? false, encrypt: opts.encrypt ?? false });
    const { roleSettings } = await import('../../cli/settings.js');
    const conf = roleSettings(keystore.dir, { ...DEFAULT_SERVICE_SETTINGS });
    conf.set({
      ...DEFAULT_SERVICE_SETTINGS,
      address,
      listen: defaultListen(address),
      httpsAddress: https.url,
      httpsListen: defaultHttpsListen(https.url),
      certDays,
      httpsRequired,
    });
    const store = SqliteStore.open(dbPath);
    const svc = new ServiceHome(keystore, ikA, store, conf.store as ServiceSettings);
    await svc.rotateSignedPrekey(opts.now, random);
    // The CA and HTTPS keys are sealed under the new IK_A's store key: always made afresh.
    const { createServicePki } = await import('./pki.js');
    const pki = createServicePki(keystore, svc.sealer, { httpsHost: https.host, now: opts.now, force: true });
    svc.#pki = pki;
    await pki;
    return svc;
  }

  /** Opens an initialised service home. */
  static async open(home: string, opts: { passphrase?: PassphraseSource; readonly?: boolean } = {}): Promise<ServiceHome> {
    const dir = ServiceHome.dir(home);
    if (!existsSync(join(dir, IK_A_FILE))) {
      throw new EnrollError('ERR_KEY_MISSING', `no service is initialised in ${dir}`, {
        hint: 'run `ockam-enroll service init` first, or pass the right --home',
      });
    }
    const keystore = Keystore.open(home, 'service', opts.passphrase ? { passphrase: opts.passphrase } : {});
    const ikA = await keystore.loadKeyPair(IK_A_FILE);
    const { roleSettings } = await import('../../cli/settings.js');
    const settings = { ...DEFAULT_SERVICE_SETTINGS, ...(roleSettings(keystore.dir, { ...DEFAULT_SERVICE_SETTINGS }).store as Partial<ServiceSettings>) };
    const store = SqliteStore.open(join(keystore.dir, STORE_FILE), opts.readonly ? { readonly: true } : {});
    return new ServiceHome(keystore, ikA, store, settings);
  }

  /**
   * Makes a new SPK_A, signed by IK_A (SPK_sig = XEdDSA(IK_A, SPK_A)), and with it a new
   * ML-KEM-768 prekey PQSPK_A for EKA v2 (docs/protocol.md §3.3: its 64-byte seed sealed,
   * its public key and SHA-256 stored), and makes them current together.
   */
  async rotateSignedPrekey(now: number, random: RandomSource = systemRandom): Promise<SignedPrekeyRecord> {
    const spk = generateX25519(random);
    const signature = signSpk(this.ikA.privateKey, spk.publicKey, random);
    const seed = random(MLKEM768_SEED_LEN);
    const kem = mlKem768Keygen(seed);
    const hash = sha256(kem.publicKey);
    kem.secretKey.fill(0);
    try {
      return await this.store.addSignedPrekey({
        publicKey: spk.publicKey,
        privateSealed: this.sealer.seal(spk.privateKey, 'spk', spk.publicKey),
        signature,
        createdAt: now,
        kem: { publicKey: kem.publicKey, hash, seedSealed: this.sealer.seal(seed, 'kem', hash) },
      });
    } finally {
      seed.fill(0);
      spk.wipe();
    }
  }

  /** The token store (tokens and certificates), opened on first use. */
  get tokens(): TokenStore {
    this.#tokens ??= SqliteTokenStore.open(join(this.keystore.dir, STORE_FILE));
    return this.#tokens;
  }

  /** The CA and HTTPS material, loaded on first use; undefined for a home made before token enrollment. */
  pki(): Promise<ServicePki | undefined> {
    this.#pki ??= import('./pki.js').then((m) => m.loadServicePki(this.keystore, this.sealer));
    return this.#pki;
  }

  /** The CA and HTTPS material, or ERR_KEY_MISSING with a hint. */
  async requirePki(): Promise<ServicePki> {
    const pki = await this.pki();
    if (!pki) {
      throw new EnrollError('ERR_KEY_MISSING', `the service in ${this.keystore.dir} has no CA for token enrollment`, {
        hint: 'it was initialised before token enrollment existed: run `ockam-enroll service init --force --https-address https://HOST:PORT`',
      });
    }
    return pki;
  }

  async close(): Promise<void> {
    await this.#tokens?.close();
    await this.store.close();
  }
}

/**
 * Listen where the announced address points when it is a literal loopback or IP address;
 * a DNS name may resolve elsewhere than this host's interfaces, so then listen on all.
 */
function defaultListen(address: string): string {
  const { host, port } = parseAddress(address);
  if (host === 'localhost' || isIP(host) !== 0) return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  return `0.0.0.0:${port}`;
}

function deriveStoreKey(ikAPrivate: Uint8Array): Uint8Array {
  return hkdfSha256(ikAPrivate, new Uint8Array(32), utf8('ockam-enroll/v1/store-key'), 32);
}
