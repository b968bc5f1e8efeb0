/**
 * Writes test/vectors/credential-v2.json: known answers for the credential v2 encoding
 * (src/protocol/credential-v2.ts, docs/protocol.md §4.6) and the attribute list (§4.6.1).
 *
 * Run with `npm run vectors`. Every input is fixed (keys as SHA-256 of labels, XEdDSA's Z
 * too), and Ed25519 is deterministic (RFC 8032 §5.1.6), so re-running reproduces the file
 * byte for byte; test/protocol/credential-v2.test.ts checks that, and checks both signatures
 * with @noble/curves, independently of the code that made them.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { concat, toHex, utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { x25519PublicKey } from '../../src/crypto/x25519.js';
import { xeddsaSigner } from '../../src/crypto/xeddsa.js';
import { encodeAttributes } from '../../src/protocol/codec/attributes.js';
import { certifyCsk, cskFromSeed, encodeCredentialV2, signCredentialV2 } from '../../src/protocol/credential-v2.js';
import { credentialToText } from '../../src/protocol/credential.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { isMain } from '../helpers/is-main.js';

export const VECTOR_FILE = join(REPO_ROOT, 'test', 'vectors', 'credential-v2.json');

const label = (s: string) => sha256(utf8(`ockam-enroll/v2/credential-kat/${s}`));

export function makeVectors() {
  const ikA = label('ik_a');
  const ikAPub = x25519PublicKey(ikA);
  const cskSeed = label('csk_seed');
  const csk = cskFromSeed(cskSeed);
  const z = concat(label('csk_sig_z/0'), label('csk_sig_z/1'));
  const cert = certifyCsk(ikAPub, csk.publicKey, xeddsaSigner(ikA), z);
  const cases: { name: string; petName: string; attributes: Record<string, string> }[] = [
    { name: 'no pet name, no attribute', petName: '', attributes: {} },
    { name: 'pet name and two attributes', petName: 'Sensor Berlin 1', attributes: { site: 'berlin', role: 'sensor' } },
    { name: 'UTF-8 value', petName: 'Capteur', attributes: { room: 'Salle des fêtes', zone: '東京' } },
  ];
  return {
    about: 'credential v2 (docs/protocol.md §4.6): inputs and the expected encoding; made by test/vectors/generate-credential-v2.ts',
    ik_a: toHex(ikA),
    ik_a_pub: toHex(ikAPub),
    csk_seed: toHex(cskSeed),
    csk_pub: toHex(csk.publicKey),
    csk_sig_z: toHex(z),
    csk_sig: toHex(cert.cskSig),
    enrollee_id: toHex(label('enrollee_id')),
    ik_b: toHex(label('ik_b_pub')),
    issued_at: 1893456000,
    expires_at: 1893456000 + 365 * 86400,
    cases: cases.map((c) => {
      const fields = { issuer: ikAPub, enrolleeId: label('enrollee_id'), ikB: label('ik_b_pub'), petName: c.petName, issuedAt: 1893456000, expiresAt: 1893456000 + 365 * 86400, attributes: c.attributes };
      const cred = signCredentialV2(fields, cert, csk.privateKey);
      return { name: c.name, pet_name: c.petName, attributes: c.attributes, attributes_encoded: toHex(encodeAttributes(c.attributes)), credential: toHex(encodeCredentialV2(cred)), text: credentialToText(cred) };
    }),
  };
}

if (isMain(import.meta.url)) {
  writeFileSync(VECTOR_FILE, `${JSON.stringify(makeVectors(), null, 2)}\n`);
  process.stdout.write(`wrote ${VECTOR_FILE}\n`);
}
