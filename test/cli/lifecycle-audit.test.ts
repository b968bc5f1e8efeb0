/**
 * The audit log end to end (src/audit, src/store/audit.ts): a real flow across processes —
 * the running service and the CLI commands beside it — is recorded as one hash chain;
 * `service audit export` gives it to other tools; `service audit verify` accepts it as
 * written and names, by seq, every entry edited, removed or reordered in the SQLite file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AUDIT_GENESIS, canonicalJson, entryHash } from '../../src/audit/chain.js';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import {
  assertFailure,
  errorLine,
  ok,
  okJson,
  removeTempHomes,
  run,
  serviceHasHttps,
  setupWorld,
  show,
  tempHome,
  type World,
} from '../helpers/cli.js';
import { approve, auditedEach, auditEntries, EXIT, join as joinWith, type ExportedEntry } from '../helpers/lifecycle.js';

let w: World;
before(async () => {
  w = await setupWorld({ bundles: 6 });
});
after(async () => {
  try {
    await w?.dispose();
  } finally {
    removeTempHomes();
  }
});

/** Checks an exported chain the way another tool would, from the documented formula. */
function assertChain(entries: ExportedEntry[]): void {
  let prev = AUDIT_GENESIS;
  entries.forEach((e, i) => {
    assert.equal(e.seq, i + 1, 'seq runs 1, 2, 3, … without gaps');
    assert.equal(e.prev, toHex(prev), `seq ${e.seq}: prev is the previous hash`);
    assert.equal(e.hash, toHex(entryHash(prev, e.seq, e.time, e.event, canonicalJson(e.fields))), `seq ${e.seq}: hash`);
    prev = fromHex(e.hash);
  });
}

/** A copy of the (stopped) service's home, for one tampering experiment. */
function copyHome(label: string): { home: string; db: Database.Database } {
  const home = tempHome(`audit-${label}`);
  cpSync(w.serviceHome, home, { recursive: true });
  return { home, db: new Database(join(home, 'service', 'store.db')) };
}

describe('the audit log', () => {
  const revokedEnrollerHome = () => join(w.root, 'enroller-2');
  let deviceId = '';
  let tokenJwt = '';

  test('a real flow is audited: approve, accept, reject with its reason, revoke (enrollee, enroller), token issue and use', async () => {
    // approve + accept
    const a = await w.newEnrollee('Robot Audit');
    const joined = await joinWith(a, await approve(w, a));
    assert.equal(joined.code, 0, show(joined));
    deviceId = a.id;

    // revoke (CLI, another process) + reject with its reason
    const b = await w.newEnrollee('Robot Revoked');
    const bundleB = await approve(w, b);
    await ok(['service', 'enrollee', 'revoke', b.id], { home: w.serviceHome });
    assertFailure(await joinWith(b, bundleB), EXIT.REJECTED, 'revoked');

    // an enroller allowed, then revoked (CLI)
    const key2 = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home: revokedEnrollerHome() })).enroller_key;
    await ok(['service', 'enroller', 'allow', key2, '--name', 'old terminal'], { home: w.serviceHome });
    await ok(['service', 'enroller', 'revoke', key2], { home: w.serviceHome });

    // token issue and use (token enrollment is served when this build has HTTPS)
    let tokenIdentity: string | undefined;
    if (await serviceHasHttps()) {
      const file = join(tempHome('audit-token'), 'sensor.jwt');
      await ok(['enroller', 'token', 'create', '--name', 'sensor-a', '--service', w.address, '--service-key', w.serviceKey, '--out', file], { home: w.enrollerHome });
      tokenJwt = readFileSync(file, 'utf8').trim();
      const t = await okJson<{ identity: string }>(['enrollee', 'join', '--token', `@${file}`], { home: tempHome('audit-token-device') });
      tokenIdentity = t.identity;
    }

    // Every entry the flow above wrote, from one export (polled until all are there: the
    // service appends from a thread of its own).
    type Fields = Record<string, unknown>;
    const event = (name: string, pred: (f: Fields) => boolean = () => true) => (e: ExportedEntry) => e.event === name && pred(e.fields);
    const found = await auditedEach(w.serviceHome, {
      listening: event('listening'),
      allowed: event('enroller-allowed', (f) => f.enroller === w.enrollerKey),
      bundles: event('bundles'),
      approved: event('approved', (f) => f.enrollee === a.id),
      accepted: event('accepted', (f) => f.enrollee === a.id),
      revoked: event('enrollee-revoked', (f) => f.enrollee === b.id),
      rejected: event('rejected', (f) => f.enrollee === b.id),
      allowed2: event('enroller-allowed', (f) => f.enroller === key2),
      revoked2: event('enroller-revoked', (f) => f.enroller === key2),
      ...(tokenIdentity !== undefined
        ? { tokenCreated: event('token-created', (f) => f.enrollee === tokenIdentity), certIssued: event('cert-issued', (f) => f.enrollee === tokenIdentity) }
        : {}),
    } as Record<string, (e: ExportedEntry) => boolean>);
    const byEvent = (key: string): Fields => found[key]!.fields;
    assert.equal(byEvent('listening').service_key, w.serviceKey);
    assert.equal(byEvent('allowed').enroller_name, 'test terminal');
    assert.equal(byEvent('bundles').enroller, w.enrollerKey);
    assert.equal(byEvent('approved').name, 'Robot Audit');
    const accepted = byEvent('accepted');
    assert.equal(accepted.name, 'Robot Audit');
    assert.equal(accepted.enroller, w.enrollerKey);
    assert.match(String(accepted.ik_b), /^[0-9a-f]{64}$/);
    assert.match(String(accepted.credential_expires_at), /^\d{4}-/);
    assert.equal(byEvent('revoked').name, 'Robot Revoked');
    assert.match(String(byEvent('rejected').reason), /^ERR_ENROLLEE_REVOKED/);
    assert.equal(byEvent('allowed2').enroller_name, 'old terminal');
    assert.ok(found.revoked2, 'the enroller revocation is audited');
    if (tokenIdentity !== undefined) {
      assert.equal(byEvent('tokenCreated').name, 'sensor-a');
      assert.match(String(byEvent('certIssued').serial), /^[0-9a-f]{32}$/);
    }
  });

  test('export writes the whole chain, which re-verifies from the documented formula; verify agrees', async () => {
    const entries = await auditEntries(w.serviceHome);
    assert.ok(entries.length >= 8, `${entries.length} entries`);
    assertChain(entries);
    const v = await okJson<{ ok: boolean; entries: number; head: { seq: number; hash: string } }>(['service', 'audit', 'verify'], { home: w.serviceHome });
    assert.equal(v.ok, true);
    assert.ok(v.entries >= entries.length);
    const human = await ok(['service', 'audit', 'verify'], { home: w.serviceHome });
    assert.match(human.stdout, /^ok: \d+ entries, head seq \d+ [0-9a-f]{64}\n$/);
    // The text export: one line per entry.
    const text = await ok(['service', 'audit', 'export', '--since', '2'], { home: w.serviceHome });
    assert.match(text.stdout.split('\n')[0]!, /^2 \S+ \S+ .*hash=[0-9a-f]{64}$/);
  });

  test('no secret reaches the audit log', async () => {
    const dump = JSON.stringify(await auditEntries(w.serviceHome));
    const ikA = JSON.parse(readFileSync(join(w.serviceHome, 'service', 'ik_a.key'), 'utf8')) as { private_key: string };
    assert.ok(!dump.includes(ikA.private_key), 'IK_A private key');
    if (tokenJwt) assert.ok(!dump.includes(tokenJwt) && !dump.includes(tokenJwt.split('.')[2]!), 'the one-time token');
    const enrolleeDir = join(w.root);
    for (const d of readdirSync(enrolleeDir).filter((n) => n.startsWith('enrollee-'))) {
      for (const f of ['eik_b.key', 'ik_b.key']) {
        try {
          const k = JSON.parse(readFileSync(join(enrolleeDir, d, 'enrollee', f), 'utf8')) as { private_key: string };
          assert.ok(!dump.includes(k.private_key), `${d}/${f}`);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
    }
  });

  describe('tampering with the SQLite file is detected and named by seq', () => {
    let acceptedSeq = 0;
    let last = 0;
    before(async () => {
      // A quiescent store: the service's audit thread has written everything and closed.
      await w.service.stop();
      const entries = await auditEntries(w.serviceHome);
      acceptedSeq = entries.find((e) => e.event === 'accepted' && e.fields.enrollee === deviceId)!.seq;
      last = entries[entries.length - 1]!.seq;
      assert.equal(entries[entries.length - 1]!.event, 'stopped');
    });

    test('an edited entry', async () => {
      const { home, db } = copyHome('edit');
      db.prepare(`UPDATE audit SET fields = replace(fields, 'Robot Audit', 'Robot Other') WHERE seq = ?`).run(acceptedSeq);
      db.close();
      const r = await run(['service', 'audit', 'verify'], { home });
      assertFailure(r, EXIT.FAILURE, `the audit log does not verify: seq ${acceptedSeq}: edited`, 'earlier `service audit export`');
    });

    test('a removed entry', async () => {
      const { home, db } = copyHome('delete');
      db.prepare(`DELETE FROM audit WHERE seq = 3`).run();
      db.close();
      assertFailure(await run(['service', 'audit', 'verify'], { home }), EXIT.FAILURE, 'seq 3: missing: the entry was removed');
    });

    test('two swapped entries', async () => {
      const { home, db } = copyHome('swap');
      const get = db.prepare(`SELECT time, event, fields, prev, hash FROM audit WHERE seq = ?`);
      const put = db.prepare(`UPDATE audit SET time = @time, event = @event, fields = @fields, prev = @prev, hash = @hash WHERE seq = @seq`);
      const [two, four] = [get.get(2), get.get(4)] as Record<string, unknown>[];
      db.transaction(() => {
        put.run({ ...four, seq: 2 });
        put.run({ ...two, seq: 4 });
      })();
      db.close();
      const r = await run(['service', 'audit', 'verify'], { home });
      assertFailure(r, EXIT.FAILURE, 'seq 2: holds the entry written as seq 4: entries were reordered');
      assert.ok(r.stderr.includes('audit: seq 4: holds the entry written as seq 2'), show(r));
      assert.match(errorLine(r), /and 1 more problem/);
    });

    test('an entry edited and re-hashed, and removal of the newest entries (against a head recorded earlier)', async () => {
      const head = (await okJson<{ head: { hash: string } }>(['service', 'audit', 'verify'], { home: w.serviceHome })).head.hash;
      const { home, db } = copyHome('tail');
      db.prepare(`DELETE FROM audit WHERE seq = ?`).run(last);
      db.close();
      await ok(['service', 'audit', 'verify'], { home }); // a shorter chain is consistent…
      const r = await run(['service', 'audit', 'verify', '--head', head], { home }); // …but the head is gone
      assertFailure(r, EXIT.FAILURE, `seq ${last}: the expected head ${head} is not in the log`);

      const re = copyHome('rehash');
      const row = re.db.prepare(`SELECT * FROM audit WHERE seq = 2`).get() as { time: string; event: string; fields: string; prev: Buffer };
      const fields = row.fields.replace('}', ',"forged":true}');
      re.db.prepare(`UPDATE audit SET fields = ?, hash = ? WHERE seq = 2`).run(fields, Buffer.from(entryHash(row.prev, 2, row.time, row.event, fields)));
      re.db.close();
      assertFailure(await run(['service', 'audit', 'verify'], { home: re.home }), EXIT.FAILURE, 'seq 3: does not follow seq 2');
    });

    test('verify needs no passphrase and refuses a home without a service', async () => {
      assertFailure(await run(['service', 'audit', 'verify'], { home: tempHome('audit-none') }), EXIT.FAILURE, 'no service is initialised');
      assertFailure(await run(['service', 'audit', 'verify', '--head', 'xyz'], { home: w.serviceHome }), EXIT.USAGE, '--head must be 64 hex characters');
    });
  });
});
