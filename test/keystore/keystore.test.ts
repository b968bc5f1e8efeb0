import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { toHex } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { Keystore, type KeystoreOptions, type Role } from '../../src/keystore/keystore.js';
import type { PassphraseSource } from '../../src/keystore/passphrase.js';

let root: string;
let savedUmask: number;
before(() => {
  savedUmask = process.umask(0); // modes must not depend on the umask
  root = mkdtempSync(join(tmpdir(), 'ockam-ks-'));
});
after(() => {
  process.umask(savedUmask);
  rmSync(root, { recursive: true, force: true });
});

let n = 0;
function home(): string {
  return join(root, `home-${n++}`);
}

/** Low scrypt cost for the cases that do not test scrypt itself. */
const FAST: KeystoreOptions = { insecureScryptNForTestingOnly: 1024 };

function passFile(pass: string): PassphraseSource {
  const p = join(root, `pass-${n++}`);
  writeFileSync(p, pass + '\n', { mode: 0o600 });
  return { kind: 'file', path: p };
}

function mode(p: string): number {
  return statSync(p).mode & 0o777;
}

function throwsCode(fn: () => unknown, code: ErrorCode, check?: (e: any) => void): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isEnrollError(e), `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    check?.(e);
    return true;
  });
}

async function rejectsCode(p: Promise<unknown>, code: ErrorCode, check?: (e: any) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isEnrollError(e), `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    check?.(e);
    return true;
  });
}

describe('Keystore.open', () => {
  it('creates <home> and <home>/<role> with mode 0700 under umask 000', () => {
    const h = home();
    const ks = Keystore.open(h, 'service');
    assert.equal(ks.dir, join(h, 'service'));
    assert.equal(mode(h), 0o700);
    assert.equal(mode(ks.dir), 0o700);
  });

  it('hosts several roles in one home, each in its own directory', async () => {
    const h = home();
    const roles: Role[] = ['service', 'enroller', 'enrollee'];
    for (const r of roles) await Keystore.open(h, r).saveKeyPair('static.key', generateX25519(), { purpose: 'NOISE_STATIC' });
    assert.deepEqual(readdirSync(h).sort(), ['enrollee', 'enroller', 'service']);
    for (const r of roles) assert.deepEqual(readdirSync(join(h, r)), ['static.key']);
  });

  it('refuses a loose home or role directory with a chmod 700 hint, without fixing it', () => {
    const h = home();
    Keystore.open(h, 'enrollee');
    chmodSync(h, 0o755);
    throwsCode(() => Keystore.open(h, 'enrollee'), 'ERR_KEY_PERMISSIONS', (e) => assert.equal(e.hint, `run: chmod 700 ${h}`));
    assert.equal(mode(h), 0o755);
    chmodSync(h, 0o700);
    chmodSync(join(h, 'enrollee'), 0o750);
    throwsCode(() => Keystore.open(h, 'enrollee'), 'ERR_KEY_PERMISSIONS', (e) =>
      assert.equal(e.hint, `run: chmod 700 ${join(h, 'enrollee')}`),
    );
  });

  it('rejects an unknown role', () => {
    throwsCode(() => Keystore.open(home(), 'admin' as Role), 'ERR_INVALID_ARG');
    throwsCode(() => Keystore.open(home(), '../service' as Role), 'ERR_INVALID_ARG');
  });

  it('removes temp files older than ten minutes and keeps fresh ones (they may be a concurrent write)', () => {
    const h = home();
    const ks = Keystore.open(h, 'enrollee');
    const old = join(ks.dir, '.ik.tmp-0123456789abcdef');
    const young = join(ks.dir, '.ik.tmp-fedcba9876543210');
    writeFileSync(old, 'partial');
    writeFileSync(young, 'partial');
    const past = new Date(Date.now() - 3600_000);
    utimesSync(old, past, past);
    Keystore.open(h, 'enrollee');
    assert.equal(existsSync(old), false);
    assert.equal(existsSync(young), true);
  });
});

describe('Keystore.path: names', () => {
  const ks = () => Keystore.open(join(root, 'names'), 'enroller');
  for (const bad of ['../x', '..', '.', 'a/b', '/etc/passwd', '.hidden', '', 'UPPER', 'a b', 'x\u0000', 'é', 'x'.repeat(129)]) {
    it(`rejects ${JSON.stringify(bad)}`, () => throwsCode(() => ks().path(bad), 'ERR_INVALID_ARG'));
  }
  for (const good of ['ik', 'ik.json', 'spk_a-1.json', 'known_services.json', '0', 'x'.repeat(128)]) {
    it(`accepts ${JSON.stringify(good)}`, () => assert.equal(ks().path(good), join(ks().dir, good)));
  }
  it('every file method validates the name', async () => {
    const k = ks();
    throwsCode(() => k.hasKey('../x'), 'ERR_INVALID_ARG');
    throwsCode(() => k.loadPublicKey('../x'), 'ERR_INVALID_ARG');
    throwsCode(() => k.writeJson('../x', {}), 'ERR_INVALID_ARG');
    throwsCode(() => k.readBytes('../x'), 'ERR_INVALID_ARG');
    throwsCode(() => k.remove('../x'), 'ERR_INVALID_ARG');
    await rejectsCode(k.loadKeyPair('../x'), 'ERR_INVALID_ARG');
    await rejectsCode(k.saveKeyPair('../x', generateX25519(), { purpose: 'IK_B' }), 'ERR_INVALID_ARG');
  });
});

describe('Keystore: key pairs', () => {
  it('saves a 0600 key file under umask 000 and loads it back', async () => {
    const ks = Keystore.open(home(), 'enrollee');
    const kp = generateX25519();
    assert.equal(ks.hasKey('ik.json'), false);
    await ks.saveKeyPair('ik.json', kp, { purpose: 'IK_B' });
    assert.equal(ks.hasKey('ik.json'), true);
    assert.equal(mode(ks.path('ik.json')), 0o600);
    const back = await ks.loadKeyPair('ik.json');
    assert.deepEqual(back.publicKey, kp.publicKey);
    assert.deepEqual(back.privateKey, kp.privateKey);
    assert.deepEqual(ks.loadPublicKey('ik.json'), kp.publicKey);
    assert.equal(ks.readKeyFile('ik.json').purpose, 'IK_B');
  });

  it('refuses to overwrite without force (ERR_KEY_EXISTS, --force hint), keeping the old key', async () => {
    const ks = Keystore.open(home(), 'enrollee');
    const first = generateX25519();
    await ks.saveKeyPair('ik.json', first, { purpose: 'IK_B' });
    await rejectsCode(ks.saveKeyPair('ik.json', generateX25519(), { purpose: 'IK_B' }), 'ERR_KEY_EXISTS', (e) => {
      assert.equal(e.hint, 'use --force to replace it');
      assert.ok(e.message.includes(ks.path('ik.json')));
    });
    assert.deepEqual(ks.loadPublicKey('ik.json'), first.publicKey);
  });

  it('overwrites with force', async () => {
    const ks = Keystore.open(home(), 'enrollee');
    await ks.saveKeyPair('ik.json', generateX25519(), { purpose: 'IK_B' });
    const second = generateX25519();
    await ks.saveKeyPair('ik.json', second, { purpose: 'IK_B', force: true });
    assert.deepEqual(ks.loadPublicKey('ik.json'), second.publicKey);
    assert.equal(mode(ks.path('ik.json')), 0o600);
  });

  it('a missing key is ERR_KEY_MISSING with a hint to run the role init', async () => {
    const ks = Keystore.open(home(), 'service');
    await rejectsCode(ks.loadKeyPair('ik.json'), 'ERR_KEY_MISSING', (e) => assert.equal(e.hint, 'run: ockam-enroll service init'));
    throwsCode(() => ks.loadPublicKey('ik.json'), 'ERR_KEY_MISSING');
  });

  it('refuses a key file with a loose mode (ERR_KEY_PERMISSIONS, chmod 600 hint), even for the public key', async () => {
    const ks = Keystore.open(home(), 'enrollee');
    await ks.saveKeyPair('ik.json', generateX25519(), { purpose: 'IK_B' });
    chmodSync(ks.path('ik.json'), 0o644);
    const check = (e: any) => assert.equal(e.hint, `run: chmod 600 ${ks.path('ik.json')}`);
    await rejectsCode(ks.loadKeyPair('ik.json'), 'ERR_KEY_PERMISSIONS', check);
    throwsCode(() => ks.loadPublicKey('ik.json'), 'ERR_KEY_PERMISSIONS', check);
  });

  it('refuses a key file that is a symlink', async () => {
    const ks = Keystore.open(home(), 'enrollee');
    await ks.saveKeyPair('real.json', generateX25519(), { purpose: 'IK_B' });
    symlinkSync(ks.path('real.json'), ks.path('ik.json'));
    await rejectsCode(ks.loadKeyPair('ik.json'), 'ERR_KEY_PERMISSIONS');
  });

  it('a garbled key file is ERR_KEYSTORE_CORRUPT naming the file', async () => {
    const ks = Keystore.open(home(), 'enrollee');
    await ks.saveKeyPair('ik.json', generateX25519(), { purpose: 'IK_B' });
    const text = readFileSync(ks.path('ik.json'), 'utf8');
    rmSync(ks.path('ik.json'));
    writeFileSync(ks.path('ik.json'), text.slice(0, text.length / 2), { mode: 0o600 });
    await rejectsCode(ks.loadKeyPair('ik.json'), 'ERR_KEYSTORE_CORRUPT', (e) => assert.ok(e.message.includes(ks.path('ik.json'))));
  });

  it('never shows the private key through JSON.stringify or inspect of the Keystore or KeyPair', async () => {
    const pass = 'hunter2-passphrase';
    const ks = Keystore.open(home(), 'enrollee', { passphrase: passFile(pass), ...FAST });
    const kp = generateX25519();
    await ks.saveKeyPair('ik.json', kp, { purpose: 'IK_B', encrypt: true });
    const loaded = await ks.loadKeyPair('ik.json');
    const secret = toHex(kp.privateKey);
    for (const obj of [ks, loaded]) {
      for (const s of [JSON.stringify(obj), inspect(obj, { showHidden: true, depth: 10 }), String(obj), `${obj}`]) {
        assert.ok(!s.includes(secret), s);
        assert.ok(!s.includes(pass), s);
      }
    }
    assert.ok(!readFileSync(ks.path('ik.json'), 'utf8').includes(secret));
  });
});

describe('Keystore: encrypted key pairs', () => {
  it('round-trips at the real scrypt cost; the public key loads without a passphrase', async () => {
    const h = home();
    const src = passFile('correct horse battery staple');
    const ks = Keystore.open(h, 'service', { passphrase: src });
    const kp = generateX25519();
    await ks.saveKeyPair('spk.json', kp, { purpose: 'SPK_A', encrypt: true });
    const json = JSON.parse(readFileSync(ks.path('spk.json'), 'utf8'));
    assert.equal(json.encrypted.N, 32768);
    assert.equal('private_key' in json, false);
    assert.deepEqual((await ks.loadKeyPair('spk.json')).privateKey, kp.privateKey);
    const noPass = Keystore.open(h, 'service');
    assert.deepEqual(noPass.loadPublicKey('spk.json'), kp.publicKey);
  });

  it('an encrypted key without a passphrase source → ERR_PASSPHRASE with a hint', async () => {
    const h = home();
    await Keystore.open(h, 'service', { passphrase: passFile('p'), ...FAST }).saveKeyPair('spk.json', generateX25519(), {
      purpose: 'SPK_A',
      encrypt: true,
    });
    await rejectsCode(Keystore.open(h, 'service').loadKeyPair('spk.json'), 'ERR_PASSPHRASE', (e) =>
      assert.match(e.hint, /OCKAM_ENROLL_PASSPHRASE/),
    );
  });

  it('wrong passphrase → ERR_PASSPHRASE "wrong passphrase for <file>"', async () => {
    const h = home();
    const ks = Keystore.open(h, 'service', { passphrase: passFile('right'), ...FAST });
    await ks.saveKeyPair('spk.json', generateX25519(), { purpose: 'SPK_A', encrypt: true });
    await rejectsCode(
      Keystore.open(h, 'service', { passphrase: passFile('wrong') }).loadKeyPair('spk.json'),
      'ERR_PASSPHRASE',
      (e) => assert.equal(e.message, `wrong passphrase for ${ks.path('spk.json')}`),
    );
  });

  it('encrypt with no passphrase source → ERR_PASSPHRASE, nothing written', async () => {
    const ks = Keystore.open(home(), 'service');
    await rejectsCode(ks.saveKeyPair('spk.json', generateX25519(), { purpose: 'SPK_A', encrypt: true }), 'ERR_PASSPHRASE');
    assert.equal(ks.hasKey('spk.json'), false);
  });

  it('reads the passphrase from an environment variable', async () => {
    const name = `OCKAM_ENROLL_TEST_KS_${process.pid}`;
    process.env[name] = 'from the environment';
    try {
      const ks = Keystore.open(home(), 'enroller', { passphrase: { kind: 'env', name }, ...FAST });
      const kp = generateX25519();
      await ks.saveKeyPair('static.json', kp, { purpose: 'NOISE_STATIC', encrypt: true });
      assert.deepEqual((await ks.loadKeyPair('static.json')).privateKey, kp.privateKey);
    } finally {
      delete process.env[name];
    }
  });

  it('a clear key loads without asking the passphrase source', async () => {
    // The source would fail (missing file) if it were asked.
    const ks = Keystore.open(home(), 'enrollee', { passphrase: { kind: 'file', path: join(root, 'no-such-file') } });
    const kp = generateX25519();
    await ks.saveKeyPair('ik.json', kp, { purpose: 'IK_B' });
    assert.deepEqual((await ks.loadKeyPair('ik.json')).privateKey, kp.privateKey);
  });

  it('a ciphertext moved from another key file → ERR_PASSPHRASE (AAD binds it to its header)', async () => {
    const ks = Keystore.open(home(), 'enrollee', { passphrase: passFile('p'), ...FAST });
    await ks.saveKeyPair('a.json', generateX25519(), { purpose: 'IK_B', encrypt: true });
    await ks.saveKeyPair('b.json', generateX25519(), { purpose: 'IK_B', encrypt: true });
    const a = JSON.parse(readFileSync(ks.path('a.json'), 'utf8'));
    const b = JSON.parse(readFileSync(ks.path('b.json'), 'utf8'));
    a.encrypted = b.encrypted;
    ks.writeJson('a.json', a, { secret: true });
    await rejectsCode(ks.loadKeyPair('a.json'), 'ERR_PASSPHRASE');
  });
});

describe('Keystore: crashes and stale temp files', () => {
  it('ignores stale temp files next to a key', async () => {
    const ks = Keystore.open(home(), 'enrollee');
    const kp = generateX25519();
    await ks.saveKeyPair('ik.json', kp, { purpose: 'IK_B' });
    writeFileSync(join(ks.dir, '.ik.json.tmp-0123456789abcdef'), '{"ockam-enroll-key": 1, "kind": "x2', { mode: 0o600 });
    assert.deepEqual((await ks.loadKeyPair('ik.json')).publicKey, kp.publicKey);
    // And a new key can still be saved next to it without --force.
    await ks.saveKeyPair('spk.json', generateX25519(), { purpose: 'SPK_B' });
  });

  /**
   * Kills a child process (SIGKILL) at the given fs call while it replaces ik.json with
   * --force: a real crash, with no cleanup code running.
   */
  async function crashDuringSave(h: string, crashAt: 'renameSync' | 'fsyncSync'): Promise<void> {
    const ksUrl = new URL('../../src/keystore/keystore.js', import.meta.url).href;
    const xUrl = new URL('../../src/crypto/x25519.js', import.meta.url).href;
    const script = `
      import fs from 'node:fs';
      import { syncBuiltinESMExports } from 'node:module';
      const { Keystore } = await import(${JSON.stringify(ksUrl)});
      const { generateX25519 } = await import(${JSON.stringify(xUrl)});
      const ks = Keystore.open(${JSON.stringify(h)}, 'enrollee');
      const real = fs.${crashAt};
      fs.${crashAt} = (...args) => {
        process.kill(process.pid, 'SIGKILL');
        return real(...args);
      };
      syncBuiltinESMExports();
      await ks.saveKeyPair('ik.json', generateX25519(), { purpose: 'IK_B', force: true });
      console.log('not killed');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const [, signal] = await new Promise<[number | null, string | null]>((res) => child.on('exit', (c, s) => res([c, s])));
    assert.equal(signal, 'SIGKILL', out);
  }

  for (const crashAt of ['fsyncSync', 'renameSync'] as const) {
    it(`a crash at ${crashAt} leaves the old key readable and a temp file that open() later removes`, async () => {
      const h = home();
      const ks = Keystore.open(h, 'enrollee');
      const old = generateX25519();
      await ks.saveKeyPair('ik.json', old, { purpose: 'IK_B' });
      const before = readFileSync(ks.path('ik.json'));
      await crashDuringSave(h, crashAt);
      assert.deepEqual(readFileSync(ks.path('ik.json')), before);
      assert.deepEqual((await ks.loadKeyPair('ik.json')).privateKey, old.privateKey);
      const temps = readdirSync(ks.dir).filter((f) => f.startsWith('.ik.json.tmp-'));
      assert.equal(temps.length, 1);
      // Age it past the threshold; the next open removes it.
      const past = new Date(Date.now() - 3600_000);
      utimesSync(join(ks.dir, temps[0]!), past, past);
      Keystore.open(h, 'enrollee');
      assert.deepEqual(readdirSync(ks.dir), ['ik.json']);
    });
  }
});

describe('Keystore: JSON and raw files', () => {
  it('writeJson/readJson round-trip; absent → undefined; default 0644, secret 0600', () => {
    const ks = Keystore.open(home(), 'service');
    assert.equal(ks.readJson('state.json'), undefined);
    ks.writeJson('state.json', { a: [1, 2], b: 'x' });
    assert.deepEqual(ks.readJson('state.json'), { a: [1, 2], b: 'x' });
    assert.equal(mode(ks.path('state.json')), 0o644);
    ks.writeJson('token.json', { t: 'secret' }, { secret: true });
    assert.equal(mode(ks.path('token.json')), 0o600);
    assert.deepEqual(ks.readJson('token.json', { secret: true }), { t: 'secret' });
  });

  it('overwrites by default; overwrite: false → ERR_KEY_EXISTS', () => {
    const ks = Keystore.open(home(), 'service');
    ks.writeJson('s.json', 1);
    ks.writeJson('s.json', 2);
    assert.equal(ks.readJson('s.json'), 2);
    throwsCode(() => ks.writeJson('s.json', 3, { overwrite: false }), 'ERR_KEY_EXISTS');
    assert.equal(ks.readJson('s.json'), 2);
  });

  it('bad JSON → ERR_KEYSTORE_CORRUPT naming the file', () => {
    const ks = Keystore.open(home(), 'service');
    ks.writeBytes('s.json', '{"a": ');
    throwsCode(() => ks.readJson('s.json'), 'ERR_KEYSTORE_CORRUPT', (e) => assert.ok(e.message.includes(ks.path('s.json'))));
    ks.writeBytes('u.json', new Uint8Array([0x22, 0xff, 0x22]));
    throwsCode(() => ks.readJson('u.json'), 'ERR_KEYSTORE_CORRUPT');
  });

  it('a secret file with a loose mode is refused when read as secret', () => {
    const ks = Keystore.open(home(), 'service');
    ks.writeJson('token.json', { t: 1 }, { secret: true });
    chmodSync(ks.path('token.json'), 0o640);
    throwsCode(() => ks.readJson('token.json', { secret: true }), 'ERR_KEY_PERMISSIONS');
  });

  it('a value JSON cannot represent → ERR_INVALID_ARG', () => {
    const ks = Keystore.open(home(), 'service');
    const cyclic: any = {};
    cyclic.self = cyclic;
    throwsCode(() => ks.writeJson('c.json', cyclic), 'ERR_INVALID_ARG');
    throwsCode(() => ks.writeJson('c.json', undefined), 'ERR_INVALID_ARG');
    throwsCode(() => ks.writeJson('c.json', 10n), 'ERR_INVALID_ARG');
  });

  it('writeBytes/readBytes round-trip (a PEM) and remove', () => {
    const ks = Keystore.open(home(), 'enrollee');
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    ks.writeBytes('cert.pem', pem);
    assert.equal(Buffer.from(ks.readBytes('cert.pem')!).toString(), pem);
    ks.writeBytes('key.der', new Uint8Array([0, 1, 2, 255]), { secret: true });
    assert.deepEqual(ks.readBytes('key.der', { secret: true }), new Uint8Array([0, 1, 2, 255]));
    assert.equal(ks.readBytes('absent.pem'), undefined);
    assert.equal(ks.remove('cert.pem'), true);
    assert.equal(ks.remove('cert.pem'), false);
    assert.equal(ks.readBytes('cert.pem'), undefined);
  });

  it('a directory where a file should be is refused, not followed', () => {
    const ks = Keystore.open(home(), 'enrollee');
    mkdirSync(ks.path('cert.pem'));
    throwsCode(() => ks.readBytes('cert.pem'), 'ERR_KEY_PERMISSIONS');
  });
});
