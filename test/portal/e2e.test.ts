/**
 * The pure part of device-to-device streams (src/protocol/portal/e2e.ts, device-outlets.ts;
 * docs/protocol.md §11.10): test/vectors/portal-e2e.json re-encoded from its fields by a writer
 * of its own and failing in exactly its declared way, and the end-to-end handshake's checks
 * (Noise XX §7.5 with credentials, §11.10.3) driven message by message, with real keys and
 * credentials signed by a service key.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { isEnrollError } from '../../src/errors.js';
import { encodeCredential, signCredential } from '../../src/protocol/credential.js';
import { decodeDeviceOutlets } from '../../src/protocol/portal/device-outlets.js';
import {
  decodePeer, decodeRelayOpen, E2eDeframer, E2eHandshake, E2eTransport, openVerdict, sealVerdict,
} from '../../src/protocol/portal/e2e.js';
import { OpenStatus } from '../../src/protocol/portal/open.js';
import { E2E_VECTOR_FILE, renderPortalE2e } from '../vectors/generate-portal-e2e.js';

const raw = readFileSync(E2E_VECTOR_FILE, 'utf8');
const v = JSON.parse(raw);
const u8 = (n: number) => Buffer.from([n]);

describe('portal-e2e.json', () => {
  test('is byte for byte what the generator produces', () => assert.equal(renderPortalE2e(), raw));

  test('RELAY_OPEN, PEER, DEVICE_OUTLETS and E2E frames re-encode from their fields (§11.10.1, §11.10.2)', () => {
    for (const r of v.relay_open) {
      const name = Buffer.from(r.name, 'utf8');
      assert.equal(Buffer.concat([u8(2), u8(name.length), name, Buffer.from(r.enrollee_id, 'hex'), Buffer.from(r.ik, 'hex')]).toString('hex'), r.hex, r.comment);
      const d = decodeRelayOpen(Buffer.from(r.hex, 'hex'))!;
      assert.equal(d.name, r.name);
      assert.equal(Buffer.from(d.ik).toString('hex'), r.ik);
      assert.equal(d.used, r.hex.length / 2);
      // A prefix is incomplete, never an error.
      assert.equal(decodeRelayOpen(Buffer.from(r.hex, 'hex').subarray(0, d.used - 1)), undefined);
    }
    assert.equal(v.peer.hex, v.peer.enrollee_id + v.peer.ik);
    assert.equal(Buffer.from(decodePeer(Buffer.from(v.peer.hex, 'hex'))!.enrolleeId).toString('hex'), v.peer.enrollee_id);
    for (const d of v.device_outlets) {
      const names = d.names.map((n: string) => Buffer.concat([u8(n.length), Buffer.from(n)]));
      assert.equal(Buffer.concat([u8(0x3a), u8(1), u8(d.names.length), ...names]).toString('hex'), d.hex, d.comment);
      assert.deepEqual(decodeDeviceOutlets(Buffer.from(d.hex, 'hex')), d.names);
    }
    for (const e of v.e2e) {
      const m = Buffer.from(e.message, 'hex');
      const h = Buffer.alloc(2);
      h.writeUInt16BE(m.length);
      assert.equal(Buffer.concat([h, m]).toString('hex'), e.hex, e.comment);
      // Fed one byte at a time, the deframer gives back exactly the message.
      const df = new E2eDeframer();
      const all = Buffer.from(e.hex, 'hex');
      let got: Buffer | undefined;
      for (const b of all) {
        df.push(Buffer.from([b]));
        got ??= df.next();
      }
      assert.equal(got!.toString('hex'), e.message);
    }
    for (const p of v.prologue) {
      const label = Buffer.from('ockam-enroll/v1/portal-e2e');
      assert.equal(Buffer.concat([label, u8(p.outlet.length), Buffer.from(p.outlet)]).toString('hex'), p.hex);
    }
  });

  test('every invalid input fails with its declared code', () => {
    assert.ok(v.invalid.length >= 8);
    for (const bad of v.invalid) {
      const b = Buffer.from(bad.hex, 'hex');
      assert.throws(() => {
        if (bad.kind === 'relay_open') decodeRelayOpen(b);
        else if (bad.kind === 'device_outlets') decodeDeviceOutlets(b);
        else {
          const d = new E2eDeframer();
          d.push(b);
          d.next();
        }
      }, (e: unknown) => isEnrollError(e, bad.error), bad.comment);
    }
  });
});

// ---- the handshake

const now = Math.floor(Date.now() / 1000);
const ikA = generateX25519();
function device(id: number, name: string, issuer = ikA) {
  const ikB = generateX25519();
  const enrolleeId = new Uint8Array(32).fill(id);
  const cred = signCredential({ issuer: issuer.publicKey, enrolleeId, ikB: ikB.publicKey, petName: name, issuedAt: now - 60, expiresAt: now + 3600 }, issuer.privateKey);
  return { ikB, enrolleeId, credential: encodeCredential(cred) };
}
const unframe = (b: Buffer) => {
  const d = new E2eDeframer();
  d.push(b);
  return d.next()!;
};

function run(x: ReturnType<typeof device>, y: ReturnType<typeof device>, opts: { outletX?: string; outletY?: string; yAsSeenByX?: ReturnType<typeof device>; xAsSeenByY?: ReturnType<typeof device> } = {}) {
  const hx = new E2eHandshake({ initiator: true, staticKeyPair: x.ikB, credential: x.credential, outletName: opts.outletX ?? 'web' });
  const hy = new E2eHandshake({ initiator: false, staticKeyPair: y.ikB, credential: y.credential, outletName: opts.outletY ?? 'web' });
  const ys = opts.yAsSeenByX ?? y;
  const xs = opts.xAsSeenByY ?? x;
  hx.setTrust({ issuer: ikA.publicKey, expected: { enrolleeId: ys.enrolleeId, ik: ys.ikB.publicKey }, now });
  hy.setTrust({ issuer: ikA.publicKey, expected: { enrolleeId: xs.enrolleeId, ik: xs.ikB.publicKey }, now });
  const m2 = hy.receive(unframe(hx.start())).send!;
  const rx = hx.receive(unframe(m2));
  const ry = hy.receive(unframe(rx.send!));
  return { x: rx.established!, y: ry.established! };
}

describe('the end-to-end handshake (§11.10.3)', () => {
  const x = device(1, 'robot');
  const y = device(2, 'pump');

  test('each device ends up with the other\'s verified credential, and the transports talk', () => {
    const { x: ex, y: ey } = run(x, y);
    assert.equal(ex.peer.petName, 'pump');
    assert.equal(ey.peer.petName, 'robot');
    assert.deepEqual(ex.handshakeHash, ey.handshakeHash);
    const tx = new E2eTransport(ex.transport);
    const ty = new E2eTransport(ey.transport);
    const verdict = Buffer.concat(sealVerdict(ty, OpenStatus.OK));
    assert.deepEqual(openVerdict(tx.open(unframe(verdict))), { status: OpenStatus.OK, reason: '' });
    const big = Buffer.alloc(200_000, 7);
    const d = new E2eDeframer();
    d.push(Buffer.concat(tx.seal(big)));
    d.push(tx.sealFin());
    const parts: Buffer[] = [];
    for (let m = d.next(); m !== undefined; m = d.next()) {
      const p = ty.open(m);
      if (p === 'fin') break;
      assert.ok(p.length <= 65519);
      parts.push(p);
    }
    assert.ok(Buffer.concat(parts).equals(big));
    assert.ok(ty.finReceived);
  });

  test('a relay that names another key for the outlet device: the inlet refuses before msg 3 (ERR_PROTOCOL)', () => {
    assert.throws(() => run(x, y, { yAsSeenByX: device(2, 'pump') }), (e: unknown) => isEnrollError(e, 'ERR_PROTOCOL') && /directory/.test((e as Error).message));
  });

  test('a relay that names another key for the opener: the outlet device refuses (ERR_PROTOCOL)', () => {
    assert.throws(() => run(x, y, { xAsSeenByY: device(1, 'robot') }), (e: unknown) => isEnrollError(e, 'ERR_PROTOCOL'));
  });

  test('a credential from another service key is refused (ERR_CREDENTIAL_ISSUER)', () => {
    const other = generateX25519();
    assert.throws(() => run(x, device(2, 'pump', other)), (e: unknown) => isEnrollError(e, 'ERR_CREDENTIAL_ISSUER'));
  });

  test('a credential for another enrollee id than the directory\'s is refused (ERR_CREDENTIAL_MALFORMED)', () => {
    const yy = device(2, 'pump');
    assert.throws(() => run(x, yy, { yAsSeenByX: { ...yy, enrolleeId: new Uint8Array(32).fill(9) } }), (e: unknown) => isEnrollError(e, 'ERR_CREDENTIAL_MALFORMED'));
  });

  test('another outlet name on one side: the prologues differ and the handshake fails to authenticate', () => {
    assert.throws(() => run(x, y, { outletX: 'web', outletY: 'ssh' }), (e: unknown) => isEnrollError(e, 'ERR_NOISE_DECRYPT'));
  });

  test('a tampered transport message fails to decrypt and poisons the transport', () => {
    const { x: ex, y: ey } = run(x, y);
    const tx = new E2eTransport(ex.transport);
    const ty = new E2eTransport(ey.transport);
    const m = Buffer.from(unframe(Buffer.concat(tx.seal(Buffer.from('hello')))));
    m[3]! ^= 1;
    assert.throws(() => ty.open(m), (e: unknown) => isEnrollError(e, 'ERR_NOISE_DECRYPT'));
  });
});
