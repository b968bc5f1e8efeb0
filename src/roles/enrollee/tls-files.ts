/**
 * What token enrollment keeps in the enrollee's home (`<home>/enrollee/`), all PEM so that
 * curl, openssl and any TLS stack can use them as they are:
 * - `tls-key.pem`          the private key, PKCS#8 (0600): encrypted (`ENCRYPTED PRIVATE KEY`,
 *                          scrypt and AES-256-CBC, x509/encrypted-key.ts) under the passphrase
 *                          when a passphrase source is given, as every other key; else plain;
 * - `tls-cert.pem`         the certificate the service's CA issued;
 * - `tls-ca.pem`           the service's root CA (trust anchor for the service, and for peers);
 * - `tls-identity.json`    the identity id and name, the service's HTTPS URL and CA
 *                          fingerprint, the certificate's serial and expiry;
 * - `tls-key.pending.pem`  a new key while its certificate is being requested (0600).
 *
 * A new key is saved as pending before its CSR leaves, and becomes `tls-key.pem` only once
 * its certificate is on disk, so a crash or a refusal never leaves a certificate without its
 * key, and never loses the key of a certificate the service already issued: `open` finishes
 * an interrupted swap (the pending key matches the stored certificate).
 */
import { createPrivateKey, createPublicKey, X509Certificate as NodeX509 } from 'node:crypto';
import { EnrollError } from '../../errors.js';
import { Keystore } from '../../keystore/keystore.js';
import type { PassphraseSource } from '../../keystore/passphrase.js';
import { encryptPrivateKeyPem, isEncryptedPem, readPrivateKeyPem } from '../../x509/encrypted-key.js';
import { importPrivateKey, type LoadedKeyPair } from '../../x509/keys.js';
import { x509 } from '../../x509/provider.js';

export const TLS_KEY_FILE = 'tls-key.pem';
export const TLS_PENDING_KEY_FILE = 'tls-key.pending.pem';
export const TLS_CERT_FILE = 'tls-cert.pem';
export const TLS_CA_FILE = 'tls-ca.pem';
export const TLS_IDENTITY_FILE = 'tls-identity.json';

export interface TlsIdentity {
  version: 1;
  id: string;
  name: string;
  service: string;
  ca_fingerprint: string;
  serial: string;
  not_after: number;
  key_type: string;
  enrolled_at: number;
  renewed_at?: number;
}

export interface TlsPaths {
  key: string;
  cert: string;
  ca: string;
  identity: string;
}

export function certPem(der: Uint8Array): string {
  return x509.PemConverter.encode(der, 'CERTIFICATE');
}

function spkiOfCertPem(pem: string): Buffer {
  return createPublicKey(new NodeX509(pem).publicKey).export({ type: 'spki', format: 'der' });
}



export class EnrolleeTls {
  readonly keystore: Keystore;

  private constructor(keystore: Keystore) {
    this.keystore = keystore;
  }

  /**
   * Opens `<home>/enrollee/` (created 0700 if needed; `enrollee init` is not required) and
   * finishes an interrupted key swap. With a passphrase source, new keys are saved encrypted,
   * and encrypted ones are read with it.
   */
  static async open(home: string, opts: { passphrase?: PassphraseSource } = {}): Promise<EnrolleeTls> {
    const t = new EnrolleeTls(Keystore.open(home, 'enrollee', opts.passphrase ? { passphrase: opts.passphrase } : {}));
    await t.#recover();
    return t;
  }

  /** The private key in `pem` (plain or encrypted; the passphrase is asked only for an encrypted one). */
  async #readKey(pem: string, name: string): Promise<ReturnType<typeof readPrivateKeyPem>> {
    const passphrase = isEncryptedPem(pem) ? await this.keystore.passphraseFor(name) : undefined;
    return readPrivateKeyPem(pem, this.keystore.path(name), passphrase);
  }

  get paths(): TlsPaths {
    return {
      key: this.keystore.path(TLS_KEY_FILE),
      cert: this.keystore.path(TLS_CERT_FILE),
      ca: this.keystore.path(TLS_CA_FILE),
      identity: this.keystore.path(TLS_IDENTITY_FILE),
    };
  }

  async #recover(): Promise<void> {
    const pending = this.keystore.readBytes(TLS_PENDING_KEY_FILE, { secret: true });
    const cert = this.keystore.readBytes(TLS_CERT_FILE);
    if (!pending || !cert) return;
    try {
      // An encrypted pending key needs the passphrase; without one it waits for a run that has it.
      const key = await this.#readKey(Buffer.from(pending).toString('utf8'), TLS_PENDING_KEY_FILE);
      if (createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(spkiOfCertPem(Buffer.from(cert).toString('utf8')))) {
        this.keystore.writeBytes(TLS_KEY_FILE, pending, { secret: true, overwrite: true });
        this.keystore.remove(TLS_PENDING_KEY_FILE);
      }
    } catch {
      // An unreadable pending key is simply replaced by the next attempt.
    }
  }

  identity(): TlsIdentity | undefined {
    const j = this.keystore.readJson<TlsIdentity>(TLS_IDENTITY_FILE);
    if (j === undefined) return undefined;
    if (typeof j !== 'object' || j === null || j.version !== 1 || typeof j.id !== 'string' || typeof j.service !== 'string' || typeof j.name !== 'string') {
      throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${this.paths.identity} is not a token enrollment record`);
    }
    return j;
  }

  /** True when a certificate from token enrollment is stored. */
  enrolled(): boolean {
    return this.keystore.hasKey(TLS_CERT_FILE) && this.keystore.hasKey(TLS_KEY_FILE);
  }

  /**
   * Saves a new key (PKCS#8 PEM) as pending: encrypted under the passphrase when a source
   * was given (a prompt asks twice), else as it is. Either way 0600, written atomically.
   */
  async savePendingKey(pem: string): Promise<void> {
    let out = pem;
    if (this.keystore.hasPassphraseSource) {
      const passphrase = await this.keystore.passphraseFor(TLS_KEY_FILE, { confirm: true });
      if (passphrase === undefined) throw new EnrollError('ERR_PASSPHRASE', `encrypting ${this.paths.key} needs a passphrase`, { hint: 'set OCKAM_ENROLL_PASSPHRASE or use --passphrase-file' });
      out = await encryptPrivateKeyPem(createPrivateKey(pem), passphrase);
    }
    this.keystore.writeBytes(TLS_PENDING_KEY_FILE, out, { secret: true, overwrite: true });
  }


  dropPendingKey(): void {
    this.keystore.remove(TLS_PENDING_KEY_FILE);
  }

  /** Stores a newly issued certificate with its pending key, the CA and the record (see the file comment for the order). */
  commit(certDer: Uint8Array, caDer: Uint8Array, record: TlsIdentity): TlsPaths {
    const pending = this.keystore.readBytes(TLS_PENDING_KEY_FILE, { secret: true });
    if (!pending) throw new EnrollError('ERR_KEY_MISSING', `${this.keystore.path(TLS_PENDING_KEY_FILE)} vanished before its certificate arrived`);
    this.keystore.writeBytes(TLS_CA_FILE, certPem(caDer), { overwrite: true });
    this.keystore.writeBytes(TLS_CERT_FILE, certPem(certDer), { overwrite: true });
    this.keystore.writeBytes(TLS_KEY_FILE, pending, { secret: true, overwrite: true });
    this.keystore.remove(TLS_PENDING_KEY_FILE);
    this.keystore.writeJson(TLS_IDENTITY_FILE, record, { overwrite: true });
    return this.paths;
  }

  /** The current key (0600 checked; decrypted with the passphrase if encrypted), certificate and CA, for renewal. */
  async current(): Promise<{ key: LoadedKeyPair; certPem: string; certDer: Uint8Array; caDer: Uint8Array; record: TlsIdentity }> {
    const record = this.identity();
    const keyBytes = this.keystore.readBytes(TLS_KEY_FILE, { secret: true });
    const cert = this.keystore.readBytes(TLS_CERT_FILE);
    const ca = this.keystore.readBytes(TLS_CA_FILE, { trust: true });
    if (!record || !keyBytes || !cert || !ca) {
      throw new EnrollError('ERR_KEY_MISSING', `no certificate from token enrollment in ${this.keystore.dir}`, {
        hint: 'enroll first: ockam-enroll enrollee join --token <token>',
      });
    }
    const keyObject = await this.#readKey(Buffer.from(keyBytes).toString('utf8'), TLS_KEY_FILE);
    const der = keyObject.export({ type: 'pkcs8', format: 'der' });
    let key: LoadedKeyPair;
    try {
      key = await importPrivateKey(new Uint8Array(der.buffer, der.byteOffset, der.length), this.paths.key);
    } finally {
      der.fill(0);
    }
    const certText = Buffer.from(cert).toString('utf8');
    return { key, certPem: certText, certDer: pemToDer(certText, this.paths.cert), caDer: pemToDer(Buffer.from(ca).toString('utf8'), this.paths.ca), record };
  }
}

function pemToDer(pem: string, file: string): Uint8Array {
  const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${file} is not a PEM certificate`);
  return new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}
