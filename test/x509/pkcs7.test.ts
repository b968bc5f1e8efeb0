/**
 * RFC 7030 bodies: certs-only CMS SignedData (RFC 5652 §5.2, degenerate) and the base64
 * transfer encoding of §4.1.3 / §4.2.1.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { ContentInfo, SignedData } from '@peculiar/asn1-cms';
import { decodeBase64Body, decodeCertsOnly, encodeBase64Body, encodeCertsOnly, MAX_PKCS7_CERTS, MAX_PKCS7_DER } from '../../src/x509/pkcs7.js';
import { isCode, makeCa } from './helpers.js';

describe('PKCS#7 certs-only (RFC 5652 §5.2 degenerate SignedData)', () => {
  it('round-trips one and two certificates, in order', async () => {
    const a = await makeCa('A');
    const b = await makeCa('B');
    for (const certs of [[a.der], [a.der, b.der]]) {
      const p7 = encodeCertsOnly(certs);
      const back = decodeCertsOnly(p7);
      assert.deepEqual(back.map((c) => Buffer.from(c).toString('hex')), certs.map((c) => Buffer.from(c).toString('hex')));
    }
  });

  it('is degenerate: version 1, no digest algorithms, no eContent, no signers', async () => {
    const { der } = await makeCa();
    const info = AsnConvert.parse(encodeCertsOnly([der]), ContentInfo);
    assert.equal(info.contentType, '1.2.840.113549.1.7.2');
    const sd = AsnConvert.parse(info.content, SignedData);
    assert.equal(sd.version, 1);
    assert.equal(sd.digestAlgorithms.length, 0);
    assert.equal(sd.encapContentInfo.eContentType, '1.2.840.113549.1.7.1');
    assert.equal(sd.encapContentInfo.eContent, undefined);
    assert.equal(sd.signerInfos.length, 0);
  });

  it('is read by openssl pkcs7 -print_certs', async (t) => {
    if (spawnSync('openssl', ['version']).status !== 0) return t.skip('openssl not installed');
    const { der } = await makeCa('openssl reads me');
    const dir = mkdtempSync(join(tmpdir(), 'p7-'));
    try {
      writeFileSync(join(dir, 'p7.der'), encodeCertsOnly([der]));
      const r = spawnSync('openssl', ['pkcs7', '-inform', 'DER', '-in', join(dir, 'p7.der'), '-print_certs', '-noout'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /subject=CN ?= ?openssl reads me/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses empty, oversized and non-CMS input, and non-SignedData content', async () => {
    assert.throws(() => decodeCertsOnly(new Uint8Array(0)), isCode('ERR_DECODE'));
    assert.throws(() => decodeCertsOnly(new Uint8Array(MAX_PKCS7_DER + 1)), isCode('ERR_DECODE', 'bytes'));
    assert.throws(() => decodeCertsOnly(Uint8Array.of(0x30, 0x03, 0x02, 0x01, 0x00)), isCode('ERR_DECODE'));
    const { der } = await makeCa();
    assert.throws(() => decodeCertsOnly(der), isCode('ERR_DECODE'));
    const dataInfo = new Uint8Array(AsnConvert.serialize(new ContentInfo({ contentType: '1.2.840.113549.1.7.1', content: new Uint8Array([4, 0]).buffer })));
    assert.throws(() => decodeCertsOnly(dataInfo), isCode('ERR_DECODE', 'not a CMS SignedData'));
  });

  it('uses the caller\'s error code', () => {
    assert.throws(() => decodeCertsOnly(Uint8Array.of(1, 2, 3), 'ERR_HTTP', 'the response'), isCode('ERR_HTTP', 'the response'));
  });

  it('refuses to encode zero or too many certificates, or bytes that are not one', async () => {
    assert.throws(() => encodeCertsOnly([]), isCode('ERR_INVALID_ARG'));
    const { der } = await makeCa();
    assert.throws(() => encodeCertsOnly(Array(MAX_PKCS7_CERTS + 1).fill(der)), isCode('ERR_INVALID_ARG'));
    assert.throws(() => encodeCertsOnly([Uint8Array.of(1, 2, 3)]), isCode('ERR_INVALID_ARG'));
  });
});

describe('EST base64 bodies (RFC 7030 §4.1.3, §4.2.1)', () => {
  it('round-trips, in CRLF lines of 64 characters', () => {
    const bytes = new Uint8Array(200).map((_, i) => i);
    const text = encodeBase64Body(bytes);
    assert.ok(text.split('\r\n').every((line) => line.length <= 64));
    assert.deepEqual(decodeBase64Body(text, 1000, 'ERR_DECODE', 'body'), bytes);
  });

  it('ignores line breaks and spaces, but nothing else', () => {
    assert.deepEqual(decodeBase64Body(' AQID\nBA==\r\n', 10, 'ERR_DECODE', 'body'), Uint8Array.of(1, 2, 3, 4));
    assert.throws(() => decodeBase64Body('AQID!BA==', 10, 'ERR_CSR_INVALID', 'body'), isCode('ERR_CSR_INVALID', 'not base64'));
    assert.throws(() => decodeBase64Body('AQ-_', 10, 'ERR_CSR_INVALID', 'body'), isCode('ERR_CSR_INVALID', 'not base64'));
  });

  it('refuses empty, unpadded, non-canonical and oversized bodies', () => {
    assert.throws(() => decodeBase64Body('\r\n', 10, 'ERR_DECODE', 'body'), isCode('ERR_DECODE', 'empty'));
    assert.throws(() => decodeBase64Body('AQI', 10, 'ERR_DECODE', 'body'), isCode('ERR_DECODE', 'not base64'));
    // 'AR==' decodes to 0x01 with non-zero padding bits; the canonical form is 'AQ=='.
    assert.throws(() => decodeBase64Body('AR==', 10, 'ERR_DECODE', 'body'), isCode('ERR_DECODE', 'canonical'));
    assert.throws(() => decodeBase64Body('AAAAAAAA', 5, 'ERR_DECODE', 'body'), isCode('ERR_DECODE', 'larger'));
    // Refused by length before any decoding.
    assert.throws(() => decodeBase64Body('A'.repeat(1_000_000), 4096, 'ERR_DECODE', 'body'), isCode('ERR_DECODE', 'larger'));
  });
});
