/**
 * Token enrollment on the worker pool (issue 23 item 5, src/pool/cert-job.ts): the HTTPS
 * listener of `service start` (startHttpsServer) over real loopback TLS, a real ServiceHome
 * made by the built CLI's `service init`, its real SQLite store, and real worker threads.
 *
 * - 8 simultaneous uses of one token with 1 and with 4 workers: exactly one certificate,
 *   7 ERR_TOKEN_USED, one certificate recorded;
 * - a forged token of an unknown jti is still refused as forged (the signature's verdict
 *   precedes the store's, although the store is read before the job);
 * - a worker killed with token jobs in flight: those requests get 503 ERR_UNAVAILABLE, their
 *   tokens stay unused, the worker is replaced, and the same tokens then enroll.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { EnrollPool } from '../../src/pool/pool.js';
import { decodeTokenUnverified } from '../../src/protocol/token/claims.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { startHttpsServer, type RunningHttpsServer } from '../../src/roles/service/https.js';
import { createToken } from '../../src/roles/service/tokens.js';
import { createCsr } from '../../src/x509/csr.js';
import { generateKeyPair } from '../../src/x509/keys.js';
import { decodeBase64Body, decodeCertsOnly, encodeBase64Body } from '../../src/x509/pkcs7.js';
import { BIN } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { slowdown } from '../helpers/pace.js';

const SLOW = await slowdown();
const now = () => Math.floor(Date.now() / 1000);

let root: string;
let svc: ServiceHome;
let url: string;
let port: number;
let ca: string;
let storePath: string;
const logged: { decision: string; fields: Record<string, unknown> }[] = [];
const poolErrors: string[] = [];

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ockam-token-pool-'));
  port = await freePort();
  url = `https://127.0.0.1:${port}`;
  const home = join(root, 'svc');
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('OCKAM_ENROLL_')) env[k] = v;
  const r = spawnSync(process.execPath, [BIN, 'service', 'init', '--home', home, '--address', `tcp://127.0.0.1:${await freePort()}`, '--https-address', url], {
    encoding: 'utf8',
    env,
    timeout: Math.ceil(60_000 * SLOW),
  });
  assert.equal(r.status, 0, r.stderr);
  svc = await ServiceHome.open(home);
  ca = readFileSync(join(ServiceHome.dir(home), 'ca.cert.pem'), 'utf8');
  storePath = join(ServiceHome.dir(home), 'store.db');
});
after(async () => {
  await svc?.close();
  rmSync(root, { recursive: true, force: true });
});

async function withServer(workers: number, body: (pool: EnrollPool, https: RunningHttpsServer) => Promise<void>): Promise<void> {
  const pool = EnrollPool.start(svc, { workers, onError: (reason) => poolErrors.push(reason) });
  await pool.ready();
  assert.equal(pool.threadIds().length, workers);
  const pki = (await svc.pki())!;
  const https = await startHttpsServer(svc, pki, {
    host: '127.0.0.1',
    port,
    log: (decision, fields) => logged.push({ decision, fields }),
    ratePerIp: null,
    maxConnectionsPerIp: 1024,
    pool,
  });
  try {
    await body(pool, https);
  } finally {
    await https.close();
    await pool.close();
  }
}

interface Answer {
  status: number;
  body: string;
}

/** One simpleenroll on its own connection. */
function enroll(jwt: string, csr: Uint8Array): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/.well-known/est/simpleenroll`,
      { method: 'POST', ca, agent: false, headers: { 'Content-Type': 'application/pkcs10', Authorization: `Bearer ${jwt}` } },
      (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(encodeBase64Body(csr));
  });
}

/**
 * The same, held back: the connection is made and its headers sent at once, the body only on
 * send(). Sending the bodies of many held requests in one turn makes their jobs reach the pool
 * together, as under load; sent one by one, each TLS handshake here (in this process) takes
 * longer than a worker's job, and no worker ever holds two.
 */
function enrollHeld(jwt: string, csr: Uint8Array): { connected: Promise<void>; send: () => void; answer: Promise<Answer> } {
  let req!: ReturnType<typeof request>;
  const answer = new Promise<Answer>((resolve, reject) => {
    req = request(
      `${url}/.well-known/est/simpleenroll`,
      { method: 'POST', ca, agent: false, headers: { 'Content-Type': 'application/pkcs10', Authorization: `Bearer ${jwt}` } },
      (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
  });
  const connected = new Promise<void>((resolve, reject) => {
    req.once('socket', (socket) => socket.once('secureConnect', () => resolve()));
    req.once('error', reject);
  });
  req.flushHeaders();
  return { connected, send: () => req.end(encodeBase64Body(csr)), answer };
}

/** Certificates the store recorded for an identity, read on a connection of the test's own. */
function certificatesOf(idHex: string): number {
  const db = new Database(storePath, { readonly: true });
  try {
    return Number(db.prepare(`SELECT count(*) FROM certificates WHERE enrollee_id = ?`).pluck().get(Buffer.from(idHex, 'hex')));
  } finally {
    db.close();
  }
}

async function newRequest(name: string): Promise<{ jwt: string; idHex: string; jti: string; csr: Uint8Array }> {
  const t = await createToken(svc, { name, ttl: 600, enroller: null, now: now() });
  const idHex = Buffer.from(t.identityId).toString('hex');
  const csr = await createCsr({ keys: await generateKeyPair('p256'), keyType: 'p256', name, idHex });
  return { jwt: t.jwt, idHex, jti: decodeTokenUnverified(t.jwt).claims.jti, csr };
}

/** The one certificate a 200 answer carries names this identity. */
function assertCertificateFor(a: Answer, idHex: string): void {
  assert.equal(a.status, 200, a.body);
  const certs = decodeCertsOnly(decodeBase64Body(a.body, 65536, 'ERR_DECODE', 'the answer'));
  assert.equal(certs.length, 1);
  assert.ok(Buffer.from(certs[0]!).includes(Buffer.from(`urn:ockam-enroll:identity:${idHex}`, 'latin1')), 'the certificate names the identity');
}

describe('token enrollment on the worker pool', { timeout: Math.ceil(240_000 * SLOW) }, () => {
  for (const workers of [1, 4]) {
    it(`--workers ${workers}: 8 simultaneous uses of one token, exactly one certificate, 7 ERR_TOKEN_USED`, async () => {
      await withServer(workers, async (pool) => {
        const t = await newRequest(`race-${workers}`);
        const csrs = await Promise.all(
          Array.from({ length: 8 }, async () => createCsr({ keys: await generateKeyPair('p256'), keyType: 'p256', name: `race-${workers}`, idHex: t.idHex })),
        );
        const jobsBefore = pool.jobs;
        const answers = await Promise.all(csrs.map((csr) => enroll(t.jwt, csr)));
        const ok = answers.filter((a) => a.status === 200);
        assert.equal(ok.length, 1, JSON.stringify(answers.map((a) => a.status)));
        assertCertificateFor(ok[0]!, t.idHex);
        for (const a of answers.filter((x) => x.status !== 200)) {
          assert.equal(a.status, 401, a.body);
          assert.equal(JSON.parse(a.body).error, 'ERR_TOKEN_USED');
        }
        // Every use ran on the pool (8 jobs, one each), none in this thread.
        assert.equal(pool.jobs - jobsBefore, 8);
        assert.equal(certificatesOf(t.idHex), 1, 'one certificate recorded');
      });
    });
  }

  it('a forged token of an unknown jti is refused as forged, and a used one as used', async () => {
    await withServer(2, async () => {
      const t = await newRequest('forged');
      const [h, p, s] = t.jwt.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
      const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, jti: 'A'.repeat(24) })).toString('base64url')}.${s}`;
      const a = await enroll(forged, t.csr);
      assert.equal(a.status, 401, a.body);
      assert.equal(JSON.parse(a.body).error, 'ERR_TOKEN_SIGNATURE');
      assertCertificateFor(await enroll(t.jwt, t.csr), t.idHex);
      const again = await enroll(t.jwt, t.csr);
      assert.equal(again.status, 401, again.body);
      assert.equal(JSON.parse(again.body).error, 'ERR_TOKEN_USED');
    });
  });

  it('a worker killed with token jobs in flight: 503 for those, their tokens unused, the worker replaced, and the tokens then enroll', async () => {
    await withServer(2, async (pool) => {
      const N = 48;
      const reqs = await Promise.all(Array.from({ length: N }, (_, i) => newRequest(`kill-${i}`)));
      const started = pool.started;
      const held = reqs.map((r) => enrollHeld(r.jwt, r.csr));
      await Promise.all(held.map((h) => h.connected));
      for (const h of held) h.send();
      const runs = held.map((h) => h.answer);
      // Chosen in the same turn of the event loop that sees its jobs in flight (pool.test.ts).
      let victim: number | undefined;
      const deadline = Date.now() + Math.ceil(60_000 * SLOW);
      while ((victim = pool.threadIds().find((id) => pool.inFlight(id) >= 2)) === undefined) {
        if (Date.now() > deadline) assert.fail('no worker ever had 2 token jobs in flight');
        await new Promise((r) => setImmediate(r));
      }
      await pool.terminateThread(victim);
      const answers = await Promise.all(runs);
      const lost = reqs.filter((_, i) => answers[i]!.status !== 200);
      assert.ok(lost.length >= 2, `at least the killed worker's jobs were lost: ${JSON.stringify(answers.map((a) => a.status))}`);
      for (const [i, a] of answers.entries()) {
        if (a.status === 200) assertCertificateFor(a, reqs[i]!.idHex);
        else {
          assert.equal(a.status, 503, a.body);
          assert.equal(JSON.parse(a.body).error, 'ERR_UNAVAILABLE');
        }
      }
      // Nothing consumed for them: the token unused, no certificate recorded.
      for (const r of lost) {
        const found = await svc.tokens.getToken(r.jti);
        assert.equal(found?.token.usedAt, null, `the token of ${r.idHex} is still unused`);
        assert.equal(certificatesOf(r.idHex), 0);
      }
      assert.equal(pool.started, started + 1, 'the killed worker was replaced');
      assert.equal(pool.threadIds().length, 2);
      assert.ok(poolErrors.some((e) => /requests answered UNAVAILABLE; replaced/.test(e)), poolErrors.join('\n'));
      assert.ok(logged.some((l) => l.decision === 'cert-refused' && /ERR_UNAVAILABLE: pool worker/.test(String(l.fields.reason))), 'the log has the precise reason');
      // The same tokens enroll now, on the replacement among others.
      for (const r of lost) assertCertificateFor(await enroll(r.jwt, r.csr), r.idHex);
    });
  });
});
