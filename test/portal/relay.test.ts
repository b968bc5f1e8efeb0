/**
 * The device-to-device relay over real sockets (docs/protocol.md §11.10): the service relays
 * ciphertext only, and each device checks the other against the service's directory and the
 * other's credential. Real loopback TCP, real Noise channels, a real SQLite store, credentials
 * signed by the service's IK_A (test/portal/e2e-harness.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { isEnrollError } from '../../src/errors.js';
import { compileAllow } from '../../src/portal/allow.js';
import { OpenStatus } from '../../src/protocol/portal/open.js';
import { allowAll, makeHarness, type Harness } from './e2e-harness.js';

const MARKER = Buffer.from('MARKER-0c4a3e-this-must-never-be-seen-by-the-relay');

function exchange(port: number, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
    s.end(body);
  });
}

let h: Harness;
let echo: Server;
let echoPort: number;

before(async () => {
  // Reads to EOF, then answers with its SHA-256 and the marker-laden body again (half-close both ways).
  echo = createServer({ allowHalfOpen: true }, (s) => {
    const parts: Buffer[] = [];
    s.on('error', () => undefined);
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('end', () => {
      const all = Buffer.concat(parts);
      s.write(`${createHash('sha256').update(all).digest('hex')}\n`);
      s.end(all);
    });
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as AddressInfo).port;
  h = await makeHarness({ devices: 3, tap: true });
  await h.serveOutlets(1, [
    { name: 'echo', host: '127.0.0.1', port: echoPort, allow: allowAll },
    { name: 'only-device-2', host: '127.0.0.1', port: echoPort, allow: compileAllow('subject.name == "device-2"') },
  ]);
});

after(async () => {
  await h?.close();
  echo?.close();
});

describe('relayed device streams', () => {
  test('the bytes arrive intact both ways, and the relay sees none of the plaintext', async () => {
    const port = await h.inlet(0, `${h.devices[1]!.name}/echo`);
    const body = Buffer.concat(Array.from({ length: 4000 }, (_, i) => Buffer.concat([MARKER, Buffer.from(` ${i}\n`)])));
    const answer = await exchange(port, body);
    const nl = answer.indexOf(0x0a);
    assert.equal(answer.subarray(0, nl).toString(), createHash('sha256').update(body).digest('hex'));
    assert.ok(answer.subarray(nl + 1).equals(body), 'the answer came back intact after the half-close');
    const up = Buffer.concat(h.relayed['to-outlet']);
    const down = Buffer.concat(h.relayed['to-inlet']);
    assert.ok(up.length > body.length && down.length > body.length, 'the relay carried the stream both ways');
    assert.equal(up.indexOf(MARKER.subarray(0, 16)), -1, 'no plaintext on the way to the outlet device');
    assert.equal(down.indexOf(MARKER.subarray(0, 16)), -1, 'no plaintext on the way back');
    // Nor any 16-byte window of it: the relay sees ciphertext only.
    assert.equal(up.indexOf(body.subarray(1000, 1016)), -1);
    const rec = h.relayRecords.find((r) => r.counts !== undefined);
    assert.ok(rec && rec.counts!.bytesIn === up.length && rec.counts!.bytesOut === down.length, 'byte counts at close, no payloads');
  });

  test('the outlet device\'s --allow is evaluated on the other device\'s credential, inside the channel', async () => {
    const refusals: Error[] = [];
    const denied = await h.inlet(0, `${h.devices[1]!.name}/only-device-2`, refusals);
    await exchange(denied, MARKER).catch(() => undefined);
    assert.equal(refusals.length, 1);
    assert.ok(isEnrollError(refusals[0], 'ERR_REJECTED'));
    assert.match(refusals[0]!.message, /only-device-2: not allowed \(said the device\): this device's --allow for "only-device-2" does not admit device-0/);
    assert.ok(h.outletRecords.some((r) => r.status === OpenStatus.NOT_ALLOWED && r.peerName === 'device-0'));
    const admitted = await h.inlet(2, `${h.devices[1]!.name}/only-device-2`);
    const answer = await exchange(admitted, Buffer.from('from device 2'));
    assert.match(answer.toString(), /from device 2$/);
  });

  test('an outlet the device does not serve is refused by the device itself', async () => {
    // The registry says the device serves "echo" and "only-device-2"; the relay refuses others before asking.
    const refusals: Error[] = [];
    h.registry.list()[0]!.names = new Set(['echo', 'only-device-2', 'ghost']);
    const port = await h.inlet(0, `${h.devices[1]!.name}/ghost`, refusals);
    await exchange(port, Buffer.from('x')).catch(() => undefined);
    assert.match(refusals[0]!.message, /ghost: unknown outlet: this device has no outlet named "ghost"/);
  });
});

describe('a relay that lies', () => {
  test('about who is asking: the outlet device refuses, since the key is not the one the directory named', async () => {
    // This service tells the outlet device that device 2 asks, while device 0 does.
    const liar = await makeHarness({ devices: 3, directoryFor: (d) => (d.name === 'device-0' ? liar.devices[2]! : d) });
    try {
      await liar.serveOutlets(1, [{ name: 'echo', host: '127.0.0.1', port: echoPort, allow: allowAll }]);
      const refusals: Error[] = [];
      const port = await liar.inlet(0, 'device-1/echo', refusals);
      await exchange(port, Buffer.from('x')).catch(() => undefined);
      for (let i = 0; i < 100 && liar.outletRecords.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      const rec = liar.outletRecords[0];
      assert.ok(rec !== undefined, 'the outlet device recorded the failure');
      assert.match(rec.reason, /is not the key the service's directory holds for it/);
      assert.equal(refusals.length, 1, 'the inlet was refused');
    } finally {
      await liar.close();
    }
  });
});
