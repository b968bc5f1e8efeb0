import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { toHex } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { Keystore } from '../../src/keystore/keystore.js';
import { KnownServices, KNOWN_SERVICES_FILE, normaliseServiceAddress } from '../../src/keystore/known-services.js';

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'ockam-known-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function enroller(): Keystore {
  return Keystore.open(join(root, `home-${n++}`), 'enroller');
}

function throwsCode(fn: () => unknown, code: ErrorCode, check?: (e: any) => void): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isEnrollError(e), `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    check?.(e);
    return true;
  });
}

describe('normaliseServiceAddress', () => {
  const good: [string, string][] = [
    ['tcp://enroll.example.com:4000', 'tcp://enroll.example.com:4000'],
    ['enroll.example.com:4000', 'tcp://enroll.example.com:4000'],
    ['TCP://Enroll.Example.COM:4000', 'tcp://enroll.example.com:4000'],
    ['tcp://enroll.example.com.:4000', 'tcp://enroll.example.com:4000'],
    ['tcp://localhost:04000', 'tcp://localhost:4000'],
    ['tcp://127.0.0.1:1', 'tcp://127.0.0.1:1'],
    ['tcp://[::1]:65535', 'tcp://[::1]:65535'],
    ['tcp://[0:0:0:0:0:0:0:1]:4000', 'tcp://[::1]:4000'],
    ['[2001:DB8::0001]:4000', 'tcp://[2001:db8::1]:4000'],
    ['  tcp://host:4000 ', 'tcp://host:4000'],
  ];
  for (const [input, want] of good) {
    it(`${JSON.stringify(input)} → ${want}`, () => assert.equal(normaliseServiceAddress(input), want));
  }
  const bad = [
    '',
    'tcp://host',
    'host',
    'tcp://host:0',
    'tcp://host:65536',
    'tcp://host:99999',
    'http://host:4000',
    'tcp://user@host:4000',
    'tcp://host:4000/path',
    'tcp://ho st:4000',
    'tcp://::1:4000',
    'tcp://[::g]:4000',
    'tcp://-host:4000',
    'tcp://host..example:4000',
    'tcp://host:+40',
  ];
  for (const input of bad) {
    it(`rejects ${JSON.stringify(input)} with ERR_ADDRESS`, () =>
      throwsCode(() => normaliseServiceAddress(input), 'ERR_ADDRESS', (e) => assert.equal(e.hint, 'use tcp://HOST:PORT')));
  }
});

describe('KnownServices', () => {
  it('unknown → pin → match; another key → mismatch', () => {
    const ks = enroller();
    const known = new KnownServices(ks);
    const key = generateX25519().publicKey;
    const other = generateX25519().publicKey;
    assert.equal(known.check('tcp://svc:4000', key), 'unknown');
    assert.equal(known.get('tcp://svc:4000'), undefined);
    known.pin('tcp://svc:4000', key);
    assert.equal(known.check('tcp://svc:4000', key), 'match');
    assert.equal(known.check('tcp://svc:4000', other), 'mismatch');
    assert.deepEqual(known.get('tcp://svc:4000'), key);
    assert.equal(known.check('tcp://svc:4001', key), 'unknown');
  });

  it('matches across spellings of one address', () => {
    const known = new KnownServices(enroller());
    const key = generateX25519().publicKey;
    known.pin('SVC.example.com:4000', key);
    assert.equal(known.check('tcp://svc.example.com:4000', key), 'match');
    assert.equal(known.check('tcp://svc.example.com.:04000', key), 'match');
  });

  it('writes the documented file atomically, leaving no temp files', () => {
    const ks = enroller();
    const known = new KnownServices(ks);
    const key = generateX25519().publicKey;
    const t0 = Date.now();
    known.pin('tcp://svc:4000', key);
    const json = JSON.parse(readFileSync(ks.path(KNOWN_SERVICES_FILE), 'utf8'));
    assert.deepEqual(Object.keys(json), ['tcp://svc:4000']);
    assert.equal(json['tcp://svc:4000'].key, toHex(key));
    const seen = Date.parse(json['tcp://svc:4000'].first_seen);
    assert.ok(seen >= t0 - 1000 && seen <= Date.now() + 1000);
    assert.deepEqual(readdirSync(ks.dir), [KNOWN_SERVICES_FILE]);
    assert.equal(known.file, ks.path(KNOWN_SERVICES_FILE));
  });

  it('re-pinning the same key keeps first_seen', async () => {
    const known = new KnownServices(enroller());
    const key = generateX25519().publicKey;
    known.pin('tcp://svc:4000', key);
    const first = known.firstSeen('tcp://svc:4000');
    await new Promise((r) => setTimeout(r, 5));
    known.pin('tcp://svc:4000', key);
    assert.equal(known.firstSeen('tcp://svc:4000'), first);
  });

  it('refuses to pin a different key over an existing pin unless replace is set', () => {
    const known = new KnownServices(enroller());
    const a = generateX25519().publicKey;
    const b = generateX25519().publicKey;
    known.pin('tcp://svc:4000', a);
    throwsCode(() => known.pin('tcp://svc:4000', b), 'ERR_SERVICE_KEY_MISMATCH', (e) => assert.ok(e.hint));
    assert.equal(known.check('tcp://svc:4000', a), 'match');
    known.pin('tcp://svc:4000', b, { replace: true });
    assert.equal(known.check('tcp://svc:4000', b), 'match');
  });

  it('forget removes a pin and says whether there was one', () => {
    const known = new KnownServices(enroller());
    const key = generateX25519().publicKey;
    known.pin('tcp://a:1', key);
    known.pin('tcp://b:2', key);
    assert.equal(known.forget('a:1'), true);
    assert.equal(known.forget('a:1'), false);
    assert.equal(known.check('tcp://a:1', key), 'unknown');
    assert.deepEqual(
      known.list().map((e) => e.address),
      ['tcp://b:2'],
    );
  });

  it('another instance (another run) sees the pins', () => {
    const ks = enroller();
    const key = generateX25519().publicKey;
    new KnownServices(ks).pin('tcp://svc:4000', key);
    const again = new KnownServices(Keystore.open(ks.home, 'enroller'));
    assert.equal(again.check('tcp://svc:4000', key), 'match');
  });

  it('checks its arguments', () => {
    const known = new KnownServices(enroller());
    throwsCode(() => known.check('tcp://svc:4000', new Uint8Array(31)), 'ERR_INVALID_ARG');
    throwsCode(() => known.pin('not an address', new Uint8Array(32)), 'ERR_ADDRESS');
  });

  const corrupt: [string, string][] = [
    ['not JSON', '{'],
    ['an array', '[]'],
    ['an unnormalised address', JSON.stringify({ 'SVC:4000': { key: 'ab'.repeat(32), first_seen: '2025-01-01T00:00:00Z' } })],
    ['a bad address', JSON.stringify({ 'tcp://svc': { key: 'ab'.repeat(32), first_seen: '2025-01-01T00:00:00Z' } })],
    ['a short key', JSON.stringify({ 'tcp://svc:1': { key: 'ab', first_seen: '2025-01-01T00:00:00Z' } })],
    ['no first_seen', JSON.stringify({ 'tcp://svc:1': { key: 'ab'.repeat(32) } })],
    ['an entry that is a string', JSON.stringify({ 'tcp://svc:1': 'ab'.repeat(32) })],
  ];
  for (const [name, text] of corrupt) {
    it(`a file with ${name} → ERR_KEYSTORE_CORRUPT`, () => {
      const ks = enroller();
      ks.writeBytes(KNOWN_SERVICES_FILE, text);
      throwsCode(() => new KnownServices(ks).check('tcp://svc:1', new Uint8Array(32)), 'ERR_KEYSTORE_CORRUPT');
    });
  }
});
