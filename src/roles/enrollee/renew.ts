/**
 * `enrollee renew`: a new certificate for a token-enrolled identity through EST
 * simplereenroll (RFC 7030 §4.2.2), authenticated by the current certificate as the TLS
 * client certificate. A new key is made each time (rekeying on renewal keeps a key's life
 * as short as its certificate's). The service keeps the previous certificate valid until its
 * own expiry; revoking the identity revokes every certificate it holds.
 */
import { EnrollError } from '../../errors.js';
import type { Attributes } from '../../protocol/codec/attributes.js';
import type { PassphraseSource } from '../../keystore/passphrase.js';
import { parseIssuer } from '../../protocol/token/claims.js';
import { CT_PKCS10, EST_SIMPLEREENROLL } from '../../protocol/token/est.js';
import { parseCertificate } from '../../x509/ca.js';
import { createCsr } from '../../x509/csr.js';
import { exportPrivateKeyPem, generateKeyPair, type KeyType } from '../../x509/keys.js';
import { encodeBase64Body } from '../../x509/pkcs7.js';
import { x509 } from '../../x509/provider.js';
import { httpsRequest, serviceError, type HttpsTarget } from './est-client.js';
import { EnrolleeTls, type TlsPaths } from './tls-files.js';
import { checkIssued } from './token-join.js';

export interface RenewOptions {
  /** Key type of the new key; default: the current key's. */
  keyType?: KeyType;
  /** Reads an encrypted key, and encrypts the new one (as every key: when a source is given). */
  passphrase?: PassphraseSource;
  now: () => number;
  timeoutMs?: number;
}

export interface RenewResult {
  id: string;
  name: string;
  service: string;
  serial: string;
  previousSerial: string;
  notAfter: number;
  /** What the new certificate's attributes extension says; {} for none. */
  attributes: Attributes;
  keyType: KeyType;
  paths: TlsPaths;
}

export async function renewCertificate(home: string, opts: RenewOptions): Promise<RenewResult> {
  const tls = await EnrolleeTls.open(home, opts.passphrase ? { passphrase: opts.passphrase } : {});
  const cur = await tls.current();
  const ca = parseCertificate(cur.caDer, tls.paths.ca, 'ERR_KEYSTORE_CORRUPT');
  const cert = parseCertificate(cur.certDer, tls.paths.cert, 'ERR_KEYSTORE_CORRUPT');
  const now = opts.now();
  if (cert.notAfter.getTime() / 1000 <= now) {
    throw new EnrollError('ERR_CERT_REVOKED', `the certificate in ${tls.paths.cert} expired at ${cert.notAfter.toISOString()}`, {
      hint: 'an expired certificate cannot renew itself: ask the enroller for a new token and join again with --force',
    });
  }
  const iss = parseIssuer(cur.record.service);
  const target: HttpsTarget = { host: iss.host, port: iss.port, url: iss.url };
  const keyType = opts.keyType ?? cur.key.keyType;
  const keys = await generateKeyPair(keyType);
  await tls.savePendingKey(await exportPrivateKeyPem(keys.privateKey));
  let issued;
  try {
    const csr = await createCsr({ keys, keyType, name: cur.record.name, idHex: cur.record.id });
    const res = await httpsRequest(target, {
      method: 'POST',
      path: EST_SIMPLEREENROLL,
      trust: { ca: x509.PemConverter.encode(cur.caDer, 'CERTIFICATE') },
      client: { cert: cur.certPem, key: cur.key.keyObject },
      headers: { 'Content-Type': CT_PKCS10, 'Content-Transfer-Encoding': 'base64' },
      body: encodeBase64Body(csr),
      timeoutMs: opts.timeoutMs ?? 15_000,
    });
    if (res.status !== 200) throw serviceError(res, 'the renewal');
    issued = await checkIssued(res, { ca, id: cur.record.id, name: cur.record.name, publicKey: keys.publicKey, now: opts.now() });
  } catch (err) {
    tls.dropPendingKey();
    throw err;
  }
  const paths = tls.commit(issued.der, cur.caDer, {
    ...cur.record,
    serial: issued.serial,
    not_after: issued.notAfter,
    key_type: keyType,
    renewed_at: opts.now(),
  });
  return {
    id: cur.record.id,
    name: cur.record.name,
    service: iss.url,
    serial: issued.serial,
    previousSerial: cur.record.serial,
    notAfter: issued.notAfter,
    attributes: issued.attributes,
    keyType,
    paths,
  };
}
