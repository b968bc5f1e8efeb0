/**
 * The service's X.509 material for token enrollment, kept in its keystore (`<home>/service/`):
 * - `ca.cert.pem`        the root CA certificate (P-256, 10 years), public;
 * - `ca.key.sealed`      the CA's private key (PKCS#8), sealed (0600);
 * - `https.cert.pem`     the HTTPS server certificate, signed by the CA, public;
 * - `https.key.sealed`   the HTTPS server's private key (PKCS#8), sealed (0600). It is also
 *                        the key that signs enrollment tokens.
 *
 * Both private keys are sealed with AES-256-GCM under the store key (store/sealing.ts), which
 * is derived from IK_A: a passphrase on ik_a.key protects them too, and the AAD binds each
 * key to the SHA-256 of its own certificate, so a key file cannot be swapped for another.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { EnrollError } from '../../errors.js';
import type { Keystore } from '../../keystore/keystore.js';
import type { TokenAlg } from '../../protocol/token/claims.js';
import type { Sealer } from '../../store/sealing.js';
import {
  createRootCa,
  DEFAULT_CA_DAYS,
  fingerprint,
  issueServerCertificate,
  parseCertificate,
  type X509Certificate,
} from '../../x509/ca.js';
import { generateKeyPair, importPrivateKey, jwsAlgorithm, subtleExportPkcs8, type CryptoKey, type LoadedKeyPair } from '../../x509/keys.js';
import { x509 } from '../../x509/provider.js';
import { INIT_FORCE_DESTROYS } from './https-announce.js';
import { clientCertTemplate, type ClientCertTemplate } from '../../x509/cert-template.js';
import type { PoolPki } from '../../pool/worker.js';

export const CA_CERT_FILE = 'ca.cert.pem';
export const CA_KEY_FILE = 'ca.key.sealed';
export const HTTPS_CERT_FILE = 'https.cert.pem';
export const HTTPS_KEY_FILE = 'https.key.sealed';

export interface ServicePki {
  ca: X509Certificate;
  caDer: Uint8Array;
  caPem: string;
  /** SHA-256 of the CA certificate's DER, hex: the tokens' ca_fp. */
  caFingerprint: string;
  caKey: CryptoKey;
  https: X509Certificate;
  httpsDer: Uint8Array;
  httpsPem: string;
  httpsKey: LoadedKeyPair;
  /** The JWS algorithm of the HTTPS key, which signs tokens. */
  tokenAlg: TokenAlg;
  /** The HTTPS key's public half, derived once: it verifies every token (issue 23). */
  httpsPublicKey: KeyObject;
  /** The CA's parts of every client certificate, made once (x509/cert-template.ts). */
  clientTemplate: ClientCertTemplate;
}

function certAad(der: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(der).digest());
}

function toPem(der: Uint8Array): string {
  return x509.PemConverter.encode(der, 'CERTIFICATE');
}

/** True when the home has all four files (a home made before token enrollment has none). */
export function hasServicePki(keystore: Keystore): boolean {
  return [CA_CERT_FILE, CA_KEY_FILE, HTTPS_CERT_FILE, HTTPS_KEY_FILE].every((f) => keystore.hasKey(f));
}

/**
 * `service init`: a new root CA and HTTPS server certificate for `httpsHost`, written to the
 * keystore. Existing files are replaced only with `force` (a new CA invalidates every
 * certificate the old one issued).
 */
export async function createServicePki(
  keystore: Keystore,
  sealer: Sealer,
  opts: { httpsHost: string; now: number; force?: boolean },
): Promise<ServicePki> {
  const caKeys = await generateKeyPair('p256');
  const caDer = await createRootCa({ keys: caKeys, now: opts.now, days: DEFAULT_CA_DAYS });
  const ca = parseCertificate(caDer, 'the new CA certificate', 'ERR_INTERNAL');
  const httpsKeys = await generateKeyPair('p256');
  const httpsDer = await issueServerCertificate({ ca, caKey: caKeys.privateKey, publicKey: httpsKeys.publicKey, hosts: [opts.httpsHost], now: opts.now });
  const overwrite = opts.force ?? false;
  const caPkcs8 = await subtleExportPkcs8(caKeys.privateKey);
  const httpsPkcs8 = await subtleExportPkcs8(httpsKeys.privateKey);
  try {
    // Keys first: a crash leaves keys without certificates, which hasServicePki reports as absent.
    keystore.writeBytes(CA_KEY_FILE, sealer.seal(caPkcs8, 'ca-key', certAad(caDer)), { secret: true, overwrite });
    keystore.writeBytes(HTTPS_KEY_FILE, sealer.seal(httpsPkcs8, 'https-key', certAad(httpsDer)), { secret: true, overwrite });
  } finally {
    caPkcs8.fill(0);
    httpsPkcs8.fill(0);
  }
  keystore.writeBytes(CA_CERT_FILE, toPem(caDer), { overwrite });
  keystore.writeBytes(HTTPS_CERT_FILE, toPem(httpsDer), { overwrite });
  const pki = await loadServicePki(keystore, sealer);
  if (!pki) throw new EnrollError('ERR_INTERNAL', 'the new CA files could not be read back');
  return pki;
}

function readCertFile(keystore: Keystore, name: string): Uint8Array {
  const bytes = keystore.readBytes(name);
  if (!bytes) throw new EnrollError('ERR_KEY_MISSING', `${keystore.path(name)} is missing`, { hint: `restore it from a backup of the home; \`ockam-enroll service init --force\` makes a new CA, but ${INIT_FORCE_DESTROYS}` });
  const text = Buffer.from(bytes).toString('utf8');
  const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(text);
  if (!m) throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${keystore.path(name)} is not a PEM certificate`);
  return new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}

async function openKey(keystore: Keystore, sealer: Sealer, name: string, purpose: string, certDer: Uint8Array): Promise<LoadedKeyPair> {
  const sealed = keystore.readBytes(name, { secret: true });
  if (!sealed) throw new EnrollError('ERR_KEY_MISSING', `${keystore.path(name)} is missing`);
  const pkcs8 = sealer.open(sealed, purpose, certAad(certDer));
  try {
    return await importPrivateKey(pkcs8, keystore.path(name));
  } finally {
    pkcs8.fill(0);
  }
}

/** Loads the CA and HTTPS material, or undefined if this home has none (made before token enrollment). */
export async function loadServicePki(keystore: Keystore, sealer: Sealer): Promise<ServicePki | undefined> {
  if (!hasServicePki(keystore)) return undefined;
  const caDer = readCertFile(keystore, CA_CERT_FILE);
  const httpsDer = readCertFile(keystore, HTTPS_CERT_FILE);
  const ca = parseCertificate(caDer, keystore.path(CA_CERT_FILE), 'ERR_KEYSTORE_CORRUPT');
  const https = parseCertificate(httpsDer, keystore.path(HTTPS_CERT_FILE), 'ERR_KEYSTORE_CORRUPT');
  const caKey = await openKey(keystore, sealer, CA_KEY_FILE, 'ca-key', caDer);
  const httpsKey = await openKey(keystore, sealer, HTTPS_KEY_FILE, 'https-key', httpsDer);
  return {
    ca,
    caDer,
    caPem: toPem(caDer),
    caFingerprint: fingerprint(caDer),
    caKey: caKey.privateKey,
    https,
    httpsDer,
    httpsPem: toPem(httpsDer),
    httpsKey,
    tokenAlg: jwsAlgorithm(httpsKey.keyType),
    httpsPublicKey: createPublicKey(httpsKey.keyObject),
    clientTemplate: clientCertTemplate(caDer, caKey.keyObject),
  };
}

/**
 * What the worker pool is sent for token enrollment (src/pool/worker.ts): the CA key as the
 * keystore holds it, still sealed under the store key (each worker unseals it with the
 * store key it got at start), and public parts. Never the key in the clear in a message.
 */
export function poolPki(keystore: Keystore, pki: ServicePki): PoolPki {
  const caKeySealed = keystore.readBytes(CA_KEY_FILE, { secret: true });
  if (!caKeySealed) throw new EnrollError('ERR_KEY_MISSING', `${keystore.path(CA_KEY_FILE)} is missing`);
  return {
    caDer: pki.caDer,
    caKeySealed,
    httpsSpki: new Uint8Array(pki.httpsPublicKey.export({ type: 'spki', format: 'der' })),
    tokenAlg: pki.tokenAlg,
    caFingerprint: pki.caFingerprint,
  };
}
