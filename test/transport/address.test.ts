import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isEnrollError } from '../../src/errors.js';
import { formatAddress, parseAddress, parseListenAddress } from '../../src/transport/address.js';

test('parseAddress accepts the four documented forms', () => {
  assert.deepEqual(parseAddress('tcp://127.0.0.1:4000'), { host: '127.0.0.1', port: 4000 });
  assert.deepEqual(parseAddress('127.0.0.1:4000'), { host: '127.0.0.1', port: 4000 });
  assert.deepEqual(parseAddress('[::1]:4000'), { host: '::1', port: 4000 });
  assert.deepEqual(parseAddress('tcp://[::1]:4000'), { host: '::1', port: 4000 });
});

test('parseAddress accepts hostnames, port bounds and an upper-case scheme', () => {
  assert.deepEqual(parseAddress('enroll.example.com:1'), { host: 'enroll.example.com', port: 1 });
  assert.deepEqual(parseAddress('localhost:65535'), { host: 'localhost', port: 65535 });
  assert.deepEqual(parseAddress('TCP://my_host-1:80'), { host: 'my_host-1', port: 80 });
  assert.deepEqual(parseAddress('[2001:db8::1]:443'), { host: '2001:db8::1', port: 443 });
  assert.deepEqual(parseAddress('[::ffff:10.0.0.1]:22'), { host: '::ffff:10.0.0.1', port: 22 });
  const longHost = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
  assert.equal(longHost.length, 253);
  assert.equal(parseAddress(`${longHost}:9`).host, longHost);
});

const invalid: [string, string][] = [
  ['', 'empty'],
  ['tcp://', 'scheme only'],
  ['127.0.0.1', 'no port'],
  ['127.0.0.1:', 'empty port'],
  [':4000', 'empty host'],
  ['tcp://:4000', 'empty host after scheme'],
  ['127.0.0.1:0', 'port 0 to connect'],
  ['127.0.0.1:65536', 'port too large'],
  ['127.0.0.1:99999', 'port too large, 5 digits'],
  ['127.0.0.1:123456', 'port with 6 digits'],
  ['127.0.0.1:-1', 'negative port'],
  ['127.0.0.1:0x10', 'hex port'],
  ['127.0.0.1:1e3', 'exponent port'],
  ['127.0.0.1:+80', 'signed port'],
  ['127.0.0.1:80/path', 'path after port'],
  ['http://127.0.0.1:80', 'other scheme'],
  ['::1:4000', 'unbracketed IPv6'],
  ['[::1]4000', 'missing colon after bracket'],
  ['[::1:4000', 'missing closing bracket'],
  ['[]:4000', 'empty brackets'],
  ['[127.0.0.1]:4000', 'IPv4 in brackets'],
  ['[zz::1]:4000', 'bad IPv6'],
  ['host name:4000', 'space in host'],
  [' 127.0.0.1:4000', 'leading space'],
  ['127.0.0.1:4000\n', 'trailing newline'],
  ['ho\tst:4000', 'tab'],
  ['ho\u0000st:4000', 'NUL'],
  ['ho\u007fst:4000', 'DEL'],
  ['user@host:4000', 'userinfo'],
  ['h\u00e9st:4000', 'non-ASCII host'],
  [`${'a'.repeat(254)}:4000`, 'host of 254 chars'],
  [`${'a'.repeat(5000)}:4000`, 'very long input'],
];

for (const [input, why] of invalid) {
  test(`parseAddress rejects ${why}: ERR_ADDRESS with a hint`, () => {
    assert.throws(
      () => parseAddress(input),
      (e: unknown) => {
        assert.ok(isEnrollError(e, 'ERR_ADDRESS'), String(e));
        assert.match(e.hint ?? '', /tcp:\/\/HOST:PORT/);
        assert.match(e.message, /^invalid address/);
        // Control characters are never echoed raw.
        assert.doesNotMatch(e.message, /[\u0000-\u001f\u007f]/);
        return true;
      },
    );
  });
}

test('parseAddress rejects non-strings with ERR_ADDRESS', () => {
  for (const v of [undefined, null, 4000, {}]) {
    assert.throws(() => parseAddress(v as unknown as string), (e: unknown) => isEnrollError(e, 'ERR_ADDRESS'));
  }
});

test('parseListenAddress allows port 0, parseAddress does not', () => {
  assert.deepEqual(parseListenAddress('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListenAddress('tcp://[::]:0'), { host: '::', port: 0 });
  assert.throws(() => parseAddress('127.0.0.1:0'), (e: unknown) => isEnrollError(e, 'ERR_ADDRESS'));
  assert.throws(() => parseListenAddress('127.0.0.1:65536'), (e: unknown) => isEnrollError(e, 'ERR_ADDRESS'));
});

test('formatAddress brackets IPv6 and round-trips through parseAddress', () => {
  assert.equal(formatAddress({ host: '127.0.0.1', port: 4000 }), 'tcp://127.0.0.1:4000');
  assert.equal(formatAddress({ host: '::1', port: 4000 }), 'tcp://[::1]:4000');
  assert.equal(formatAddress({ host: 'example.com', port: 1 }), 'tcp://example.com:1');
  for (const a of [
    { host: '10.1.2.3', port: 65535 },
    { host: 'fe80::1', port: 7 },
    { host: 'svc.local', port: 4000 },
  ]) {
    assert.deepEqual(parseAddress(formatAddress(a)), a);
  }
});
