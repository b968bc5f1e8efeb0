/**
 * A role's home on disk. A *home* is a directory (0700); each role keeps its files in
 * `<home>/<role>/` (0700), so one home can host a service, an enroller and an enrollee on
 * one machine without their files mixing.
 *
 * File names are plain lowercase names (`[a-z0-9_.-]+`, not starting with '.'): no path
 * can escape the role's directory, and the '.'-prefixed temp files of atomic writes can
 * never be read by mistake.
 */
import { join, resolve } from 'node:path';
import { EnrollError } from '../errors.js';
import { abytes } from '../crypto/bytes.js';
import type { KeyPair, X25519KeyPair } from '../crypto/x25519.js';
import {
  cleanStaleTemps,
  ensurePrivateDir,
  pathExists,
  readPrivateFile,
  readTrustFile,
  readPublicFile,
  removeFile,
  writeFileAtomic,
  type ReadFileOptions,
} from './files.js';
import { encodeKeyFile, KeyFile } from './keyfile.js';
import { resolvePassphrase, type PassphraseSource } from './passphrase.js';

export type Role = 'service' | 'enroller' | 'enrollee';
export const ROLES: readonly Role[] = ['service', 'enroller', 'enrollee'];

const NAME_RE = /^[a-z0-9_-][a-z0-9_.-]{0,127}$/;
/** Temp files younger than this may belong to a concurrent writer and are left alone by open(). */
const STALE_TEMP_AGE_MS = 10 * 60 * 1000;
const PUBLIC_FILE_MODE = 0o644;
const SECRET_FILE_MODE = 0o600;

const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

export interface KeystoreOptions {
  /** Where the passphrase of encrypted key files comes from. Default `{ kind: 'none' }`. */
  passphrase?: PassphraseSource;
  /**
   * INSECURE: scrypt N for key files this keystore encrypts, below the default 32768, so
   * that test suites run fast. Never set this outside tests.
   */
  insecureScryptNForTestingOnly?: number;
}

export interface SaveKeyPairOptions {
  /** What the key is for, by its spec name: IK_B, SPK_A, NOISE_STATIC, … */
  purpose: string;
  /** Replace an existing file. Default false: ERR_KEY_EXISTS. */
  force?: boolean;
  /** Encrypt the private key under the keystore's passphrase source. */
  encrypt?: boolean;
}

export interface WriteOptions {
  /** Mode 0600 (else 0644), and read back with the owner and mode checks. */
  secret?: boolean;
  /** Replace an existing file. Default true. */
  overwrite?: boolean;
}

export interface ReadOptions {
  /** Refuse the file unless it is 0600 and the user's own. */
  secret?: boolean;
  /** A pin (known_services.json, service.json, a CA): refuse it if anyone else could have written it (files.ts readTrustFile). */
  trust?: boolean;
  /** Refuse a file larger than this (default MAX_FILE_BYTES, 1 MiB). */
  maxBytes?: number;
}

export class Keystore {
  /** The home, as an absolute path. */
  readonly home: string;
  readonly role: Role;
  /** `<home>/<role>`, as an absolute path. */
  readonly dir: string;
  readonly #source: PassphraseSource;
  readonly #scryptN: number | undefined;
  /** A passphrase typed at the prompt, kept so that one run asks once. */
  #typed: string | undefined;

  private constructor(home: string, role: Role, options: KeystoreOptions) {
    this.home = home;
    this.role = role;
    this.dir = join(home, role);
    this.#source = options.passphrase ?? { kind: 'none' };
    this.#scryptN = options.insecureScryptNForTestingOnly;
  }

  /**
   * Opens (creating if needed) `<home>/<role>`, both 0700. An existing directory with group
   * or other permission bits is refused (ERR_KEY_PERMISSIONS), never silently fixed. Temp
   * files left by a crash more than ten minutes ago are removed.
   */
  static open(home: string, role: Role, options: KeystoreOptions = {}): Keystore {
    if (typeof home !== 'string' || home.length === 0) {
      throw new EnrollError('ERR_INVALID_ARG', '"home" must be a non-empty path');
    }
    if (!ROLES.includes(role)) {
      throw new EnrollError('ERR_INVALID_ARG', `"role" must be one of ${ROLES.join(', ')}`);
    }
    const ks = new Keystore(resolve(home), role, options);
    ensurePrivateDir(ks.home);
    ensurePrivateDir(ks.dir);
    cleanStaleTemps(ks.dir, { olderThanMs: STALE_TEMP_AGE_MS });
    return ks;
  }

  /** The absolute path of file `name` in the role's directory; ERR_INVALID_ARG for a bad name. */
  path(name: string): string {
    if (typeof name !== 'string' || !NAME_RE.test(name)) {
      throw new EnrollError(
        'ERR_INVALID_ARG',
        `"name" must be 1-128 characters of [a-z0-9_.-] not starting with '.', got ${JSON.stringify(String(name).slice(0, 64))}`,
      );
    }
    return join(this.dir, name);
  }

  /** Whether a file called `name` exists (whatever it holds). */
  hasKey(name: string): boolean {
    return pathExists(this.path(name));
  }

  #readOptions(): ReadFileOptions {
    return { missingHint: `run: ockam-enroll ${this.role} init` };
  }

  /** Whether a passphrase source was given (not `none`): new keys of other formats are then encrypted too. */
  get hasPassphraseSource(): boolean {
    return this.#source.kind !== 'none';
  }

  /**
   * The passphrase for file `name` from the keystore's source (a prompt asks once per run;
   * `confirm` asks twice, for a new key), or undefined for `none`. For key files in formats
   * of their own, such as the token flow's PKCS#8 TLS key (x509/encrypted-key.ts).
   */
  passphraseFor(name: string, options: { confirm?: boolean } = {}): Promise<string | undefined> {
    return this.#passphrase(this.path(name), options.confirm ?? false);
  }

  async #passphrase(file: string, confirm: boolean): Promise<string | undefined> {
    if (this.#typed !== undefined) return this.#typed;
    const p = await resolvePassphrase(this.#source, { prompt: `passphrase for ${file}: `, confirm });
    if (this.#source.kind === 'prompt') this.#typed = p;
    return p;
  }

  /**
   * Writes `kp` to key file `name` (0600, atomically). Without `force`, an existing file is
   * never replaced (ERR_KEY_EXISTS), checked before any passphrase is asked for and again,
   * atomically, by the final link(2). With `encrypt`, the passphrase source must yield a
   * passphrase (ERR_PASSPHRASE otherwise); a prompt asks twice.
   */
  async saveKeyPair(name: string, kp: X25519KeyPair, options: SaveKeyPairOptions): Promise<void> {
    const file = this.path(name);
    abytes(kp?.publicKey, 32, 'publicKey');
    abytes(kp?.privateKey, 32, 'privateKey');
    if (!options.force && pathExists(file)) {
      throw new EnrollError('ERR_KEY_EXISTS', `${file} already exists`, { hint: 'use --force to replace it' });
    }
    let passphrase: string | undefined;
    if (options.encrypt) {
      passphrase = await this.#passphrase(file, true);
      if (passphrase === undefined) {
        throw new EnrollError('ERR_PASSPHRASE', `encrypting ${file} needs a passphrase`, {
          hint: 'set OCKAM_ENROLL_PASSPHRASE or use --passphrase-file',
        });
      }
    }
    const text = await encodeKeyFile(kp, {
      purpose: options.purpose,
      ...(passphrase === undefined ? {} : { passphrase }),
      ...(this.#scryptN === undefined ? {} : { insecureScryptNForTestingOnly: this.#scryptN }),
    });
    writeFileAtomic(file, text, { mode: SECRET_FILE_MODE, overwrite: options.force ?? false });
  }

  /** Reads and validates key file `name` without decrypting it. */
  readKeyFile(name: string): KeyFile {
    const file = this.path(name);
    return KeyFile.parse(readPrivateFile(file, this.#readOptions()), file);
  }

  /**
   * Loads key pair `name`. The passphrase source is asked only if the file is encrypted.
   * ERR_KEY_MISSING, ERR_KEY_PERMISSIONS, ERR_KEYSTORE_CORRUPT or ERR_PASSPHRASE otherwise.
   */
  async loadKeyPair(name: string): Promise<KeyPair> {
    const kf = this.readKeyFile(name);
    if (!kf.encrypted) return kf.unlock();
    const passphrase = await this.#passphrase(kf.file, false);
    try {
      return await kf.unlock(passphrase);
    } catch (e) {
      // A mistyped passphrase must not stick for the rest of the run.
      if (e instanceof EnrollError && e.code === 'ERR_PASSPHRASE') this.#typed = undefined;
      throw e;
    }
  }

  /** The public key of key file `name`; no passphrase needed, the file is still fully validated. */
  loadPublicKey(name: string): Uint8Array {
    return this.readKeyFile(name).publicKey;
  }

  /** Writes `value` as pretty JSON, atomically. `secret` → 0600; `overwrite` defaults to true. */
  writeJson(name: string, value: unknown, options: WriteOptions = {}): void {
    let text: string | undefined;
    try {
      text = JSON.stringify(value, null, 2);
    } catch (cause) {
      throw new EnrollError('ERR_INVALID_ARG', `"value" for ${name} cannot be serialised as JSON`, { cause });
    }
    if (text === undefined) {
      throw new EnrollError('ERR_INVALID_ARG', `"value" for ${name} cannot be serialised as JSON`);
    }
    this.writeBytes(name, text + '\n', options);
  }

  /** Parses JSON file `name`; undefined if absent, ERR_KEYSTORE_CORRUPT if it does not parse. */
  readJson<T = unknown>(name: string, options: ReadOptions = {}): T | undefined {
    const bytes = this.readBytes(name, options);
    if (bytes === undefined) return undefined;
    const file = this.path(name);
    try {
      return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as T;
    } catch (cause) {
      throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${file} is not valid JSON`, {
        cause,
        hint: `restore ${file} from a backup or remove it`,
      });
    }
  }

  /** Writes raw bytes or text (a PEM, a token) atomically. `secret` → 0600; `overwrite` defaults to true. */
  writeBytes(name: string, data: Uint8Array | string, options: WriteOptions = {}): void {
    const file = this.path(name);
    writeFileAtomic(file, data, {
      mode: options.secret ? SECRET_FILE_MODE : PUBLIC_FILE_MODE,
      overwrite: options.overwrite ?? true,
    });
  }

  /** Reads file `name`; undefined if absent. `secret` applies the owner and mode checks. */
  readBytes(name: string, options: ReadOptions = {}): Uint8Array | undefined {
    const file = this.path(name);
    try {
      const read = { ...this.#readOptions(), ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}) };
      return options.secret ? readPrivateFile(file, read) : options.trust ? readTrustFile(file, read) : readPublicFile(file, read);
    } catch (e) {
      if (e instanceof EnrollError && e.code === 'ERR_KEY_MISSING') return undefined;
      throw e;
    }
  }

  /** Removes file `name`; returns whether it existed. */
  remove(name: string): boolean {
    return removeFile(this.path(name));
  }

  toJSON(): { home: string; role: Role; dir: string } {
    return { home: this.home, role: this.role, dir: this.dir };
  }

  toString(): string {
    return `Keystore(${this.role} at ${this.dir})`;
  }

  [inspectSymbol](): string {
    return this.toString();
  }
}
