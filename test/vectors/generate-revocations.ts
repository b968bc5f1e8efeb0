/**
 * Writes test/vectors/revocations.json: known answers for the signed revocation list
 * (src/protocol/revocations.ts, docs/protocol.md §4.7), valid ones and ones a verifier must
 * refuse, each with its `expect` (the error code, or "valid").
 *
 * Run with `npm run vectors`. Every input is fixed (keys as SHA-256 of labels, XEdDSA's Z
 * too), so re-running reproduces the file byte for byte; test/protocol/revocations.test.ts
 * checks that, the layout by offset, and every case's verdict.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { concat, toHex, utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { x25519PublicKey } from '../../src/crypto/x25519.js';
import { xeddsaSigner } from '../../src/crypto/xeddsa.js';
import { signRevocationList, type RevokedEntry } from '../../src/protocol/revocations.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { isMain } from '../helpers/is-main.js';

export const VECTOR_FILE = join(REPO_ROOT, 'test', 'vectors', 'revocations.json');

const label = (s: string) => sha256(utf8(`ockam-enroll/v1/revocations-kat/${s}`));
const ISSUED_AT = 1893456000;
/** The verifier's clock in every case, unless the case says otherwise. */
const NOW = ISSUED_AT + 600;

export function makeVectors() {
  const ikA = label('ik_a');
  const ikAPub = x25519PublicKey(ikA);
  const other = label('other_ik_a');
  const z = (i: number) => concat(label(`z/${i}/0`), label(`z/${i}/1`));
  const ids = [label('enrollee/0'), label('enrollee/1'), label('enrollee/2')];
  const entries: RevokedEntry[] = ids.map((enrolleeId, i) => ({ enrolleeId, revokedAt: ISSUED_AT - 3600 * (i + 1) }));
  let n = 0;
  const sign = (key: Uint8Array, fields: { issuedAt?: number; nextUpdate?: number; entries?: RevokedEntry[]; issuer?: Uint8Array }) =>
    signRevocationList(
      { issuer: fields.issuer ?? x25519PublicKey(key), issuedAt: fields.issuedAt ?? ISSUED_AT, nextUpdate: fields.nextUpdate ?? ISSUED_AT + 3600, entries: fields.entries ?? entries },
      xeddsaSigner(key),
      z(n++),
    );
  const good = sign(ikA, {});
  const flipped = Uint8Array.from(good);
  flipped[1 + 32 + 8 + 8 + 4 + 5]! ^= 0x01; // a byte of the first enrollee id
  const cases = [
    { name: 'empty list', expect: 'valid', list: sign(ikA, { entries: [] }) },
    { name: 'three revoked enrollees, sorted by id on encoding', expect: 'valid', list: good },
    { name: 'an enrollee id altered after signing', expect: 'ERR_REVOCATIONS_SIGNATURE', list: flipped },
    { name: 'signed by another service key', expect: 'ERR_REVOCATIONS_ISSUER', list: sign(other, {}) },
    { name: 'names IK_A as issuer but signed by another key', expect: 'ERR_REVOCATIONS_SIGNATURE', list: sign(other, { issuer: ikAPub }) },
    { name: 'stale: next_update has passed', expect: 'ERR_REVOCATIONS_STALE', list: sign(ikA, { issuedAt: ISSUED_AT - 7200, nextUpdate: ISSUED_AT }) },
    { name: 'issued more than 300 s in the future', expect: 'ERR_REVOCATIONS_STALE', list: sign(ikA, { issuedAt: NOW + 301, nextUpdate: NOW + 3900 }) },
    { name: 'trailing byte', expect: 'ERR_REVOCATIONS_MALFORMED', list: concat(good, Uint8Array.of(0)) },
    { name: 'truncated signature', expect: 'ERR_REVOCATIONS_MALFORMED', list: good.subarray(0, good.length - 1) },
    { name: 'version 2', expect: 'ERR_REVOCATIONS_MALFORMED', list: concat(Uint8Array.of(2), good.subarray(1)) },
  ];
  return {
    about: 'signed revocation list v1 (docs/protocol.md §4.7); made by test/vectors/generate-revocations.ts',
    ik_a: toHex(ikA),
    ik_a_pub: toHex(ikAPub),
    now: NOW,
    entries: entries.map((e) => ({ enrollee_id: toHex(e.enrolleeId), revoked_at: e.revokedAt })),
    cases: cases.map((c) => ({ name: c.name, expect: c.expect, list: toHex(c.list) })),
  };
}

if (isMain(import.meta.url)) {
  writeFileSync(VECTOR_FILE, `${JSON.stringify(makeVectors(), null, 2)}\n`);
  process.stdout.write(`wrote ${VECTOR_FILE}\n`);
}
