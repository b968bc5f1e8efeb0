/**
 * The service's home: `<home>/service/` holds
 * - `ik_a.key`      IK_A, the service's identity key (X25519): it signs bundles and SPKs
 *                   (XEdDSA), is DH2's key in every enrollment, and is the static key of
 *                   every Noise channel the service answers;
 * - `settings.json` the enrollment address and the lifetimes (conf);
 * - `store.db`      the SQLite store (unless the `store` setting names a PostgreSQL database
 *                   shared by several replicas: docs/walkthrough.md "Running several replicas");
 * - the CA and HTTPS files of token enrollment (pki.ts).
 * The store key that seals prekey private keys in the database is derived from IK_A's
 * private key (HKDF, info "ockam-enroll/v1/store-key"), so a passphrase on ik_a.key
 * protects it too and there is no second secret file to lose. Replicas sharing a PostgreSQL
 * store share the identity by sharing ik_a.key (the same home, or a copy of its service
 * directory), so they share the store key too, and it never enters the database.
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
import { pathExists } from '../../keystore/files.js';
import { Keystore } from '../../keystore/keystore.js';
import type { PassphraseSource } from '../../keystore/passphrase.js';
import { Sealer } from '../../store/sealing.js';
import { SqliteStore } from '../../store/sqlite.js';
import { SqliteTokenStore, type TokenStore } from '../../store/tokens.js';
import { SqliteLifecycleStore, type LifecycleStore } from '../../store/lifecycle.js';
import { parseStoreLocation, STORE_ENV, withoutSecrets, type StoreLocation } from '../../store/location.js';
import type { PgDatabase } from '../../store/pg/database.js';
import type { ServiceStore, SignedPrekeyRecord } from '../../store/types.js';
import { formatAddress, parseAddress } from '../../transport/address.js';
import { DEFAULT_HTTPS_ADDRESS, defaultHttpsListen, parseHttpsAddress } from '../../transport/https-address.js';
import { DEFAULT_CLIENT_CERT_DAYS, MAX_CLIENT_CERT_DAYS } from '../../x509/constants.js';
// pki.ts loads the X.509 library: imported on first use only, so commands that never touch
// the CA (list, allow, revoke) start fast.
import type { ServicePki } from './pki.js';
import { INIT_FORCE_DESTROYS } from './https-announce.js';

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
  /** Where the store is: "sqlite" (store.db here) or a postgres:// URL (store/location.ts). */
  store?: string;
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
  credentialTtl: 24 * 3600, // issue #18 finding 2: the bound on revocation for offline verifiers
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
  /** `--store`: "sqlite" or a postgres:// URL; saved as the home's `store` setting. */
  store?: string;
}

/**
 * The store location of a home: `flag` (--store), else OCKAM_ENROLL_STORE, else the home's
 * `store` setting, else the SQLite file.
 */
export function resolveStoreLocation(settings: Partial<ServiceSettings>, flag?: string): StoreLocation {
  if (flag !== undefined) return parseStoreLocation(flag, '--store');
  const env = process.env[STORE_ENV];
  if (env !== undefined && env !== '') return parseStoreLocation(env, STORE_ENV);
  if (typeof settings.store === 'string' && settings.store !== '') return parseStoreLocation(settings.store, 'the store setting');
  return { kind: 'sqlite', masked: 'sqlite' };
}

/** Opens the PostgreSQL store's pool and the ServiceStore on it. */
let PgTokenStoreCtor: (new (db: PgDatabase) => TokenStore) | undefined;

async function openPg(location: Extract<StoreLocation, { kind: 'postgres' }>, applicationName?: string): Promise<{ db: PgDatabase; store: ServiceStore }> {
  const { PgDatabase } = await import('../../store/pg/database.js');
  const { PgStore } = await import('../../store/pg/store.js');
  PgTokenStoreCtor ??= (await import('../../store/pg/tokens.js')).PgTokenStore;
  const db = await PgDatabase.open(location, applicationName !== undefined ? { applicationName } : {});
  return { db, store: new PgStore(db) };
}

export class ServiceHome {
  readonly keystore: Keystore;
  readonly ikA: KeyPair;
  readonly ikAPrivate: KeyObject;
  readonly sealer: Sealer;
  readonly store: ServiceStore;
  readonly settings: ServiceSettings;
  /** Where the store is (its `masked` form is safe to print). */
  readonly location: StoreLocation;
  /** The PostgreSQL pool, for a PostgreSQL store. */
  readonly pg: PgDatabase | undefined;
  #tokens: TokenStore | undefined;
  #pki: Promise<ServicePki | undefined> | undefined;

  private constructor(keystore: Keystore, ikA: KeyPair, store: ServiceStore, settings: ServiceSettings, location: StoreLocation, pg?: PgDatabase) {
    this.keystore = keystore;
    this.ikA = ikA;
    this.ikAPrivate = importX25519Private(ikA.privateKey, 'IK_A');
    this.sealer = new Sealer(deriveStoreKey(ikA.privateKey));
    this.store = store;
    this.settings = settings;
    this.location = location;
    this.pg = pg;
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
    const location = resolveStoreLocation({}, opts.store);
    // A PostgreSQL store is checked before any key is written: it must be reachable, and
    // empty (another service's sealed prekeys would not open under a new IK_A).
    let pg: { db: PgDatabase; store: ServiceStore } | undefined;
    if (location.kind === 'postgres') {
      pg = await openPg(location);
      if ((await pg.store.currentSignedPrekey()) !== undefined) {
        await pg.db.close();
        throw new EnrollError('ERR_KEY_EXISTS', `the store ${location.masked} already holds a service`, {
          hint: 'a replica shares the first one\'s home (or a copy of its service directory) instead of running init; or give init an empty database',
        });
      }
    }
    const random = opts.random ?? systemRandom;
    const ikA = generateX25519(random);
    const dbPath = join(keystore.dir, STORE_FILE);
    if (opts.force && location.kind === 'sqlite') {
      // A new IK_A cannot open the old store's sealed prekeys: start the store afresh too.
      for (const suffix of ['', '-wal', '-shm']) keystore.remove(STORE_FILE + suffix);
    }
    try {
      await keystore.saveKeyPair(IK_A_FILE, ikA, { purpose: 'IK_A', force: opts.force ?? false, encrypt: opts.encrypt ?? false });
    } catch (err) {
      await pg?.db.close();
      throw err;
    }
    const { roleSettings } = await import('../../cli/settings.js');
    const conf = await roleSettings(keystore.dir, { ...DEFAULT_SERVICE_SETTINGS });
    conf.set({
      ...DEFAULT_SERVICE_SETTINGS,
      address,
      listen: defaultListen(address),
      httpsAddress: https.url,
      httpsListen: defaultHttpsListen(https.url),
      certDays,
      httpsRequired,
      // Saved only when chosen, so a later OCKAM_ENROLL_STORE still applies to a default home;
      // never with its password (settings.json holds no secret): that comes from PGPASSWORD
      // or ~/.pgpass, which the PostgreSQL client reads.
      ...(opts.store !== undefined ? { store: location.kind === 'sqlite' ? 'sqlite' : withoutSecrets(location.url) } : {}),
    });
    const store = pg?.store ?? SqliteStore.open(dbPath);
    const svc = new ServiceHome(keystore, ikA, store, conf.store as ServiceSettings, location, pg?.db);
    await svc.rotateSignedPrekey(opts.now, random);
    // The CA and HTTPS keys are sealed under the new IK_A's store key: always made afresh.
    const { createServicePki } = await import('./pki.js');
    const pki = createServicePki(keystore, svc.sealer, { httpsHost: https.host, now: opts.now, force: true });
    svc.#pki = pki;
    await pki;
    return svc;
  }

  /**
   * `service init --from HOME`: a replica's home, with the identity of the service in `from`
   * (docs/walkthrough.md "Running several replicas"). Copies IK_A's key file as it is (still encrypted if
   * it was), the CA and HTTPS files (their private keys stay sealed) and the settings; no key
   * is made and nothing goes through the database. Then opens the copy on the store (`store`,
   * else the source's `store` setting) and checks that the database's current signed prekey
   * opens under this IK_A: a replica of another service, or of a SQLite home, is refused.
   */
  static async initFrom(home: string, from: string, opts: { force?: boolean; passphrase?: PassphraseSource; store?: string }): Promise<ServiceHome> {
    const { readFileSync } = await import('node:fs');
    const source = ServiceHome.dir(from);
    if (!existsSync(join(source, IK_A_FILE))) {
      throw new EnrollError('ERR_KEY_MISSING', `no service is initialised in ${source}`, { hint: 'pass the home of the first replica to --from' });
    }
    const keystore = Keystore.open(home, 'service', opts.passphrase ? { passphrase: opts.passphrase } : {});
    if (keystore.dir === source) throw new EnrollError('ERR_USAGE', '--from names this home itself');
    if (keystore.hasKey(IK_A_FILE) && !opts.force) {
      throw new EnrollError('ERR_KEY_EXISTS', `a service is already initialised in ${keystore.dir}`, {
        hint: 'use --force to replace it with the identity of the service in --from',
      });
    }
    const { readRoleSettings, roleSettings } = await import('../../cli/settings.js');
    const settings = { ...DEFAULT_SERVICE_SETTINGS, ...(readRoleSettings(source) as Partial<ServiceSettings>) };
    const location = resolveStoreLocation(settings, opts.store);
    if (location.kind !== 'postgres') {
      throw new EnrollError('ERR_USAGE', 'a replica shares a PostgreSQL store: the service in --from has none, and --store names none', {
        hint: 'initialise the first replica with `service init --store postgres://…`, or pass --store',
      });
    }
    const { CA_CERT_FILE, CA_KEY_FILE, HTTPS_CERT_FILE, HTTPS_KEY_FILE } = await import('./pki.js');
    for (const [name, secret] of [[IK_A_FILE, true], [CA_KEY_FILE, true], [HTTPS_KEY_FILE, true], [CA_CERT_FILE, false], [HTTPS_CERT_FILE, false]] as const) {
      const file = join(source, name);
      if (!existsSync(file)) continue; // a home made before token enrollment has no CA
      keystore.writeBytes(name, readFileSync(file), { secret, overwrite: true });
    }
    (await roleSettings(keystore.dir, { ...DEFAULT_SERVICE_SETTINGS })).set({
      ...settings,
      ...(opts.store !== undefined ? { store: withoutSecrets(location.url) } : {}),
    });
    const svc = await ServiceHome.open(home, { ...(opts.passphrase ? { passphrase: opts.passphrase } : {}), ...(opts.store !== undefined ? { store: opts.store } : {}) });
    try {
      const spk = await svc.store.currentSignedPrekey();
      if (!spk) throw new EnrollError('ERR_STORE', `the store ${location.masked} holds no service yet`, { hint: 'run `service init --store …` for the first replica' });
      svc.sealer.open(spk.privateSealed, 'spk', spk.publicKey).fill(0);
    } catch (err) {
      await svc.close();
      throw err;
    }
    return svc;
  }

  /** Opens an initialised service home. */
  /**
   * `applicationName`: what a PostgreSQL store's connections are called in pg_stat_activity
   * (`service start` names its own, so that `service status` can list the replicas).
   */
  static async open(home: string, opts: { passphrase?: PassphraseSource; readonly?: boolean; store?: string; applicationName?: string } = {}): Promise<ServiceHome> {
    const dir = ServiceHome.dir(home);
    // pathExists reports a home the user cannot read (EACCES) as such, not as "not initialised".
    if (!pathExists(join(dir, IK_A_FILE))) {
      throw new EnrollError('ERR_KEY_MISSING', `no service is initialised in ${dir}`, {
        hint: 'run `ockam-enroll service init` first, or pass the right --home',
      });
    }
    const keystore = Keystore.open(home, 'service', opts.passphrase ? { passphrase: opts.passphrase } : {});
    const ikA = await keystore.loadKeyPair(IK_A_FILE);
    const { readRoleSettings } = await import('../../cli/settings.js');
    const settings = { ...DEFAULT_SERVICE_SETTINGS, ...(readRoleSettings(keystore.dir) as Partial<ServiceSettings>) };
    const location = resolveStoreLocation(settings, opts.store);
    if (location.kind === 'postgres') {
      const pg = await openPg(location, opts.applicationName);
      return new ServiceHome(keystore, ikA, pg.store, settings, location, pg.db);
    }
    const store = SqliteStore.open(join(keystore.dir, STORE_FILE), opts.readonly ? { readonly: true } : {});
    return new ServiceHome(keystore, ikA, store, settings, location);
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
    if (this.#tokens === undefined) {
      if (this.pg !== undefined) {
        const db = this.pg;
        // Loaded with the pool (openPg), so this import is already in the module cache.
        this.#tokens = new PgTokenStoreCtor!(db);
      } else {
        this.#tokens = SqliteTokenStore.open(join(this.keystore.dir, STORE_FILE));
      }
    }
    return this.#tokens;
  }

  /**
   * The lifecycle tables (rotations, announcements, revocations since): for SQLite a
   * connection of its own, for PostgreSQL a view on the shared pool. Close it after use.
   */
  async lifecycleStore(): Promise<LifecycleStore> {
    if (this.pg !== undefined) {
      const { PgLifecycleStore } = await import('../../store/pg/lifecycle.js');
      return new PgLifecycleStore(this.pg);
    }
    return SqliteLifecycleStore.open(join(this.keystore.dir, STORE_FILE));
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
        hint: `it was initialised before token enrollment existed: \`ockam-enroll service init --force --https-address https://HOST:PORT\` makes a CA, but ${INIT_FORCE_DESTROYS}`,
      });
    }
    return pki;
  }

  async close(): Promise<void> {
    await this.#tokens?.close();
    await this.store.close();
    await this.pg?.close();
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

export function deriveStoreKey(ikAPrivate: Uint8Array): Uint8Array {
  return hkdfSha256(ikAPrivate, new Uint8Array(32), utf8('ockam-enroll/v1/store-key'), 32);
}

