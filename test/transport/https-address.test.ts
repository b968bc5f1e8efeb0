/**
 * HTTPS addresses for token enrollment (src/transport/https-address.ts): the one spelling of
 * `--https-address`, and how an announced address relates to the listener `service start`
 * bound (httpsReach), decided from the two addresses alone.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isEnrollError } from '../../src/errors.js';
import { httpsReach, isLoopbackHost, parseHttpsAddress } from '../../src/transport/https-address.js';

describe('parseHttpsAddress', () => {
  test('https://HOST:PORT, IPv6 in brackets, in one spelling', () => {
    assert.deepEqual(parseHttpsAddress('https://127.0.0.1:4443'), { url: 'https://127.0.0.1:4443', host: '127.0.0.1', port: 4443 });
    assert.deepEqual(parseHttpsAddress('https://[::1]:8443/'), { url: 'https://[::1]:8443', host: '::1', port: 8443 });
  });

  test('port 443 written out is kept (the URL parser drops it as the default)', () => {
    assert.deepEqual(parseHttpsAddress('https://enroll.example.com:443'), { url: 'https://enroll.example.com:443', host: 'enroll.example.com', port: 443 });
    assert.deepEqual(parseHttpsAddress('https://[2001:db8::1]:443/'), { url: 'https://[2001:db8::1]:443', host: '2001:db8::1', port: 443 });
  });

  test('the port must be written; no path, query, credentials or other scheme', () => {
    for (const bad of ['https://enroll.example.com', 'https://enroll.example.com/', 'https://h:443/x', 'https://h:4443?a=1', 'https://u@h:4443', 'http://h:4443', 'https://h:0x10']) {
      assert.throws(() => parseHttpsAddress(bad), (e: unknown) => isEnrollError(e, 'ERR_ADDRESS'), bad);
    }
  });
});

describe('isLoopbackHost', () => {
  test('127/8, ::1, IPv4-mapped loopback and localhost; nothing else', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'localhost.example.com', '::2', 'enroll.example.com']) assert.equal(isLoopbackHost(h), false, h);
  });
});

describe('httpsReach: the announced address against the bound listener', () => {
  const at = (host: string, port: number) => ({ host, port });

  test('serves: same host and port, or a wildcard listener on the same port', () => {
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', false, at('127.0.0.1', 4443)), { kind: 'serves' });
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', true, at('0.0.0.0', 4443)), { kind: 'serves' });
    assert.deepEqual(httpsReach('https://enroll.example.com:4443', true, at('0.0.0.0', 4443)), { kind: 'serves' });
    assert.deepEqual(httpsReach('https://[::1]:4443', true, at('::', 4443)), { kind: 'serves' });
    assert.deepEqual(httpsReach('https://[::1]:4443', true, at('::1', 4443)), { kind: 'serves' });
  });

  test('not chosen at init: the port follows the listener, on the certificate\'s host', () => {
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', false, at('127.0.0.1', 40861)), { kind: 'follow', url: 'https://127.0.0.1:40861' });
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', false, at('0.0.0.0', 40861)), { kind: 'follow', url: 'https://127.0.0.1:40861' });
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', false, at('::', 40861)), { kind: 'follow', url: 'https://127.0.0.1:40861' });
  });

  test('not chosen, bound to another host the certificate names: the address moves there', () => {
    const certified = ['localhost', '127.0.0.1', '::1'];
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', false, at('::1', 4443), certified), { kind: 'follow', url: 'https://[::1]:4443' });
    assert.deepEqual(httpsReach('https://enroll.example.com:4443', false, at('127.0.0.1', 5000), certified), { kind: 'follow', url: 'https://127.0.0.1:5000' });
  });

  test('not chosen, but bound to a host the certificate does not name: cannot follow', () => {
    const certified = ['localhost', '127.0.0.1', '::1'];
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', false, at('127.0.0.2', 4443), certified), { kind: 'cannot-follow' });
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', false, at('192.0.2.10', 4443), certified), { kind: 'cannot-follow' });
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', false, at('::1', 4443)), { kind: 'cannot-follow' }, 'nothing certified beyond the announced host');
    assert.deepEqual(httpsReach('https://[::1]:4443', false, at('0.0.0.0', 4443)), { kind: 'cannot-follow' }, 'an IPv4 wildcard does not serve ::1');
  });

  test('chosen and on loopback, not this listener: only a connection from this host can tell', () => {
    assert.deepEqual(httpsReach('https://127.0.0.1:4443', true, at('127.0.0.1', 40861)), { kind: 'probe' });
    assert.deepEqual(httpsReach('https://localhost:4443', true, at('127.0.0.1', 4443)), { kind: 'probe' }, 'localhost may resolve to ::1');
    assert.deepEqual(httpsReach('https://[::1]:4443', true, at('0.0.0.0', 4443)), { kind: 'probe' });
  });

  test('chosen and elsewhere: a load balancer or port forward may stand in front', () => {
    assert.deepEqual(httpsReach('https://enroll.example.com:443', true, at('0.0.0.0', 4443)), { kind: 'elsewhere' });
    assert.deepEqual(httpsReach('https://192.0.2.10:443', true, at('192.0.2.10', 4443)), { kind: 'elsewhere' });
    assert.deepEqual(httpsReach('https://192.0.2.10:4443', true, at('127.0.0.1', 4443)), { kind: 'elsewhere' });
  });
});
