/**
 * `enrollee join --token`: enrollment with a one-time token (docs/token-enrollment.md).
 *
 *  1. parse the token without trusting it (claims.ts): iss, sub, name, ca_fp, exp;
 *  2. read the certificate the server at iss presents (no verification yet);
 *  3. verify the token's signature with that certificate's key: the token was made by
 *     whoever holds the key the server presents;
 *  4. GET /.well-known/est/cacerts from the same server; the CA whose SHA-256 equals the
 *     token's ca_fp becomes the only trust anchor, and the server certificate must chain to
 *     it. The token is what the enrollee trusts, so this pins the CA the enroller vouched for;
 *  5. make a key (P-256 or Ed25519) and a CSR naming the identity; POST it with the token to
 *     /.well-known/est/simpleenroll over HTTPS verified against that CA alone;
 *  6. check the certificate (issued by the CA, for this identity, for our key, clientAuth)
 *     and store key, certificate and CA (tls-files.ts).
 */
import type { PassphraseSource } from '../../keystore/passphrase.js';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { EnrollError, isEnrollError } from '../../errors.js';
import { decodeTokenUnverified, parseIssuer } from '../../protocol/token/claims.js';
import { verifyToken } from '../../protocol/token/jwt.js';
import { CT_PKCS10, CT_PKCS7, EST_CACERTS, EST_SIMPLEENROLL } from '../../protocol/token/est.js';
import type { Attributes } from '../../protocol/codec/attributes.js';
import { certificateAttributes } from '../../x509/attributes-ext.js';
import { certificateIdentity, fingerprint, notAfterSeconds, parseCertificate, serialHex, whyNotIssuedBy } from '../../x509/ca.js';
import { createCsr } from '../../x509/csr.js';
import { exportPrivateKeyPem, generateKeyPair, jwsAlgorithm, keyTypeOf, spkiOf, type CryptoKey, type KeyType } from '../../x509/keys.js';
import { decodeBase64Body, decodeCertsOnly, encodeBase64Body, MAX_PKCS7_DER } from '../../x509/pkcs7.js';
import { x509 } from '../../x509/provider.js';
import { fetchServerCertificate, httpsRequest, serviceError, type HttpsTarget } from './est-client.js';
import { EnrolleeTls, type TlsPaths } from './tls-files.js';

/** The enrollee allows this much clock skew on exp; the service, which decides, allows none. */
export const CLIENT_CLOCK_TOLERANCE = 300;

export interface TokenJoinOptions {
  token: string;
  keyType: KeyType;
  /** Replace a certificate from an earlier token enrollment. */
  force?: boolean;
  /** With a source (not `none`), the TLS key is saved encrypted under its passphrase (tls-files.ts). */
  passphrase?: PassphraseSource;
  now: () => number;
  timeoutMs?: number;
  /** Progress lines for stderr. */
  onStep?: (line: string) => void;
}

export interface TokenJoinResult {
  id: string;
  name: string;
  service: string;
  serial: string;
  notAfter: number;
  /** What the certificate's attributes extension says (x509/attributes-ext.ts); {} for none. */
  attributes: Attributes;
  caFingerprint: string;
  keyType: KeyType;
  paths: TlsPaths;
}

/** The issued certificate from a certs-only response, checked against what was asked for. */
export async function checkIssued(
  res: { status: number; mediaType: string; body: Buffer },
  expect: { ca: ReturnType<typeof parseCertificate>; id: string; name: string; publicKey: CryptoKey; now: number },
): Promise<{ der: Uint8Array; serial: string; notAfter: number; attributes: Attributes }> {
  if (res.mediaType !== CT_PKCS7) {
    throw new EnrollError('ERR_HTTP', `the service answered with Content-Type ${JSON.stringify(res.mediaType.slice(0, 60))}, expected ${CT_PKCS7}`);
  }
  const p7 = decodeBase64Body(res.body.toString('latin1'), MAX_PKCS7_DER, 'ERR_HTTP', 'the certificate response');
  const certs = decodeCertsOnly(p7, 'ERR_HTTP', 'the certificate response');
  const ours = await spkiOf(expect.publicKey);
  for (const der of certs) {
    const cert = parseCertificate(der, 'the issued certificate', 'ERR_HTTP');
    const spki = new Uint8Array(cert.publicKey.rawData);
    if (!Buffer.from(spki).equals(Buffer.from(ours))) continue;
    const why = await whyNotIssuedBy(cert, expect.ca, expect.now);
    if (why) throw new EnrollError('ERR_CA_MISMATCH', `the issued certificate is refused: ${why}`);
    const named = certificateIdentity(cert);
    if (!named || named.idHex !== expect.id || named.name !== expect.name) {
      throw new EnrollError('ERR_CSR_IDENTITY', 'the issued certificate names another identity than the token');
    }
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
    if (!eku || !eku.usages.includes(x509.ExtendedKeyUsage.clientAuth)) throw new EnrollError('ERR_HTTP', 'the issued certificate lacks the clientAuth extended key usage');
    return { der, serial: serialHex(cert), notAfter: notAfterSeconds(cert), attributes: certificateAttributes(der, 'ERR_HTTP') };
  }
  throw new EnrollError('ERR_HTTP', 'the service returned no certificate for this key');
}

/**
 * Why the key at the token's address does not verify the token: most often the address
 * reaches another server than the service that made the token (another service, or any
 * process holding that port), which the CA that server serves tells apart from a token that
 * was altered. The CA fetched here decides nothing but the message: the token is refused
 * either way.
 */
async function signatureFailure(target: HttpsTarget, leafDer: Uint8Array, caFp: string, timeoutMs: number | undefined, cause: EnrollError): Promise<EnrollError> {
  let served: string | undefined;
  try {
    const res = await httpsRequest(target, { method: 'GET', path: EST_CACERTS, trust: { pinnedLeaf: leafDer }, timeoutMs: timeoutMs ?? 15_000 });
    if (res.status === 200 && res.mediaType === CT_PKCS7) {
      const certs = decodeCertsOnly(decodeBase64Body(res.body.toString('latin1'), MAX_PKCS7_DER, 'ERR_HTTP', 'the CA certificates'), 'ERR_HTTP', 'the CA certificates');
      served = certs.some((der) => fingerprint(der) === caFp) ? caFp : certs[0] && fingerprint(certs[0]);
    }
  } catch {
    served = undefined;
  }
  if (served === caFp) {
    return new EnrollError('ERR_TOKEN_SIGNATURE', `the token's signature does not verify with the key of the service at ${target.url}, although that service has the CA the token names`, {
      cause,
      hint: 'the token was altered or made by someone else: ask the enroller for a new token',
    });
  }
  const what = served === undefined ? 'it serves no CA certificates' : `its CA (SHA-256 ${served}) is not the one the token names (${caFp})`;
  return new EnrollError('ERR_TOKEN_SIGNATURE', `the server at ${target.url} is not the service that made this token: the token's signature does not verify with its key, and ${what}`, {
    cause,
    hint: `something else answers at the token's address ${target.url}: check where the service listens for HTTPS (its "https-listening" log line gives the address it listens on and the one its tokens name), or ask the enroller for a new token`,
  });
}

/** A duration in words, roughly: `40 s`, `12 min`, `3 h`, `2 days`. */
function ago(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 2 * 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} days`;
}

export async function joinWithToken(home: string, opts: TokenJoinOptions): Promise<TokenJoinResult> {
  const step = opts.onStep ?? (() => undefined);
  // 1. Parse, and check the home before anything leaves this machine.
  const { claims, alg } = decodeTokenUnverified(opts.token);
  // An expired token is said so here, before anything is sent (#22 finding 9): the service
  // would refuse it anyway, and a device that cannot reach the service would report that
  // instead. The claim is not yet verified, which is fine for a refusal; a token that passes
  // is still checked against the service's key below, and by the service, which decides.
  const now = opts.now();
  if (claims.exp <= now - CLIENT_CLOCK_TOLERANCE) {
    throw new EnrollError('ERR_TOKEN_EXPIRED', `the token expired at ${new Date(claims.exp * 1000).toISOString()} (${ago(now - claims.exp)} ago); nothing was sent to the service`, {
      hint: `ask the enroller for a new token (\`ockam-enroll enroller token create --name "${claims.name}"\`), and use it within its --ttl`,
    });
  }
  const tls = await EnrolleeTls.open(home, opts.passphrase ? { passphrase: opts.passphrase } : {});
  if (tls.enrolled() && !opts.force) {
    const had = tls.identity();
    throw new EnrollError('ERR_KEY_EXISTS', `this home already holds a certificate from token enrollment${had ? ` (identity ${had.name}, ${had.id})` : ''}`, {
      hint: 'renew it with `ockam-enroll enrollee renew`, use another --home, or pass --force to replace it',
    });
  }
  const iss = parseIssuer(claims.iss);
  const target: HttpsTarget = { host: iss.host, port: iss.port, url: iss.url };
  step(`enrolling as ${claims.name} (identity ${claims.sub}) with the service at ${iss.url}`);

  // 2–3. The key the server presents must have signed the token.
  const leafDer = await fetchServerCertificate(target, opts.timeoutMs);
  let leafKey;
  try {
    leafKey = new NodeX509(Buffer.from(leafDer)).publicKey;
  } catch (cause) {
    throw new EnrollError('ERR_CA_MISMATCH', `the service at ${iss.url} presented a certificate that does not parse`, { cause });
  }
  const leafType = keyTypeOf(leafKey);
  try {
    if (!leafType || jwsAlgorithm(leafType) !== alg) {
      throw new EnrollError('ERR_TOKEN_SIGNATURE', `the token is signed with ${alg}, which the key of the certificate at ${iss.url} cannot verify`);
    }
    await verifyToken(opts.token, leafKey, { alg, now: opts.now(), clockTolerance: CLIENT_CLOCK_TOLERANCE });
  } catch (err) {
    if (!isEnrollError(err, 'ERR_TOKEN_SIGNATURE')) throw err;
    throw await signatureFailure(target, leafDer, claims.ca_fp, opts.timeoutMs, err);
  }
  step('the token\'s signature verifies with the service\'s certificate');

  // 4. The CA the token names, fetched from the same server.
  const caRes = await httpsRequest(target, { method: 'GET', path: EST_CACERTS, trust: { pinnedLeaf: leafDer }, timeoutMs: opts.timeoutMs ?? 15_000 });
  if (caRes.status !== 200) throw serviceError(caRes, 'the CA certificates request');
  if (caRes.mediaType !== CT_PKCS7) {
    throw new EnrollError('ERR_HTTP', `the CA certificates came as ${JSON.stringify(caRes.mediaType.slice(0, 60))}, expected ${CT_PKCS7}`);
  }
  const caCerts = decodeCertsOnly(decodeBase64Body(caRes.body.toString('latin1'), MAX_PKCS7_DER, 'ERR_HTTP', 'the CA certificates'), 'ERR_HTTP', 'the CA certificates');
  const caDer = caCerts.find((der) => fingerprint(der) === claims.ca_fp);
  if (!caDer) {
    throw new EnrollError('ERR_CA_MISMATCH', `the service's CA certificate (SHA-256 ${fingerprint(caCerts[0]!)}) is not the one the token names (${claims.ca_fp})`, {
      hint: 'the token was made for another CA: ask the enroller for a new token, and check you reach the right service',
    });
  }
  const ca = parseCertificate(caDer, 'the CA certificate', 'ERR_CA_MISMATCH');
  const leaf = parseCertificate(leafDer, 'the service\'s certificate', 'ERR_CA_MISMATCH');
  const why = await whyNotIssuedBy(leaf, ca, opts.now());
  if (why) throw new EnrollError('ERR_CA_MISMATCH', `the service's HTTPS certificate does not chain to the token's CA: ${why}`);
  step(`trusting the service's CA ${claims.ca_fp}`);

  // 5. Key, CSR, and the one-time request.
  const keys = await generateKeyPair(opts.keyType);
  await tls.savePendingKey(await exportPrivateKeyPem(keys.privateKey));
  let issued;
  try {
    const csr = await createCsr({ keys, keyType: opts.keyType, name: claims.name, idHex: claims.sub });
    const caPem = x509.PemConverter.encode(caDer, 'CERTIFICATE');
    const res = await httpsRequest(target, {
      method: 'POST',
      path: EST_SIMPLEENROLL,
      trust: { ca: caPem },
      headers: { 'Content-Type': CT_PKCS10, 'Content-Transfer-Encoding': 'base64', Authorization: `Bearer ${opts.token.trim()}` },
      body: encodeBase64Body(csr),
      timeoutMs: opts.timeoutMs ?? 15_000,
    });
    if (res.status !== 200) throw serviceError(res, 'the enrollment');
    // 6. Check what came back before keeping it.
    issued = await checkIssued(res, { ca, id: claims.sub, name: claims.name, publicKey: keys.publicKey, now: opts.now() });
  } catch (err) {
    tls.dropPendingKey();
    throw err;
  }
  const paths = tls.commit(issued.der, caDer, {
    version: 1,
    id: claims.sub,
    name: claims.name,
    service: iss.url,
    ca_fingerprint: claims.ca_fp,
    serial: issued.serial,
    not_after: issued.notAfter,
    key_type: opts.keyType,
    enrolled_at: opts.now(),
  });
  return { id: claims.sub, name: claims.name, service: iss.url, serial: issued.serial, notAfter: issued.notAfter, attributes: issued.attributes, caFingerprint: claims.ca_fp, keyType: opts.keyType, paths };
}
