/**
 * The signed revocation list (docs/protocol.md §4.7, src/protocol/revocations.ts): the vector
 * file reproduces byte for byte, the layout by offset, every case's verdict (valid, or its
 * exact error code), canonical order, the length bound checked before any entry is read, and
 * that every single-bit flip of a valid list is refused.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { concat, fromHex, toHex, utf8 } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { xeddsaSigner, xeddsaVerify } from '../../src/crypto/xeddsa.js';
import { EnrollError } from '../../src/errors.js';
import {
  decodeRevocationList,
  findRevoked,
  REVOCATIONS_HEADER_LEN,
  REVOCATIONS_MAX_ENTRIES,
  signRevocationList,
  verifyRevocationList,
} from '../../src/protocol/revocations.js';
import { makeVectors, VECTOR_FILE } from '../vectors/generate-revocations.js';

const file = JSON.parse(readFileSync(VECTOR_FILE, 'utf8')) as ReturnType<typeof makeVectors>;
const ikAPub = fromHex(file.ik_a_pub);

function verdict(hex: string, now = file.now): string {
  try {
    verifyRevocationList(decodeRevocationList(fromHex(hex)), { issuer: ikAPub, now });
    return 'valid';
  } catch (err) {
    assert.ok(err instanceof EnrollError, `only EnrollError: ${String(err)}`);
    return err.code;
  }
}

describe('revocation list v1 (docs/protocol.md §4.7)', () => {
  it('the vector file is what the generator makes', () => {
    assert.deepEqual(makeVectors(), file);
  });

  it('every vector gets exactly its declared verdict', () => {
    for (const c of file.cases) assert.equal(verdict(c.list), c.expect, c.name);
  });

  it('layout by offset; ids sorted; the signature covers the label and every byte before it', () => {
    const c = file.cases.find((x) => x.name.startsWith('three'))!;
    const b = fromHex(c.list);
    assert.equal(b[0], 1);
    assert.equal(toHex(b.subarray(1, 33)), file.ik_a_pub);
    const view = new DataView(b.buffer, b.byteOffset);
    const issuedAt = Number(view.getBigUint64(33));
    const nextUpdate = Number(view.getBigUint64(41));
    assert.equal(nextUpdate - issuedAt, 3600);
    assert.equal(view.getUint32(49), 3);
    assert.equal(b.length, REVOCATIONS_HEADER_LEN + 3 * 40 + 64);
    const ids = [0, 1, 2].map((i) => toHex(b.subarray(53 + 40 * i, 85 + 40 * i)));
    assert.deepEqual(ids, [...file.entries.map((e) => e.enrollee_id)].sort());
    assert.ok(xeddsaVerify(ikAPub, concat(utf8('ockam-enroll/v1/revocations'), b.subarray(0, b.length - 64)), b.subarray(b.length - 64)));
    const list = decodeRevocationList(b);
    for (const e of file.entries) assert.equal(findRevoked(list, fromHex(e.enrollee_id))?.revokedAt, e.revoked_at);
    assert.equal(findRevoked(list, new Uint8Array(32)), undefined);
  });

  it('every single-bit flip of a valid list is refused', () => {
    const b = fromHex(file.cases.find((x) => x.name.startsWith('three'))!.list);
    let refused = 0;
    for (let i = 0; i < b.length * 8; i++) {
      const f = Uint8Array.from(b);
      f[i >> 3]! ^= 1 << (i & 7);
      assert.notEqual(verdict(toHex(f)), 'valid', `bit ${i}`);
      refused++;
    }
    assert.equal(refused, b.length * 8);
  });

  it('out-of-order or repeated ids, a count that does not match the length, and an oversized count are refused before any signature check', () => {
    const k = generateX25519();
    const a = { enrolleeId: new Uint8Array(32).fill(1), revokedAt: 5 };
    const good = signRevocationList({ issuer: k.publicKey, issuedAt: 100, nextUpdate: 200, entries: [a, { enrolleeId: new Uint8Array(32).fill(2), revokedAt: 6 }] }, xeddsaSigner(k.privateKey));
    const swapped = Uint8Array.from(good);
    swapped.set(good.subarray(93, 125), 53);
    swapped.set(good.subarray(53, 85), 93);
    assert.throws(() => decodeRevocationList(swapped), (e: EnrollError) => e.code === 'ERR_REVOCATIONS_MALFORMED' && /strictly ascending/.test(e.message));
    assert.throws(() => signRevocationList({ issuer: k.publicKey, issuedAt: 100, nextUpdate: 200, entries: [a, a] }, xeddsaSigner(k.privateKey)), /listed twice/);
    const count = Uint8Array.from(good);
    new DataView(count.buffer).setUint32(49, 3);
    assert.throws(() => decodeRevocationList(count), (e: EnrollError) => e.code === 'ERR_REVOCATIONS_MALFORMED' && /"count" 3 needs/.test(e.message));
    new DataView(count.buffer).setUint32(49, REVOCATIONS_MAX_ENTRIES + 1);
    assert.throws(() => decodeRevocationList(count), (e: EnrollError) => e.code === 'ERR_REVOCATIONS_MALFORMED' && /at most/.test(e.message));
    // A window that is empty or over 30 days is refused by the codec itself.
    assert.throws(() => signRevocationList({ issuer: k.publicKey, issuedAt: 100, nextUpdate: 100, entries: [] }, xeddsaSigner(k.privateKey)), /after "issuedAt"/);
    assert.throws(() => signRevocationList({ issuer: k.publicKey, issuedAt: 0, nextUpdate: 31 * 86400, entries: [] }, xeddsaSigner(k.privateKey)), /freshness window/);
    // Fresh until next_update, exactly.
    const list = decodeRevocationList(good);
    assert.equal(verifyRevocationList(list, { issuer: k.publicKey, now: 199 }), list);
    assert.throws(() => verifyRevocationList(list, { issuer: k.publicKey, now: 200 }), (e: EnrollError) => e.code === 'ERR_REVOCATIONS_STALE');
  });
});
