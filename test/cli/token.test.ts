/**
 * Token enrollment end to end (docs/token-enrollment.md): the built binary as separate
 * processes, a real service with its TCP and HTTPS listeners on loopback, fresh temporary
 * homes, and openssl and curl as independent judges of what the CA issues.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeTokenUnverified } from '../../src/protocol/token/claims.js';
import { signToken } from '../../src/protocol/token/jwt.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { createToken } from '../../src/roles/service/tokens.js';
import { createCsr } from '../../src/x509/csr.js';
import { generateKeyPair } from '../../src/x509/keys.js';
import { encodeBase64Body } from '../../src/x509/pkcs7.js';
import { WAIT_TIMEOUT_MS } from '../helpers/cli.js';
import { patience, slowdown } from '../helpers/pace.js';
import { freePort } from '../helpers/ports.js';
import { BIN } from '../helpers/paths.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function env(): Record<string, string> {
  const e: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('OCKAM_ENROLL_') && k !== 'FORCE_COLOR') e[k] = v;
  return { ...e, NO_COLOR: '1' };
}

/** How much slower than idle the machine is now (pace.ts): the bounds below are idle times scaled by it. */
const SLOW = await slowdown();

/** Runs the CLI to completion (30 s at most on an idle machine). */
function cli(args: string[], home?: string): Run {
  const r = spawnSync(process.execPath, [BIN, ...args, ...(home ? ['--home', home] : [])], { encoding: 'utf8', env: env(), timeout: Math.ceil(30_000 * SLOW), stdio: ['ignore', 'pipe', 'pipe'] });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run, what: string): Run {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stderr}`);
  return r;
}

function refused(r: Run, exit: number, message: RegExp): void {
  assert.equal(r.code, exit, `expected exit ${exit}, got ${r.code}:\n${r.stderr}`);
  assert.match(r.stderr, message);
  assert.match(r.stderr, /ockam-enroll: error: /);
  assert.equal(r.stdout, '', 'nothing on stdout when refused');
}

function tool(cmd: string, args: string[]): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: Math.ceil(15_000 * SLOW) });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('token enrollment (X.509 over EST), end to end', { timeout: Math.ceil(180_000 * SLOW) }, () => {
  const root = mkdtempSync(join(tmpdir(), 'ockam-enroll-token-'));
  const home = (name: string) => join(root, name);
  const SVC = home('service');
  const ENR = home('enroller');
  let httpsPort = 0;
  let httpsUrl = '';
  let tcpAddress = '';
  let service: ChildProcess | undefined;
  let serviceLog = '';

  /** Waits until the service's decision log has a line matching `re` (bound: WAIT_TIMEOUT_MS on an idle machine, scaled). */
  async function logged(re: RegExp, timeoutMs = WAIT_TIMEOUT_MS): Promise<string> {
    const deadline = Date.now() + (await patience(timeoutMs));
    for (;;) {
      const line = serviceLog.split('\n').find((l) => re.test(l));
      if (line) return line;
      if (Date.now() > deadline) assert.fail(`the service never logged ${re}; log:\n${serviceLog}`);
      await sleep(50);
    }
  }

  /** A fresh token from the enroller, written to a file; returns the file and the token. */
  function newToken(name: string, extra: string[] = []): { file: string; jwt: string } {
    const file = join(root, `${name}-${Math.random().toString(36).slice(2)}.jwt`);
    ok(cli(['enroller', 'token', 'create', '--name', name, '--service', tcpAddress, '--out', file, ...extra], ENR), 'token create');
    return { file, jwt: readFileSync(file, 'utf8').trim() };
  }

  const tls = (dev: string) => ({
    key: join(home(dev), 'enrollee', 'tls-key.pem'),
    cert: join(home(dev), 'enrollee', 'tls-cert.pem'),
    ca: join(home(dev), 'enrollee', 'tls-ca.pem'),
  });

  function whoami(files: { key?: string; cert?: string; ca: string }): { status: number; body: string } {
    const args = ['-sS', '--max-time', String(Math.ceil(10 * SLOW)), '-w', '\n%{http_code}', '--cacert', files.ca];
    if (files.cert && files.key) args.push('--cert', files.cert, '--key', files.key);
    const r = tool('curl', [...args, `${httpsUrl}/whoami`]);
    assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
    const i = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
  }

  before(async () => {
    const tcpPort = await freePort();
    tcpAddress = `tcp://127.0.0.1:${tcpPort}`;
    httpsPort = await freePort();
    httpsUrl = `https://127.0.0.1:${httpsPort}`;
    ok(cli(['service', 'init', '--address', `tcp://127.0.0.1:${tcpPort}`, '--https-address', httpsUrl], SVC), 'service init');
    service = spawn(process.execPath, [BIN, 'service', 'start', '--listen', `127.0.0.1:${tcpPort}`, '--https-listen', `127.0.0.1:${httpsPort}`, '--home', SVC], {
      env: env(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    service.stderr!.on('data', (d: Buffer) => {
      serviceLog += d.toString();
    });
    await logged(/ https-listening /, 15_000);
    const key = ok(cli(['enroller', 'init'], ENR), 'enroller init').stdout.trim();
    ok(cli(['service', 'enroller', 'allow', key], SVC), 'allow');
  });

  after(async () => {
    if (service && service.exitCode === null) {
      const exited = new Promise((r) => service!.once('exit', r));
      service.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (service.exitCode === null) service.kill('SIGKILL');
    }
    rmSync(root, { recursive: true, force: true });
  });

  let identity = '';
  let firstSerial = '';

  it('enrolls a device with a token: key 0600, certificate, CA, and a JSON summary', () => {
    const { file, jwt } = newToken('sensor-12');
    assert.equal(statSync(file).mode & 0o777, 0o600, 'the token file is 0600');
    assert.equal(decodeTokenUnverified(jwt).claims.iss, httpsUrl);
    const r = ok(cli(['enrollee', 'join', '--token', `@${file}`, '--json'], home('dev1')), 'join');
    const out = JSON.parse(r.stdout);
    const f = tls('dev1');
    assert.equal(out.enrolled, true);
    assert.equal(out.name, 'sensor-12');
    assert.match(out.identity, /^[0-9a-f]{64}$/);
    assert.match(out.serial, /^[0-9a-f]{32}$/);
    assert.deepEqual([out.key, out.cert, out.ca], [f.key, f.cert, f.ca]);
    assert.ok(Date.parse(out.not_after) > Date.now() + 89 * 86400e3, 'valid for about 90 days');
    for (const p of Object.values(f)) assert.ok(existsSync(p), `${p} exists`);
    assert.equal(statSync(f.key).mode & 0o777, 0o600, 'the private key is 0600');
    assert.doesNotMatch(r.stdout + r.stderr, /PRIVATE KEY/);
    identity = out.identity;
    firstSerial = out.serial;
    const list = ok(cli(['service', 'enrollee', 'list'], SVC), 'list').stdout;
    assert.match(list, new RegExp(`${identity.slice(0, 16)}\\s+token\\s+enrolled\\s+sensor-12`));
  });

  it('openssl accepts the certificate: chains to the CA, clientAuth, the identity URI', (t) => {
    if (tool('openssl', ['version']).code !== 0) return t.skip('openssl not installed');
    const f = tls('dev1');
    const v = tool('openssl', ['verify', '-CAfile', f.ca, f.cert]);
    assert.equal(v.code, 0, v.stderr + v.stdout);
    assert.match(v.stdout, /: OK/);
    const purpose = tool('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', f.ca, f.cert]);
    assert.equal(purpose.code, 0, purpose.stderr + purpose.stdout);
    const text = tool('openssl', ['x509', '-in', f.cert, '-noout', '-text']).stdout;
    assert.match(text, /TLS Web Client Authentication/);
    assert.match(text, new RegExp(`URI:urn:ockam-enroll:identity:${identity}`));
    assert.match(text, /Subject: CN ?= ?sensor-12/);
    assert.match(text, /CA:FALSE/);
    // The CA itself, as kept by the service, is the one the enrollee stored.
    assert.equal(readFileSync(f.ca, 'utf8').trim(), readFileSync(join(SVC, 'service', 'ca.cert.pem'), 'utf8').trim());
  });

  it('/whoami answers with the identity over mutual TLS, and refuses a client without a certificate', () => {
    const f = tls('dev1');
    const me = whoami(f);
    assert.equal(me.status, 200, me.body);
    const j = JSON.parse(me.body);
    assert.deepEqual([j.id, j.name, j.serial], [identity, 'sensor-12', firstSerial]);
    const anon = whoami({ ca: f.ca });
    assert.equal(anon.status, 401, anon.body);
    assert.equal(JSON.parse(anon.body).error, 'ERR_CERT_REQUIRED');
  });

  it('refuses a reused token (ERR_TOKEN_USED, exit 3) and logs the refusal', async () => {
    const { file } = newToken('sensor-20');
    ok(cli(['enrollee', 'join', '--token', `@${file}`], home('dev20')), 'first use');
    refused(cli(['enrollee', 'join', '--token', `@${file}`], home('dev20b')), 3, /already used/);
    await logged(/ cert-refused .*ERR_TOKEN_USED/);
    assert.ok(!existsSync(tls('dev20b').cert), 'nothing stored');
    assert.ok(!existsSync(join(home('dev20b'), 'enrollee', 'tls-key.pending.pem')), 'no pending key left behind');
  });

  it('refuses an expired token (ERR_TOKEN_EXPIRED, exit 3), decided by the service', async () => {
    const { file, jwt } = newToken('sensor-21', ['--ttl', '1s']);
    // Until the second after its exp has begun (was a fixed 2.5 s: issue 24).
    await sleep(Math.max(0, decodeTokenUnverified(jwt).claims.exp * 1000 - Date.now() + 1100));
    refused(cli(['enrollee', 'join', '--token', `@${file}`], home('dev21')), 3, /expired/);
    await logged(/ cert-refused .*ERR_TOKEN_EXPIRED/);
  });

  it('refuses a token whose signature was tampered with (ERR_TOKEN_SIGNATURE, exit 5)', () => {
    const { jwt } = newToken('sensor-22');
    const [h, c, s] = jwt.split('.') as [string, string, string];
    const i = Math.floor(s.length / 2);
    const tampered = `${h}.${c}.${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
    refused(cli(['enrollee', 'join', '--token', tampered], home('dev22')), 5, /signature does not verify/);
    assert.ok(!existsSync(tls('dev22').key));
  });

  it('refuses a token signed by another service that names this one (ERR_TOKEN_SIGNATURE, exit 5)', async () => {
    const other = home('service-b');
    ok(cli(['service', 'init', '--address', `tcp://127.0.0.1:${await freePort()}`, '--https-address', httpsUrl], other), 'second service init');
    const svc = await ServiceHome.open(other);
    let jwt: string;
    try {
      jwt = (await createToken(svc, { name: 'sensor-23', ttl: 600, enroller: null, now: Math.floor(Date.now() / 1000) })).jwt;
    } finally {
      await svc.close();
    }
    assert.equal(decodeTokenUnverified(jwt).claims.iss, httpsUrl, 'it names the first service');
    refused(cli(['enrollee', 'join', '--token', jwt], home('dev23')), 5, /signature does not verify/);
  });

  it('refuses a token whose ca_fp names another CA (ERR_CA_MISMATCH, exit 5), even validly signed', async () => {
    const { jwt } = newToken('sensor-24');
    const claims = { ...decodeTokenUnverified(jwt).claims, ca_fp: 'f'.repeat(64) };
    // Re-signed with the service's own HTTPS key, so only the fingerprint check can refuse it.
    const svc = await ServiceHome.open(SVC);
    let forged: string;
    try {
      const pki = await svc.requirePki();
      forged = await signToken(claims, pki.httpsKey.keyObject, pki.tokenAlg);
    } finally {
      await svc.close();
    }
    refused(cli(['enrollee', 'join', '--token', forged], home('dev24')), 5, /is not the one the token names/);
  });

  it('refuses a CSR for another name (HTTP 403, ERR_CSR_IDENTITY), and the token stays usable', async () => {
    const { file, jwt } = newToken('sensor-25');
    const { claims } = decodeTokenUnverified(jwt);
    const keys = await generateKeyPair('p256');
    const csr = await createCsr({ keys, keyType: 'p256', name: 'someone-else', idHex: claims.sub });
    const ca = readFileSync(join(SVC, 'service', 'ca.cert.pem'), 'utf8');
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        `${httpsUrl}/.well-known/est/simpleenroll`,
        { method: 'POST', ca, headers: { 'Content-Type': 'application/pkcs10', Authorization: `Bearer ${jwt}` } },
        (r) => {
          let body = '';
          r.on('data', (d) => (body += d));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end(encodeBase64Body(csr));
    });
    assert.equal(res.status, 403, res.body);
    const j = JSON.parse(res.body);
    assert.equal(j.error, 'ERR_CSR_IDENTITY');
    assert.match(j.message, /someone-else/);
    await logged(/ cert-refused .*ERR_CSR_IDENTITY/);
    // Refused before anything was recorded: the same token still enrolls the right device,
    // here with an Ed25519 key, whose certificate then authenticates over TLS like a P-256 one.
    ok(cli(['enrollee', 'join', '--token', `@${file}`, '--key-type', 'ed25519'], home('dev25')), 'join after the refused CSR');
    const me = whoami(tls('dev25'));
    assert.equal(me.status, 200, me.body);
    assert.equal(JSON.parse(me.body).name, 'sensor-25');
  });

  it('8 simultaneous uses of one token, on 8 connections: exactly one certificate, 7 ERR_TOKEN_USED', async () => {
    const { jwt } = newToken('sensor-race');
    const { claims } = decodeTokenUnverified(jwt);
    const ca = readFileSync(join(SVC, 'service', 'ca.cert.pem'), 'utf8');
    const csrs = await Promise.all(
      Array.from({ length: 8 }, async () => createCsr({ keys: await generateKeyPair('p256'), keyType: 'p256', name: 'sensor-race', idHex: claims.sub })),
    );
    // Each on its own connection (agent: false), all sent before any answer is read.
    const results = await Promise.all(
      csrs.map(
        (csr) =>
          new Promise<{ status: number; body: string }>((resolve, reject) => {
            const req = request(
              `${httpsUrl}/.well-known/est/simpleenroll`,
              { method: 'POST', ca, agent: false, headers: { 'Content-Type': 'application/pkcs10', Authorization: `Bearer ${jwt}` } },
              (r) => {
                let body = '';
                r.on('data', (d) => (body += d));
                r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
              },
            );
            req.on('error', reject);
            req.end(encodeBase64Body(csr));
          }),
      ),
    );
    const issued = results.filter((r) => r.status === 200);
    assert.equal(issued.length, 1, JSON.stringify(results.map((r) => r.status)));
    for (const r of results.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 401, r.body);
      assert.equal(JSON.parse(r.body).error, 'ERR_TOKEN_USED');
    }
    const db = new Database(join(SVC, 'service', 'store.db'), { readonly: true });
    try {
      const n = db.prepare(`SELECT count(*) FROM certificates WHERE enrollee_id = ?`).pluck().get(Buffer.from(claims.sub, 'hex'));
      assert.equal(Number(n), 1, 'one certificate recorded');
    } finally {
      db.close();
    }
  });

  it('renews through mutual TLS: a new serial and key, the previous certificate valid until it expires', async () => {
    const f = tls('dev1');
    const old = { key: join(root, 'old-key.pem'), cert: join(root, 'old-cert.pem'), ca: f.ca };
    copyFileSync(f.key, old.key);
    copyFileSync(f.cert, old.cert);
    const r = ok(cli(['enrollee', 'renew', '--json'], home('dev1')), 'renew');
    const out = JSON.parse(r.stdout);
    assert.equal(out.identity, identity);
    assert.equal(out.previous_serial, firstSerial);
    assert.match(out.serial, /^[0-9a-f]{32}$/);
    assert.notEqual(out.serial, firstSerial);
    assert.notEqual(readFileSync(f.key, 'utf8'), readFileSync(old.key, 'utf8'), 'a new key');
    assert.equal(statSync(f.key).mode & 0o777, 0o600);
    await logged(new RegExp(` cert-renewed .*serial=${out.serial} previous=${firstSerial}`));
    assert.equal(JSON.parse(whoami(f).body).serial, out.serial);
    assert.equal(JSON.parse(whoami(old).body).serial, firstSerial, 'the previous certificate still works');
  });

  // The TLS key is encrypted like every other key when a passphrase source is given
  // (src/x509/encrypted-key.ts): PKCS#8 EncryptedPrivateKeyInfo, PBES2 with scrypt, which
  // openssl and curl read with the passphrase (README "Token enrollment").
  it('with a passphrase the TLS key is an encrypted PKCS#8 PEM (scrypt) that openssl and curl read; renew and whoami still work', async (t) => {
    const f = tls('dev-pp');
    const pp = join(root, 'tls-passphrase');
    writeFileSync(pp, 'correct horse battery\n', { mode: 0o600 });
    const { file } = newToken('sensor-pp');
    const r = ok(cli(['enrollee', 'join', '--token', `@${file}`, '--passphrase-file', pp, '--json'], home('dev-pp')), 'join with a passphrase');
    assert.equal(JSON.parse(r.stdout).key_encrypted, true);
    const pem = readFileSync(f.key, 'utf8');
    assert.match(pem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/);
    assert.doesNotMatch(pem, /BEGIN PRIVATE KEY/);
    assert.equal(statSync(f.key).mode & 0o777, 0o600);
    // Without a passphrase (dev1 above) the key stays plain PKCS#8, 0600, as the other keys do.
    assert.match(readFileSync(tls('dev1').key, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);

    // curl with --pass; /whoami knows the device.
    const curl = (key: string, pass: string | undefined) => {
      const args = ['-sS', '--max-time', '10', '-w', '\n%{http_code}', '--cacert', f.ca, '--cert', f.cert, '--key', key, ...(pass === undefined ? [] : ['--pass', pass])];
      return tool('curl', [...args, `${httpsUrl}/whoami`]);
    };
    const me = curl(f.key, 'correct horse battery');
    assert.equal(me.code, 0, me.stderr);
    assert.match(me.stdout, /\n200$/);
    assert.equal(JSON.parse(me.stdout.slice(0, me.stdout.lastIndexOf('\n'))).name, 'sensor-pp');
    assert.notEqual(curl(f.key, 'wrong horse').code, 0, 'curl cannot use the key with a wrong passphrase');

    if (tool('openssl', ['version']).code === 0) {
      const parsed = tool('openssl', ['asn1parse', '-in', f.key]).stdout;
      for (const part of [':PBES2', ':scrypt', ':aes-256-cbc']) assert.ok(parsed.includes(part), `${part} in\n${parsed}`);
      // As documented: openssl reads it with -passin (file: or env:), and its public key is the certificate's.
      const pub = tool('openssl', ['pkey', '-in', f.key, '-passin', `file:${pp}`, '-pubout']);
      assert.equal(pub.code, 0, pub.stderr);
      assert.equal(pub.stdout, tool('openssl', ['x509', '-in', f.cert, '-pubkey', '-noout']).stdout);
      const viaEnv = spawnSync('openssl', ['pkey', '-in', f.key, '-passin', 'env:TLS_PASS', '-noout'], { env: { ...process.env, TLS_PASS: 'correct horse battery' }, encoding: 'utf8' });
      assert.equal(viaEnv.status, 0, viaEnv.stderr);
      assert.notEqual(tool('openssl', ['pkey', '-in', f.key, '-passin', 'pass:wrong horse', '-noout']).code, 0);
      // The export the docs show for tools that want a plain key: to a 0600 file.
      const plain = join(root, 'plain-key.pem');
      const exp = spawnSync('sh', ['-c', `umask 077 && openssl pkey -in '${f.key}' -passin 'file:${pp}' -out '${plain}'`], { encoding: 'utf8' });
      assert.equal(exp.status, 0, exp.stderr);
      assert.match(readFileSync(plain, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
      assert.equal(statSync(plain).mode & 0o777, 0o600);
    } else {
      t.diagnostic('openssl not installed: the openssl checks were skipped');
    }

    // renew needs the passphrase to read the key, and encrypts the new one.
    refused(cli(['enrollee', 'renew'], home('dev-pp')), 1, /tls-key\.pem is encrypted and no passphrase was given/);
    assert.match(cli(['enrollee', 'renew'], home('dev-pp')).stderr, /hint: set OCKAM_ENROLL_PASSPHRASE or use --passphrase-file/);
    const bad = join(root, 'tls-passphrase-bad');
    writeFileSync(bad, 'wrong horse\n', { mode: 0o600 });
    refused(cli(['enrollee', 'renew', '--passphrase-file', bad], home('dev-pp')), 1, /wrong passphrase for .*tls-key\.pem/);
    const before = readFileSync(f.key, 'utf8');
    const rn = JSON.parse(ok(cli(['enrollee', 'renew', '--passphrase-file', pp, '--json'], home('dev-pp')), 'renew with the passphrase').stdout);
    assert.equal(rn.key_encrypted, true);
    const after = readFileSync(f.key, 'utf8');
    assert.notEqual(after, before, 'a new key');
    assert.match(after, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/);
    assert.equal(statSync(f.key).mode & 0o777, 0o600);
    await logged(new RegExp(` cert-renewed .*serial=${rn.serial}`));
    const again = curl(f.key, 'correct horse battery');
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout.slice(0, again.stdout.lastIndexOf('\n'))).serial, rn.serial);
  });

  it('revoking the identity puts every serial on the CRL, and /whoami and renew refuse it', async (t) => {
    const f = tls('dev1');
    const current = JSON.parse(readFileSync(join(home('dev1'), 'enrollee', 'tls-identity.json'), 'utf8')).serial as string;
    const r = ok(cli(['service', 'enrollee', 'revoke', identity.slice(0, 12), '--json'], SVC), 'revoke');
    assert.deepEqual(JSON.parse(r.stdout), { id: identity, state: 'revoked', certificates_revoked: 2 });
    const crlFile = join(root, 'crl.der');
    const got = tool('curl', ['-sS', '--max-time', String(Math.ceil(10 * SLOW)), '--cacert', f.ca, '-o', crlFile, '-w', '%{http_code} %{content_type}', `${httpsUrl}/crl`]);
    assert.equal(got.stdout, '200 application/pkix-crl', got.stderr);
    // While the revocation set is unchanged, the same CRL is served from memory: no signature
    // and no durable write per request (issue #18 finding 5; each GET used to mint a new CRL number).
    const crlFile2 = join(root, 'crl-again.der');
    const got2 = tool('curl', ['-sS', '--max-time', String(Math.ceil(10 * SLOW)), '--cacert', f.ca, '-o', crlFile2, '-w', '%{http_code}', `${httpsUrl}/crl`]);
    assert.equal(got2.stdout, '200', got2.stderr);
    assert.ok(readFileSync(crlFile2).equals(readFileSync(crlFile)), 'a second GET /crl returns the cached CRL, byte for byte');
    if (tool('openssl', ['version']).code === 0) {
      const text = tool('openssl', ['crl', '-inform', 'DER', '-in', crlFile, '-noout', '-text']);
      assert.equal(text.code, 0, text.stderr);
      for (const serial of [firstSerial, current]) assert.match(text.stdout, new RegExp(`Serial Number: ${serial.toUpperCase()}`));
      assert.match(text.stdout, /Next Update: /);
      const verified = tool('openssl', ['crl', '-inform', 'DER', '-in', crlFile, '-CAfile', f.ca, '-noout']);
      assert.equal(verified.code, 0, verified.stderr);
      assert.match(verified.stderr + verified.stdout, /verify OK/);
    } else t.diagnostic('openssl not installed: CRL contents not checked');
    const who = whoami(f);
    assert.equal(who.status, 403, who.body);
    assert.equal(JSON.parse(who.body).error, 'ERR_CERT_REVOKED');
    await logged(/ whoami-refused .*ERR_CERT_REVOKED/);
    refused(cli(['enrollee', 'renew'], home('dev1')), 3, /revoked/);
    const show = JSON.parse(ok(cli(['service', 'enrollee', 'show', identity, '--json'], SVC), 'show').stdout);
    assert.equal(show.state, 'revoked');
    assert.ok(show.certificates.every((c: { revoked: boolean }) => c.revoked));
  });

  it('token create: stdout and --json, the pinned service by default, no overwrite of --out without --force, names checked', () => {
    // No --service from here on: the enroller knows exactly one service (pinned by the first create).
    const plain = ok(cli(['enroller', 'token', 'create', '--name', 'sensor-30'], ENR), 'stdout token');
    assert.match(plain.stdout.trim(), /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const json = JSON.parse(ok(cli(['enroller', 'token', 'create', '--name', 'sensor-31', '--json'], ENR), 'json token').stdout);
    assert.equal(decodeTokenUnverified(json.token).claims.sub, json.identity);
    const { file } = newToken('sensor-32');
    const again = cli(['enroller', 'token', 'create', '--name', 'sensor-33', '--out', file], ENR);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already exists/);
    ok(cli(['enroller', 'token', 'create', '--name', 'sensor-33b', '--out', file, '--force'], ENR), '--force');
    refused(cli(['enroller', 'token', 'create', '--name', 'a,b'], ENR), 2, /--name must be/);
    refused(cli(['enroller', 'token', 'create', '--name', 'sensor-31'], ENR), 3, /already named/);
  });

  it('join refuses a home that already holds a certificate, unless --force', () => {
    const { file } = newToken('sensor-40');
    refused(cli(['enrollee', 'join', '--token', `@${file}`], home('dev25')), 1, /already holds a certificate/);
  });
});
