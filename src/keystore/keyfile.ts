/**
 * The key file format: one X25519 key pair per file, as UTF-8 JSON.
 *
 * ```json
 * {"ockam-enroll-key": 1, "kind": "x25519", "purpose": "IK_B", "created": "2025-01-01T00:00:00.000Z",
 *  "public_key": "<64 hex>", "private_key": "<64 hex>"}
 * ```
 *
 * or, encrypted with a passphrase, `"encrypted"` instead of `"private_key"`:
 *
 * ```json
 * "encrypted": {"kdf": "scrypt", "N": 32768, "r": 8, "p": 1,
 *               "salt": "<16 bytes b64>", "nonce": "<12 bytes b64>", "ciphertext": "<48 bytes b64>"}
 * ```
 *
 * - key = scrypt(passphrase, salt, N, r, p, dkLen = 32) (RFC 7914), where the passphrase is
 *   NFC-normalised and UTF-8 encoded, so the same characters typed on different systems
 *   give the same key;
 * - ciphertext = AES-256-GCM(key, nonce, private key, AAD) ‖ tag;
 * - AAD = UTF-8 of `ockam-enroll/v1/keyfile|<kind>|<purpose>|<public_key hex>`, which binds the
 *   ciphertext to this file's header: moving it into another file, or editing the
 *   kind, purpose or public key, makes decryption fail.
 *
 * AES-GCM cannot tell a wrong key from a modified ciphertext, so a wrong passphrase and a
 * tampered `salt`/`nonce`/`ciphertext`/AAD field give the same ERR_PASSPHRASE. Anything that
 * breaks the format (types, lengths, encodings, unknown fields) is ERR_KEYSTORE_CORRUPT, as
 * is a private key that does not yield `public_key`.
 */
import { scrypt } from 'node:crypto';
import { EnrollError } from '../errors.js';
import { aesGcmDecrypt, aesGcmEncrypt, AES_KEY_LEN, GCM_NONCE_LEN, GCM_TAG_LEN } from '../crypto/aead.js';
import { abytes, equalBytes, toHex, utf8, wipe } from '../crypto/bytes.js';
import { systemRandom, type RandomSource } from '../crypto/random.js';
import { keyPairFromPrivate, X25519_KEY_LEN, type KeyPair, type X25519KeyPair } from '../crypto/x25519.js';

export const KEYFILE_VERSION = 1;
/** The field that marks a key file and carries its format version. */
export const KEYFILE_MAGIC = 'ockam-enroll-key';
/** Domain-separation label of the AAD. */
export const KEYFILE_AAD_LABEL = 'ockam-enroll/v1/keyfile';

/** scrypt cost used for every key file we write: about 100 ms and 32 MiB. */
export const SCRYPT_N = 32768;
export const SCRYPT_R = 8;
export const SCRYPT_P = 1;
export const SCRYPT_SALT_LEN = 16;

/** Upper bounds for parameters read from a file, so a hostile file cannot exhaust memory or CPU. */
const SCRYPT_MAX_N = 1 << 20;
const SCRYPT_MAX_R = 16;
const SCRYPT_MAX_P = 4;
const SCRYPT_MAX_MEM = 256 * 1024 * 1024;

/** Purposes are spec names such as IK_B, SPK_A or NOISE_STATIC: no `|`, so the AAD is unambiguous. */
const PURPOSE_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const HEX32_RE = /^[0-9a-f]{64}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

export type KeyKind = 'x25519';

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

interface EncryptedPrivateKey extends ScryptParams {
  readonly salt: Uint8Array;
  readonly nonce: Uint8Array;
  readonly ciphertext: Uint8Array;
}

export function keyFileAad(kind: KeyKind, purpose: string, publicKeyHex: string): Uint8Array {
  return utf8(`${KEYFILE_AAD_LABEL}|${kind}|${purpose}|${publicKeyHex}`);
}

function checkPurpose(purpose: unknown): string {
  if (typeof purpose !== 'string' || !PURPOSE_RE.test(purpose)) {
    throw new EnrollError('ERR_INVALID_ARG', `"purpose" must match ${PURPOSE_RE.source}`);
  }
  return purpose;
}

function isIntIn(v: unknown, lo: number, hi: number): v is number {
  return Number.isSafeInteger(v) && (v as number) >= lo && (v as number) <= hi;
}

/** Returns what is wrong with the scrypt parameters, or undefined; `at` prefixes field names. */
function checkScryptParams(N: unknown, r: unknown, p: unknown, at = ''): string | undefined {
  if (!isIntIn(N, 2, SCRYPT_MAX_N) || (N & (N - 1)) !== 0) {
    return `"${at}N" must be a power of two in 2..${SCRYPT_MAX_N}`;
  }
  if (!isIntIn(r, 1, SCRYPT_MAX_R)) return `"${at}r" must be an integer in 1..${SCRYPT_MAX_R}`;
  if (!isIntIn(p, 1, SCRYPT_MAX_P)) return `"${at}p" must be an integer in 1..${SCRYPT_MAX_P}`;
  if (128 * N * r > SCRYPT_MAX_MEM) return `"${at}N" and "${at}r" need more than 256 MiB`;
  return undefined;
}

function passphraseBytes(passphrase: string): Uint8Array {
  if (typeof passphrase !== 'string' || passphrase.length === 0) {
    throw new EnrollError('ERR_PASSPHRASE', 'the passphrase is empty', {
      hint: 'set OCKAM_ENROLL_PASSPHRASE or use --passphrase-file',
    });
  }
  return utf8(passphrase.normalize('NFC'));
}

/** scrypt (RFC 7914) to a 32-byte AES key. Async: it takes ~100 ms at N = 32768. */
export function deriveKeyFileKey(passphrase: string, salt: Uint8Array, params: ScryptParams): Promise<Uint8Array> {
  const pw = passphraseBytes(passphrase);
  const { N, r, p } = params;
  return new Promise((resolvePromise, reject) => {
    // node refuses when 128·N·r exceeds maxmem; leave room for its own buffers.
    scrypt(pw, salt, AES_KEY_LEN, { N, r, p, maxmem: 2 * 128 * N * r + (1 << 20) }, (err, key) => {
      wipe(pw);
      if (err) reject(new EnrollError('ERR_INTERNAL', 'scrypt failed', { cause: err }));
      else resolvePromise(new Uint8Array(key.buffer, key.byteOffset, key.length));
    });
  });
}

export interface EncodeKeyFileOptions {
  purpose: string;
  /** Encrypt the private key under this passphrase. Omitted: the private key is stored in hex. */
  passphrase?: string;
  /** Default: now. */
  created?: Date;
  /** Salt and nonce source. Default: the system CSPRNG. */
  random?: RandomSource;
  /**
   * INSECURE: a scrypt N below {@link SCRYPT_N}, so that test suites run fast. Never set
   * this outside tests: a low N makes offline passphrase guessing cheap.
   */
  insecureScryptNForTestingOnly?: number;
}

/** Serialises `kp` as a key file (pretty JSON with a final newline). */
export async function encodeKeyFile(kp: X25519KeyPair, options: EncodeKeyFileOptions): Promise<string> {
  abytes(kp.publicKey, X25519_KEY_LEN, 'publicKey');
  abytes(kp.privateKey, X25519_KEY_LEN, 'privateKey');
  const purpose = checkPurpose(options.purpose);
  // Refuse to write a file that would later be rejected as corrupt.
  const derived = keyPairFromPrivate(new Uint8Array(kp.privateKey));
  const consistent = equalBytes(derived.publicKey, kp.publicKey);
  derived.wipe();
  if (!consistent) {
    throw new EnrollError('ERR_INVALID_ARG', '"privateKey" does not yield "publicKey"');
  }
  const created = (options.created ?? new Date()).toISOString();
  const publicHex = toHex(kp.publicKey);
  const head = {
    [KEYFILE_MAGIC]: KEYFILE_VERSION,
    kind: 'x25519' as KeyKind,
    purpose,
    created,
    public_key: publicHex,
  };
  if (options.passphrase === undefined) {
    return JSON.stringify({ ...head, private_key: toHex(kp.privateKey) }, null, 2) + '\n';
  }
  const N = options.insecureScryptNForTestingOnly ?? SCRYPT_N;
  const bad = checkScryptParams(N, SCRYPT_R, SCRYPT_P);
  if (bad !== undefined) throw new EnrollError('ERR_INVALID_ARG', bad);
  const random = options.random ?? systemRandom;
  const salt = abytes(random(SCRYPT_SALT_LEN), SCRYPT_SALT_LEN, 'random salt');
  const nonce = abytes(random(GCM_NONCE_LEN), GCM_NONCE_LEN, 'random nonce');
  const key = await deriveKeyFileKey(options.passphrase, salt, { N, r: SCRYPT_R, p: SCRYPT_P });
  let ciphertext: Uint8Array;
  try {
    ciphertext = aesGcmEncrypt(key, nonce, kp.privateKey, keyFileAad('x25519', purpose, publicHex));
  } finally {
    wipe(key);
  }
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  const encrypted = {
    kdf: 'scrypt',
    N,
    r: SCRYPT_R,
    p: SCRYPT_P,
    salt: b64(salt),
    nonce: b64(nonce),
    ciphertext: b64(ciphertext),
  };
  return JSON.stringify({ ...head, encrypted }, null, 2) + '\n';
}

const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');
const TOP_FIELDS = new Set([KEYFILE_MAGIC, 'kind', 'purpose', 'created', 'public_key', 'private_key', 'encrypted']);
const ENC_FIELDS = new Set(['kdf', 'N', 'r', 'p', 'salt', 'nonce', 'ciphertext']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A parsed, validated key file. The header (kind, purpose, created, public key) is readable
 * without a passphrase; {@link KeyFile.unlock} returns the key pair. The private key, when
 * the file holds it in clear, stays in a private field and never shows in JSON or inspect.
 */
export class KeyFile {
  readonly file: string;
  readonly kind: KeyKind;
  readonly purpose: string;
  readonly created: string;
  readonly publicKey: Uint8Array;
  readonly #privateKey: Uint8Array | undefined;
  readonly #encrypted: EncryptedPrivateKey | undefined;

  private constructor(
    file: string,
    purpose: string,
    created: string,
    publicKey: Uint8Array,
    privateKey: Uint8Array | undefined,
    encrypted: EncryptedPrivateKey | undefined,
  ) {
    this.file = file;
    this.kind = 'x25519';
    this.purpose = purpose;
    this.created = created;
    this.publicKey = publicKey;
    this.#privateKey = privateKey;
    this.#encrypted = encrypted;
  }

  get encrypted(): boolean {
    return this.#encrypted !== undefined;
  }

  /** Parses and validates every field; any problem is ERR_KEYSTORE_CORRUPT naming `file`. */
  static parse(data: string | Uint8Array, file: string): KeyFile {
    const corrupt = (what: string, cause?: unknown): EnrollError =>
      new EnrollError('ERR_KEYSTORE_CORRUPT', `key file ${file}: ${what}`, {
        cause,
        hint: 'restore the file from a backup, or re-create the key with init --force',
      });
    let text: string;
    if (typeof data === 'string') text = data;
    else {
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(data);
      } catch (cause) {
        throw corrupt('not valid UTF-8', cause);
      }
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (cause) {
      throw corrupt('not valid JSON', cause);
    }
    if (!isPlainObject(json)) throw corrupt('not a JSON object');
    for (const k of Object.keys(json)) {
      if (!TOP_FIELDS.has(k)) throw corrupt(`unknown field "${k.slice(0, 40)}"`);
    }
    if (!(KEYFILE_MAGIC in json)) throw corrupt(`no "${KEYFILE_MAGIC}" field: not an ockam-enroll key file`);
    if (json[KEYFILE_MAGIC] !== KEYFILE_VERSION) {
      throw corrupt(`unsupported "${KEYFILE_MAGIC}" version (this build reads ${KEYFILE_VERSION})`);
    }
    if (json.kind !== 'x25519') throw corrupt('"kind" must be "x25519"');
    if (typeof json.purpose !== 'string' || !PURPOSE_RE.test(json.purpose)) {
      throw corrupt(`"purpose" must match ${PURPOSE_RE.source}`);
    }
    if (typeof json.created !== 'string' || !ISO_RE.test(json.created) || Number.isNaN(Date.parse(json.created))) {
      throw corrupt('"created" must be an ISO-8601 date-time');
    }
    if (typeof json.public_key !== 'string' || !HEX32_RE.test(json.public_key)) {
      throw corrupt('"public_key" must be 64 lowercase hex digits');
    }
    const publicKey = new Uint8Array(Buffer.from(json.public_key, 'hex'));
    const hasPrivate = 'private_key' in json;
    const hasEncrypted = 'encrypted' in json;
    if (hasPrivate === hasEncrypted) throw corrupt('needs exactly one of "private_key" and "encrypted"');

    if (hasPrivate) {
      if (typeof json.private_key !== 'string' || !HEX32_RE.test(json.private_key)) {
        throw corrupt('"private_key" must be 64 lowercase hex digits');
      }
      const privateKey = new Uint8Array(Buffer.from(json.private_key, 'hex'));
      return new KeyFile(file, json.purpose, json.created, publicKey, privateKey, undefined);
    }

    const enc = json.encrypted;
    if (!isPlainObject(enc)) throw corrupt('"encrypted" must be an object');
    for (const k of Object.keys(enc)) {
      if (!ENC_FIELDS.has(k)) throw corrupt(`unknown field "encrypted.${k.slice(0, 40)}"`);
    }
    if (enc.kdf !== 'scrypt') throw corrupt('"encrypted.kdf" must be "scrypt"');
    const bad = checkScryptParams(enc.N, enc.r, enc.p, 'encrypted.');
    if (bad !== undefined) throw corrupt(bad);
    const b64 = (name: string, length: number): Uint8Array => {
      const v = enc[name];
      // Canonical standard base64 only: decode, then require the re-encoding to match.
      if (typeof v === 'string' && v.length <= 4 * Math.ceil(length / 3)) {
        const b = Buffer.from(v, 'base64');
        if (b.length === length && b.toString('base64') === v) return new Uint8Array(b);
      }
      throw corrupt(`"encrypted.${name}" must be ${length} bytes of base64`);
    };
    const encrypted: EncryptedPrivateKey = {
      N: enc.N as number,
      r: enc.r as number,
      p: enc.p as number,
      salt: b64('salt', SCRYPT_SALT_LEN),
      nonce: b64('nonce', GCM_NONCE_LEN),
      ciphertext: b64('ciphertext', X25519_KEY_LEN + GCM_TAG_LEN),
    };
    return new KeyFile(file, json.purpose, json.created, publicKey, undefined, encrypted);
  }

  /**
   * Returns the key pair. An encrypted file needs `passphrase` (ERR_PASSPHRASE if it is
   * missing, or wrong, or the encrypted fields or AAD were modified); a clear file ignores
   * it. The private key must yield the public key, else ERR_KEYSTORE_CORRUPT.
   */
  async unlock(passphrase?: string): Promise<KeyPair> {
    let privateKey: Uint8Array;
    const enc = this.#encrypted;
    if (enc === undefined) {
      privateKey = new Uint8Array(this.#privateKey!);
    } else {
      if (passphrase === undefined) {
        throw new EnrollError('ERR_PASSPHRASE', `key file ${this.file} is encrypted and no passphrase was given`, {
          hint: 'set OCKAM_ENROLL_PASSPHRASE or use --passphrase-file',
        });
      }
      const key = await deriveKeyFileKey(passphrase, enc.salt, enc);
      try {
        privateKey = aesGcmDecrypt(key, enc.nonce, enc.ciphertext, keyFileAad(this.kind, this.purpose, toHex(this.publicKey)));
      } catch (cause) {
        throw new EnrollError('ERR_PASSPHRASE', `wrong passphrase for ${this.file}`, {
          cause,
          hint: 'check the passphrase; if it is right, the key file was modified',
        });
      } finally {
        wipe(key);
      }
    }
    let kp: KeyPair;
    try {
      kp = keyPairFromPrivate(privateKey);
    } catch (cause) {
      wipe(privateKey);
      throw new EnrollError('ERR_KEYSTORE_CORRUPT', `key file ${this.file}: the private key cannot be imported`, { cause });
    }
    if (!equalBytes(kp.publicKey, this.publicKey)) {
      kp.wipe();
      throw new EnrollError(
        'ERR_KEYSTORE_CORRUPT',
        `key file ${this.file}: the private key does not match "public_key"`,
        { hint: 'restore the file from a backup, or re-create the key with init --force' },
      );
    }
    return kp;
  }

  toJSON(): { file: string; kind: KeyKind; purpose: string; created: string; publicKey: string; encrypted: boolean } {
    return {
      file: this.file,
      kind: this.kind,
      purpose: this.purpose,
      created: this.created,
      publicKey: toHex(this.publicKey),
      encrypted: this.encrypted,
    };
  }

  toString(): string {
    return `KeyFile(${this.file}, ${this.purpose}, ${toHex(this.publicKey)}${this.encrypted ? ', encrypted' : ''})`;
  }

  [inspectSymbol](): string {
    return this.toString();
  }
}
