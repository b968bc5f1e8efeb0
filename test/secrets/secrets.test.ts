/**
 * No secret leaves a keystore: a realistic run of every command (with and without --json,
 * error paths with OCKAM_ENROLL_DEBUG=1 stack traces, passphrase-encrypted keys for the
 * service, the enroller and one enrollee, onboarding over Noise, token enrollment and
 * renewal) is recorded — every stdout, stderr and the service's decision log, text and JSON.
 * At the end every private key is read back from the homes (each *.key file's private key,
 * decrypted with its passphrase where it is encrypted; the enrollee's session keys; the
 * service's SPK and unused OPK private keys and its store key; the CA, HTTPS and TLS private
 * keys of token enrollment), and the test fails if any of them appears in the record in hex,
 * base32, base64 or base64url (at every byte alignment) or as raw bytes. The store must hold
 * no prekey private key in plaintext.
 *
 * Then: keystore files are 0600 in 0700 directories, and a key file made readable by others
 * is refused by each role's commands, exit 1, with a `chmod 600` hint.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createHash } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { utf8 } from '../../src/crypto/bytes.js';
import { hkdfSha256 } from '../../src/crypto/hash.js';
import { KeyFile } from '../../src/keystore/keyfile.js';
import { base32Encode } from '../../src/protocol/codec/base32.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { CA_CERT_FILE, CA_KEY_FILE, HTTPS_CERT_FILE, HTTPS_KEY_FILE } from '../../src/roles/service/pki.js';
import { assertFailure, freePort, removeTempHomes, run, show, spawnCli, tempHome, type RunOptions, type RunResult } from '../helpers/cli.js';
import { sigkill, startLiveService, type LiveService } from '../helpers/lab.js';

const SERVICE_PASS = 'service passphrase, long enough';
const ENROLLER_PASS = 'enroller passphrase file';
const DEVICE_PASS = 'device b passphrase';

let root: string;
let S: string; // service home
let E: string; // enroller home
let A: string; // enrollee, plain keys, joins with a bundle
let B: string; // enrollee, encrypted keys, joins through `enroller onboard`
let C: string; // enrollee, token enrollment
let D: string; // enrollee never approved
let passFile: string;
let port: number;
let httpsPort: number;
let address: string;
let serviceKey = '';
const record: { what: string; text: string }[] = [];
const services: LiveService[] = [];

const SVC_ENV = { OCKAM_ENROLL_PASSPHRASE: SERVICE_PASS };
const B_ENV = { OCKAM_ENROLL_PASSPHRASE: DEVICE_PASS };
const DEBUG = { OCKAM_ENROLL_DEBUG: '1' };

/** Runs a command, records its output, and checks its exit status. */
async function cli(args: string[], opts: RunOptions & { expect?: number } = {}): Promise<RunResult> {
  const r = await run(args, opts);
  record.push({ what: `ockam-enroll ${args.join(' ')}`, text: `${r.stdout}\n${r.stderr}` });
  assert.equal(r.code, opts.expect ?? 0, `ockam-enroll ${args.join(' ')}: ${show(r)}`);
  return r;
}
async function json<T = any>(args: string[], opts: RunOptions = {}): Promise<T> {
  const r = await cli([...args, '--json'], opts);
  return JSON.parse(r.stdout) as T;
}
const withPass = (args: string[]) => [...args, '--passphrase-file', passFile];

before(async () => {
  root = tempHome('secrets');
  [S, E, A, B, C, D] = ['service', 'enroller', 'device-a', 'device-b', 'device-c', 'device-d'].map((n) => join(root, n)) as [string, string, string, string, string, string];
  passFile = join(root, 'enroller.pass');
  writeFileSync(passFile, `${ENROLLER_PASS}\n`, { mode: 0o600 });
  port = await freePort();
  httpsPort = await freePort();
  address = `tcp://127.0.0.1:${port}`;
});
after(async () => {
  for (const s of services) if (s.running()) await sigkill(s);
  removeTempHomes();
});

async function startService(extra: string[] = []): Promise<LiveService> {
  const s = await startLiveService(S, port, ['--https-listen', `127.0.0.1:${httpsPort}`, ...extra], SVC_ENV);
  services.push(s);
  return s;
}
async function stopService(s: LiveService): Promise<void> {
  await s.stop();
  record.push({ what: 'service start (decision log)', text: `${s.stdout()}\n${s.lines.join('\n')}` });
}

describe('secrets: a full run of every command', () => {
  it('records every output of a realistic run', { timeout: 300_000 }, async () => {
    // -- the service, its key encrypted under a passphrase
    serviceKey = (await json<{ service_key: string }>(['service', 'init', '--address', address, '--https-address', `https://127.0.0.1:${httpsPort}`], { home: S, env: SVC_ENV })).service_key;
    await cli(['service', 'init', '--address', address], { home: S, env: SVC_ENV, expect: 1 }); // exists
    await cli(['service', 'enrollee', 'list'], { home: S, env: { OCKAM_ENROLL_PASSPHRASE: 'wrong', ...DEBUG }, expect: 1 }); // wrong passphrase
    let service = await startService(['--json']);

    // -- the enroller, its key encrypted, the passphrase from a file
    const enrollerKey = (await json<{ enroller_key: string }>(withPass(['enroller', 'init']), { home: E })).enroller_key;
    await cli(withPass(['enroller', 'init']), { home: E, expect: 1 });
    await cli(['service', 'enroller', 'allow', enrollerKey, '--name', 'secrets terminal'], { home: S, env: SVC_ENV });
    await json(['service', 'enroller', 'list'], { home: S, env: SVC_ENV });
    await cli(['service', 'enroller', 'list'], { home: S, env: SVC_ENV });
    await json(withPass(['enroller', 'bundle', 'fetch', '--service', address, '--service-key', serviceKey, '--count', '4']), { home: E });
    await cli(withPass(['enroller', 'bundle', 'fetch', '--service', address, '--count', '3']), { home: E });
    await cli(withPass(['enroller', 'bundle', 'fetch', '--service', address, '--service-key', '00'.repeat(32)]), { home: E, env: DEBUG, expect: 5 });
    await cli(['enroller', 'bundle', 'fetch', '--service', address], { home: E, env: { OCKAM_ENROLL_PASSPHRASE: 'wrong', ...DEBUG }, expect: 1 });
    const bundles = (await json<{ bundles: { id: string }[] }>(['enroller', 'bundle', 'list'], { home: E })).bundles;
    await cli(['enroller', 'bundle', 'list'], { home: E });
    await json(['enroller', 'bundle', 'show', bundles[0]!.id], { home: E });
    await cli(['enroller', 'bundle', 'show', bundles[0]!.id, '--qr'], { home: E });

    // -- enrollee A: plain keys, approved by card, joins with the bundle
    await cli(['enrollee', 'init', '--name', 'Device A'], { home: A });
    const cardA = (await json<{ card: string }>(['enrollee', 'card'], { home: A })).card;
    await cli(['enrollee', 'card', '--qr'], { home: A });
    await cli(withPass(['enroller', 'approve', 'OEC1:NOTACARD']), { home: E, env: DEBUG, expect: 1 });
    const approved = await json<{ bundle_text: string }>(withPass(['enroller', 'approve', cardA, '--name', 'Device A', '--ttl', '30m']), { home: E });
    await cli(['enrollee', 'join', '--bundle', 'OEB1:AAAA'], { home: A, env: DEBUG, expect: 1 });
    await json(['enrollee', 'join', '--bundle', approved.bundle_text], { home: A });
    await cli(['enrollee', 'join', '--bundle', approved.bundle_text], { home: A, expect: 1 }); // already enrolled
    await json(['enrollee', 'status'], { home: A });
    await cli(['enrollee', 'status'], { home: A });

    // -- enrollee D: never approved
    await json(['enrollee', 'init'], { home: D });
    const unused = (await json<{ text: string }>(['enroller', 'bundle', 'show', bundles[3]!.id], { home: E })).text;
    await cli(['enrollee', 'join', '--bundle', unused], { home: D, env: DEBUG, expect: 3 });

    // -- enrollee B: encrypted keys, onboarded through `enroller onboard` over Noise XX
    const deviceB = await json<{ enrollee_id: string }>(['enrollee', 'init', '--name', 'Device B'], { home: B, env: B_ENV });
    const onboardPort = await freePort();
    const onboard = spawnCli(withPass(['enroller', 'onboard', '--listen', `127.0.0.1:${onboardPort}`, '--expect-enrollee', deviceB.enrollee_id, '--name', 'Device B', '--json']), { home: E });
    await onboard.waitForLine('waiting for the enrollee');
    await json(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${onboardPort}`, '--yes'], { home: B, env: B_ENV });
    const ob = await onboard.done();
    record.push({ what: 'enroller onboard', text: `${ob.stdout}\n${ob.stderr}` });
    assert.equal(ob.code, 0, show(ob));
    await json(['enrollee', 'status'], { home: B, env: B_ENV });
    await cli(['enrollee', 'status'], { home: B, env: { OCKAM_ENROLL_PASSPHRASE: 'wrong', ...DEBUG }, expect: 1 });

    // -- token enrollment (X.509): enrollee C
    const token = (await json<{ token: string }>(withPass(['enroller', 'token', 'create', '--name', 'device-c', '--service', address]), { home: E })).token;
    await cli(['enrollee', 'join', '--token', 'not.a.token'], { home: C, env: DEBUG, expect: 3 });
    await json(['enrollee', 'join', '--token', token], { home: C });
    await cli(['enrollee', 'join', '--token', token, '--force'], { home: C, env: DEBUG, expect: 3 }); // used
    await json(['enrollee', 'renew'], { home: C });

    // -- the service's view, and a revocation
    await stopService(service);
    service = await startService();
    const list = await json<{ enrollees: { id: string; name: string | null }[] }>(['service', 'enrollee', 'list'], { home: S, env: SVC_ENV });
    await cli(['service', 'enrollee', 'list', '--state', 'enrolled'], { home: S, env: SVC_ENV });
    const a = list.enrollees.find((x) => x.name === 'Device A')!;
    await json(['service', 'enrollee', 'show', a.id], { home: S, env: SVC_ENV });
    await cli(['service', 'enrollee', 'show', a.id.slice(0, 12)], { home: S, env: SVC_ENV });
    await cli(['service', 'enrollee', 'revoke', a.id], { home: S, env: SVC_ENV });
    await cli(['enrollee', 'status'], { home: A, env: DEBUG, expect: 3 });
    await stopService(service);
    assert.ok(record.length >= 45, `${record.length} outputs recorded`);
  });

  it('no private key, session key, prekey, store key or passphrase appears in any output, in any encoding', { timeout: 120_000 }, async () => {
    const secrets = await collectSecrets();
    // 8 key files, 2 × 2 session keys, the store key, the SPK, the unused OPKs, the CA and
    // HTTPS keys (PKCS#8 and scalar each), the TLS key of token enrollment.
    assert.ok(secrets.length >= 20, `collected ${secrets.length} secrets`);
    // The detector finds a key planted inside longer encodings, at any alignment.
    const probe = secrets[0]!.bytes;
    for (const pad of [0, 1, 2, 3, 4]) {
      const blob = Buffer.concat([Buffer.alloc(pad, 0xa5), Buffer.from(probe), Buffer.alloc(7, 0x5a)]);
      for (const planted of [blob.toString('base64'), blob.toString('base64url'), base32Encode(blob), blob.toString('hex').toUpperCase()]) {
        assert.ok(encodings(probe).some((n) => `x${planted}y`.includes(n.text)), `the detector misses a key at offset ${pad}`);
      }
    }
    const leaks: string[] = [];
    for (const { name, bytes } of secrets) {
      const needles = encodings(bytes);
      for (const r of record) {
        const hit = needles.find((n) => r.text.includes(n.text));
        if (hit) leaks.push(`${name} appears as ${hit.how} in the output of: ${r.what}`);
      }
    }
    for (const p of [SERVICE_PASS, ENROLLER_PASS, DEVICE_PASS]) {
      for (const r of record) if (r.text.includes(p)) leaks.push(`a passphrase appears in the output of: ${r.what}`);
    }
    assert.deepEqual(leaks, []);
  });

  it('the store holds no prekey private key, and not the store key, in plaintext', async () => {
    const secrets = (await collectSecrets()).filter((s) => /SPK|OPK|store key/.test(s.name));
    assert.ok(secrets.some((s) => s.name.startsWith('OPK')), 'some OPKs are still unused');
    const files = ['store.db', 'store.db-wal'].map((f) => join(S, 'service', f)).filter(existsSync);
    for (const file of files) {
      const raw = readFileSync(file);
      for (const s of secrets) {
        assert.equal(raw.indexOf(Buffer.from(s.bytes)), -1, `${s.name} is in ${file} in plaintext`);
        assert.equal(raw.indexOf(Buffer.from(Buffer.from(s.bytes).toString('hex'))), -1, `${s.name} is in ${file} as hex`);
      }
    }
  });
});

/** Every secret the run left in the homes, read back from the keystores themselves. */
async function collectSecrets(): Promise<{ name: string; bytes: Uint8Array }[]> {
  const out: { name: string; bytes: Uint8Array }[] = [];
  const passOf = (home: string) => (home === S ? SERVICE_PASS : home === E ? ENROLLER_PASS : home === B ? DEVICE_PASS : undefined);
  for (const home of [S, E, A, B, C, D]) {
    for (const role of ['service', 'enroller', 'enrollee']) {
      const dir = join(home, role);
      if (!existsSync(dir)) continue;
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (name.endsWith('.key')) {
          const kf = KeyFile.parse(readFileSync(path), path);
          const kp = await kf.unlock(kf.encrypted ? passOf(home) : undefined);
          out.push({ name: `${path} private key`, bytes: kp.privateKey });
          if (kf.encrypted) {
            // The encrypted file's own fields are not secret, but the key they hide is.
            assert.ok(!readFileSync(path, 'utf8').includes(Buffer.from(kp.privateKey).toString('hex')));
          }
        } else if (name === 'session.json') {
          const s = JSON.parse(readFileSync(path, 'utf8')) as { k_s2e: string; k_e2s: string };
          out.push({ name: `${path} k_s2e`, bytes: Buffer.from(s.k_s2e, 'hex') }, { name: `${path} k_e2s`, bytes: Buffer.from(s.k_e2s, 'hex') });
        } else if (name.endsWith('.pem') && readFileSync(path, 'utf8').includes('PRIVATE KEY')) {
          out.push(...pkcs8Secrets(`${path}`, createPrivateKey(readFileSync(path, 'utf8'))));
        }
      }
    }
  }
  // The service's store: its SPK and unused OPK private keys, and the store key that seals them.
  process.env.OCKAM_ENROLL_SECRETS_TEST_PASS = SERVICE_PASS;
  const svc = await ServiceHome.open(S, { passphrase: { kind: 'env', name: 'OCKAM_ENROLL_SECRETS_TEST_PASS' } });
  delete process.env.OCKAM_ENROLL_SECRETS_TEST_PASS;
  try {
    const ikA = svc.ikA.privateKey;
    out.push({ name: 'store key', bytes: hkdfSha256(ikA, new Uint8Array(32), utf8('ockam-enroll/v1/store-key'), 32) });
    const db = new Database(join(S, 'service', 'store.db'), { readonly: true });
    try {
      for (const r of db.prepare('SELECT public_key, private_sealed FROM signed_prekeys').all() as { public_key: Buffer; private_sealed: Buffer }[]) {
        out.push({ name: 'SPK private key', bytes: svc.sealer.open(new Uint8Array(r.private_sealed), 'spk', new Uint8Array(r.public_key)) });
      }
      for (const r of db.prepare('SELECT id, opk_private_sealed FROM bundles WHERE opk_private_sealed IS NOT NULL').all() as { id: Buffer; opk_private_sealed: Buffer }[]) {
        out.push({ name: `OPK private key of bundle ${r.id.toString('hex')}`, bytes: svc.sealer.open(new Uint8Array(r.opk_private_sealed), 'opk', new Uint8Array(r.id)) });
      }
    } finally {
      db.close();
    }
    // Token enrollment's CA and HTTPS keys, sealed beside their certificates.
    for (const [keyFile, certFile, purpose] of [
      [CA_KEY_FILE, CA_CERT_FILE, 'ca-key'],
      [HTTPS_KEY_FILE, HTTPS_CERT_FILE, 'https-key'],
    ] as const) {
      const sealed = svc.keystore.readBytes(keyFile, { secret: true });
      const pem = svc.keystore.readBytes(certFile);
      if (!sealed || !pem) continue;
      const der = Buffer.from(/-----BEGIN CERTIFICATE-----([^-]+)-----END/.exec(Buffer.from(pem).toString('utf8'))![1]!.replace(/\s+/g, ''), 'base64');
      const pkcs8 = svc.sealer.open(sealed, purpose, new Uint8Array(createHash('sha256').update(der).digest()));
      out.push({ name: `${keyFile} PKCS#8`, bytes: pkcs8 }, ...pkcs8Secrets(keyFile, createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' })));
    }
  } finally {
    await svc.close();
  }
  return out;
}

/** The private scalar of a P-256 or Ed25519 key, from its JWK. */
function pkcs8Secrets(name: string, key: ReturnType<typeof createPrivateKey>): { name: string; bytes: Uint8Array }[] {
  const jwk = key.export({ format: 'jwk' }) as { d?: string };
  assert.ok(jwk.d, `${name} has a private scalar`);
  return [{ name: `${name} private scalar`, bytes: Buffer.from(jwk.d, 'base64url') }];
}

/**
 * The ways a secret could be printed: hex (either case), base64 and base64url and base32
 * (either case) at every alignment inside a longer encoded string, and the raw bytes.
 */
function encodings(secret: Uint8Array): { how: string; text: string }[] {
  const b = Buffer.from(secret);
  const out = [
    { how: 'hex', text: b.toString('hex') },
    { how: 'HEX', text: b.toString('hex').toUpperCase() },
    { how: 'raw bytes', text: b.toString('latin1') },
  ];
  for (let s = 0; s < 3; s++) {
    const n = Math.floor((b.length - s) / 3) * 4;
    out.push({ how: `base64 (offset ${s})`, text: b.subarray(s).toString('base64').slice(0, n) });
    out.push({ how: `base64url (offset ${s})`, text: b.subarray(s).toString('base64url').slice(0, n) });
  }
  for (let s = 0; s < 5; s++) {
    const n = Math.floor((b.length - s) / 5) * 8;
    const t = base32Encode(b.subarray(s)).slice(0, n);
    out.push({ how: `base32 (offset ${s})`, text: t }, { how: `base32 lower case (offset ${s})`, text: t.toLowerCase() });
  }
  return out.filter((x) => x.text.length >= 16);
}

describe('secrets: keystore file modes', () => {
  it('every secret file is 0600 and every role directory 0700', () => {
    for (const home of [S, E, A, B, C, D]) {
      assert.equal(statSync(home).mode & 0o777, 0o700, `${home} is 0700`);
      for (const role of ['service', 'enroller', 'enrollee']) {
        const dir = join(home, role);
        if (!existsSync(dir)) continue;
        assert.equal(statSync(dir).mode & 0o777, 0o700, `${dir} is 0700`);
        for (const name of readdirSync(dir)) {
          // store.db holds sealed prekeys only (checked above); SQLite creates it with the
          // umask's mode, and the 0700 directory is what keeps others out of it.
          const secret = name.endsWith('.key') || name.endsWith('.sealed') || name === 'session.json' || /key.*\.pem$/.test(name);
          if (secret) assert.equal(statSync(join(dir, name)).mode & 0o077, 0, `${join(dir, name)} is readable by others`);
        }
      }
    }
  });

  it('a key file readable by others is refused by every role, exit 1, with a chmod 600 hint', async () => {
    const cases: { file: string; args: string[]; home: string; env?: Record<string, string> }[] = [
      { file: join(A, 'enrollee', 'eik_b.key'), args: ['enrollee', 'card'], home: A },
      { file: join(A, 'enrollee', 'ik_b.key'), args: ['enrollee', 'status'], home: A },
      { file: join(E, 'enroller', 'enroller.key'), args: withPass(['enroller', 'bundle', 'fetch', '--service', address]), home: E },
      { file: join(S, 'service', 'ik_a.key'), args: ['service', 'enrollee', 'list'], home: S, env: SVC_ENV },
    ];
    for (const c of cases) {
      chmodSync(c.file, 0o644);
      try {
        const r = await run(c.args, { home: c.home, ...(c.env ? { env: c.env } : {}) });
        assertFailure(r, 1, `${c.file} is accessible by other users (mode 0644)`, `chmod 600 ${c.file}`);
      } finally {
        chmodSync(c.file, 0o600);
      }
    }
    // And a key file 0640 (group-readable) too.
    const f = join(A, 'enrollee', 'eik_b.key');
    chmodSync(f, 0o640);
    try {
      assertFailure(await run(['enrollee', 'card'], { home: A }), 1, 'mode 0640', 'chmod 600');
    } finally {
      chmodSync(f, 0o600);
    }
  });
});
