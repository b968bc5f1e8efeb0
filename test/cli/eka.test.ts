/**
 * EKA v1/v2 negotiation through the CLI (docs/protocol.md §5A.3–§5A.4), against a real
 * service process: an enrollee that requires v2 (the default) refuses a v1 bundle before it
 * sends anything, and enrolls with it under `--eka v1`; a v2 bundle whose KEM_hash names no
 * KEM prekey of the service is refused with ERR_KEM_PREKEY (exit 5); `--eka` values are
 * checked; `service prekey rotate` reports the new KEM prekey.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { fromHex } from '../../src/crypto/bytes.js';
import { bundleToText, signBundle } from '../../src/protocol/codec/index.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { assertFailure, ok, okJson, removeTempHomes, run, setupWorld, type World } from '../helpers/cli.js';

let w: World;
before(async () => {
  w = await setupWorld({ bundles: 4, eka: 'v1' });
});
after(async () => {
  try {
    await w?.dispose();
  } finally {
    removeTempHomes();
  }
});

describe('enrollee join --eka', () => {
  test('the default (v2) refuses a v1 bundle before sending anything; --eka v1 enrolls with it', async () => {
    const e = w.enrollee;
    const id = w.bundles.pop()!;
    const approved = await okJson<{ bundle_text: string; eka: string }>(['enroller', 'approve', e.card, '--bundle', id], { home: w.enrollerHome });
    assert.equal(approved.eka, 'v1');
    assert.ok(approved.bundle_text.startsWith('OEB1:'));
    const before = w.service.lines.length;
    const refused = await run(['enrollee', 'join', '--bundle', approved.bundle_text], { home: e.home });
    assertFailure(refused, 1, /version 1 bundle \(EKA v1\), and this enrollee requires EKA v2/, /--eka v1/);
    const joined = await okJson<{ eka: string; enrolled: boolean }>(['enrollee', 'join', '--eka', 'v1', '--bundle', approved.bundle_text], { home: e.home });
    assert.equal(joined.enrolled, true);
    assert.equal(joined.eka, 'v1');
    // Nothing of the refused join reached the service: once the accepted join is logged (the
    // service logs in the order it serves, so anything sent before would be logged first, on
    // a busy machine too), it is the only enrollment decision since.
    await w.service.waitForLine(new RegExp(` accepted .*enrollee=${e.id}`));
    assert.deepEqual(
      w.service.lines.slice(before).filter((l) => / (rejected|accepted) /.test(l)).map((l) => / accepted .*enrollee=/.test(l) && l.includes(e.id)),
      [true],
    );
  });

  test('--eka takes v1 or v2 only', async () => {
    const r = await run(['enrollee', 'join', '--eka', 'v3', '--bundle', 'OEB2:AAAA'], { home: w.enrollee.home });
    assertFailure(r, 2, '--eka must be v1 or v2', /ML-KEM-768/);
    const f = await run(['enroller', 'bundle', 'fetch', '--service', w.address, '--eka', 'pq'], { home: w.enrollerHome });
    assertFailure(f, 2, '--eka must be v1 or v2');
  });

  test('a v2 bundle whose KEM_hash the service does not know is refused: ERR_KEM_PREKEY, exit 5', async () => {
    const e = await w.newEnrollee('kem');
    // A bundle the service really signed (its IK_A), naming a KEM prekey it never made.
    const svc = await ServiceHome.open(w.serviceHome);
    let text: string;
    try {
      const spk = (await svc.store.currentSignedPrekey())!;
      const b = signBundle(
        {
          bundleId: new Uint8Array(randomBytes(16)),
          ikA: svc.ikA.publicKey,
          spkA: spk.publicKey,
          spkSig: spk.signature,
          opkA: svc.ikA.publicKey,
          kemHash: new Uint8Array(randomBytes(32)),
          expiresAt: Math.floor(Date.now() / 1000) + 3600,
          addr: w.address,
        },
        svc.ikA.privateKey,
      );
      text = bundleToText(b);
    } finally {
      await svc.close();
    }
    const r = await run(['enrollee', 'join', '--bundle', text], { home: e.home });
    assertFailure(r, 5, 'has no KEM prekey with the bundle\'s hash');
  });
});

describe('v2 bundles from the same service', () => {
  test('enroller bundle fetch --eka v2, then a v2 join; service prekey rotate names the new KEM prekey', async () => {
    const fetched = await okJson<{ eka: string; bundles: string[] }>(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '1', '--eka', 'v2', '--service-key', w.serviceKey], { home: w.enrollerHome });
    assert.equal(fetched.eka, 'v2');
    const e = await w.newEnrollee('pq');
    const approved = await okJson<{ bundle_text: string; eka: string }>(['enroller', 'approve', e.card, '--bundle', fetched.bundles[0]!], { home: w.enrollerHome });
    assert.equal(approved.eka, 'v2');
    assert.ok(approved.bundle_text.startsWith('OEB2:'));
    const joined = await okJson<{ eka: string }>(['enrollee', 'join', '--bundle', approved.bundle_text], { home: e.home });
    assert.equal(joined.eka, 'v2');
    assert.ok(w.service.decisions('accepted').some((l) => l.includes(' eka=2 ')), w.service.lines.join('\n'));

    const before = await okJson<{ prekeys: { spk_id: number }[] }>(['service', 'prekey', 'list'], { home: w.serviceHome });
    const rotated = await okJson<{ kem_hash: string; spk_id: number }>(['service', 'prekey', 'rotate'], { home: w.serviceHome });
    assert.match(rotated.kem_hash, /^[0-9a-f]{64}$/);
    assert.ok(rotated.spk_id > Math.max(...before.prekeys.map((p) => p.spk_id)));
    // New v2 bundles carry the new KEM_hash (offset 177 of the bundle, §4.5).
    const again = await okJson<{ bundles: string[] }>(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '1', '--eka', 'v2'], { home: w.enrollerHome });
    const shown = await okJson<{ text: string }>(['enroller', 'bundle', 'show', again.bundles[0]!], { home: w.enrollerHome });
    const { decodeText } = await import('../../src/protocol/codec/index.js');
    const bytes = decodeText('OEB2:', shown.text);
    assert.deepEqual(bytes.subarray(177, 209), fromHex(rotated.kem_hash));
    await ok(['enroller', 'bundle', 'list'], { home: w.enrollerHome });
  });
});

describe('a service whose signed prekey predates EKA v2', () => {
  test('a v2 fetch is refused with ERR_EKA_VERSION and the hint to rotate; after `service prekey rotate` it works', async () => {
    // Make the current SPK one without a KEM prekey, as a store migrated from schema 1 has.
    const svc = await ServiceHome.open(w.serviceHome);
    try {
      const { generateX25519 } = await import('../../src/crypto/x25519.js');
      const { signSpk } = await import('../../src/protocol/codec/index.js');
      const spk = generateX25519();
      await svc.store.addSignedPrekey({
        publicKey: spk.publicKey,
        privateSealed: svc.sealer.seal(spk.privateKey, 'spk', spk.publicKey),
        signature: signSpk(svc.ikA.privateKey, spk.publicKey),
        createdAt: Math.floor(Date.now() / 1000),
      });
      assert.equal((await svc.store.currentSignedPrekey())?.kem, null);
    } finally {
      await svc.close();
    }
    const refused = await run(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '1', '--eka', 'v2'], { home: w.enrollerHome });
    assertFailure(refused, 1, 'predates EKA v2', /service prekey rotate/);
    // v1 bundles are still served.
    await ok(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '1', '--eka', 'v1'], { home: w.enrollerHome });
    await ok(['service', 'prekey', 'rotate'], { home: w.serviceHome });
    const fetched = await okJson<{ eka: string; fetched: number }>(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '1', '--eka', 'v2'], { home: w.enrollerHome });
    assert.deepEqual([fetched.eka, fetched.fetched], ['v2', 1]);
  });
});

describe('a service that predates EKA v2 altogether', () => {
  test('`enroller bundle fetch` (v2 by default) names the likely cause and the way out instead of a bare refusal', async () => {
    // A service as ockam-enroll was before EKA v2 answers FETCH_BUNDLES: count u16 and
    // nothing after it, so the eka byte is "1 trailing bytes" (ERROR ERR_FRAME_MALFORMED).
    const { generateX25519 } = await import('../../src/crypto/x25519.js');
    const { listenTcp } = await import('../../src/transport/tcp.js');
    const { acceptChannel } = await import('../../src/transport/channel.js');
    const { PROLOGUE_ENROLLER_SERVICE, decodeKindFrame } = await import('../../src/protocol/messages/service.js');
    const { encodeError } = await import('../../src/protocol/messages/common.js');
    const { EnrollError } = await import('../../src/errors.js');
    const { toHex } = await import('../../src/crypto/bytes.js');
    const ikA = generateX25519();
    const old = await listenTcp({
      host: '127.0.0.1',
      port: 0,
      async onConnection(conn) {
        decodeKindFrame(await conn.readFrame(10_000));
        const channel = await acceptChannel(conn, { staticKeyPair: ikA, prologue: PROLOGUE_ENROLLER_SERVICE, handshakeTimeoutMs: 10_000 });
        const msg = await channel.receive(10_000);
        await channel.send(encodeError(new EnrollError('ERR_FRAME_MALFORMED', `fetch bundles: ${msg.length - 3} trailing bytes after the last field`)));
        await channel.close();
      },
      onError() {},
    });
    try {
      const address = `tcp://127.0.0.1:${old.address().port}`;
      const refused = await run(['enroller', 'bundle', 'fetch', '--service', address, '--service-key', toHex(ikA.publicKey)], { home: w.enrollerHome });
      assertFailure(refused, 1, /trailing bytes/, /predates EKA v2.*--eka v1/);
    } finally {
      await old.close();
    }
  });
});

describe('whatever answers at a v2 bundle\'s address is not trusted', () => {
  test('a KEM prekey answer that is not 1184 bytes, or not the signed key, is ERR_KEM_PREKEY (exit 5, with a hint), and no enrollment message is sent', async () => {
    const { generateX25519 } = await import('../../src/crypto/x25519.js');
    const { signSpk } = await import('../../src/protocol/codec/index.js');
    const { listenTcp } = await import('../../src/transport/tcp.js');
    const { mlKem768Keygen } = await import('../../src/crypto/mlkem.js');
    const { sha256 } = await import('../../src/crypto/hash.js');
    const { KIND_KEM_PREKEY, decodeKindFrame } = await import('../../src/protocol/messages/service.js');
    const signed = mlKem768Keygen().publicKey;
    const answers = [signed.subarray(0, 1183), mlKem768Keygen().publicKey];
    const kinds: number[] = [];
    const impostor = await listenTcp({
      host: '127.0.0.1',
      port: 0,
      async onConnection(conn) {
        kinds.push(decodeKindFrame(await conn.readFrame(10_000)));
        await conn.readFrame(10_000);
        await conn.writeFrame(answers[kinds.length - 1] ?? new Uint8Array(1));
      },
      onError() {},
    });
    try {
      // A bundle validly signed by some IK_A, whose Addr leads to the impostor.
      const ikA = generateX25519();
      const spk = generateX25519();
      const text = bundleToText(
        signBundle(
          {
            bundleId: new Uint8Array(randomBytes(16)),
            ikA: ikA.publicKey,
            spkA: spk.publicKey,
            spkSig: signSpk(ikA.privateKey, spk.publicKey),
            opkA: generateX25519().publicKey,
            kemHash: sha256(signed),
            expiresAt: Math.floor(Date.now() / 1000) + 3600,
            addr: `tcp://127.0.0.1:${impostor.address().port}`,
          },
          ikA.privateKey,
        ),
      );
      const e = await w.newEnrollee('impostor');
      const short = await run(['enrollee', 'join', '--bundle', text], { home: e.home });
      assertFailure(short, 5, /1183 bytes, expected 1184/, /bundle's address/);
      const other = await run(['enrollee', 'join', '--bundle', text], { home: e.home });
      assertFailure(other, 5, /does not match the bundle's signed KEM_hash/, /bundle's address/);
      assert.deepEqual(kinds, [KIND_KEM_PREKEY, KIND_KEM_PREKEY], 'only KEM prekey requests reached it: no enrollment message');
    } finally {
      await impostor.close();
    }
  });
});
