/**
 * `service backup` and `service restore` on a SQLite store (issue #21 item 5,
 * docs/operations.md "Backup and restore"): a backup taken while 8 clients enroll is one
 * consistent state (every enrollment acknowledged before it began is in it, nothing that
 * was never acknowledged), mode 0600, nothing left beside it; restore refuses under the
 * running service and over an existing store without --force, keeps the old store aside,
 * and the restored store verifies (`service audit verify`), shows the restore in `service
 * status`, and serves: a device acknowledged after the backup enrolls again. Restore
 * refuses a file that is not a store, a store of another service, and a tampered audit log.
 * A backup killed with SIGKILL half-way leaves the previous backup file as it was.
 * Real processes, real loopback TCP, real SQLite.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { toHex } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { freePort, okJson, removeTempHomes, run, show, sleep, spawnCli } from '../helpers/cli.js';
import { enrollChunks, messageFor, openAcceptance, rawExchange, serviceWithEnrollees, startLiveService, type LabEnrollee } from '../helpers/lab.js';

after(() => removeTempHomes());

const N = 400;

describe('service backup during an enrollment load, then service restore', () => {
  it('backs up one consistent state while enrollments go on; the restored store verifies and serves', { timeout: 240_000 }, async () => {
    const { service, enrollees, home, root } = await serviceWithEnrollees(['--rate-per-ip', 'off', '--read-timeout', '30s'], N, 'backup');
    const backupDir = join(root, 'backups');
    mkdirSync(backupDir);
    const file = join(backupDir, 'store.db');
    const acked: string[] = [];
    let ackedAtStart: Set<string> | undefined;
    let ackedAtEnd = -1;
    let backup: Promise<Record<string, any>> | undefined;
    let next = 0;
    const byHex = new Map<string, LabEnrollee>(enrollees.map((e) => [e.hex, e]));
    const worker = async () => {
      while (next < N) {
        const e = enrollees[next++]!;
        const attempt = messageFor(e);
        const out = await rawExchange(service.port, enrollChunks(attempt.message), { waitMs: 30_000 });
        if (out.frames[0] && openAcceptance(attempt, out.frames[0])) {
          acked.push(e.hex);
          if (acked.length === 40 && backup === undefined) {
            ackedAtStart = new Set(acked);
            backup = okJson<Record<string, any>>(['service', 'backup', '--to', file], { home }).then((r) => {
              ackedAtEnd = acked.length;
              return r;
            });
          }
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const b = await backup!;
    process.stderr.write(`# backup: ${b.enrollees} enrollees, audit seq ${b.audit_head?.seq}, taken after ${ackedAtStart!.size} acks, done by ${ackedAtEnd}; ${acked.length} acked in all\n`);
    assert.ok(ackedAtEnd < acked.length, 'enrollments were acknowledged after the backup finished: it was taken under load');
    assert.equal(b.to, file);
    assert.equal(statSync(file).mode & 0o777, 0o600, 'the backup is mode 0600');
    assert.deepEqual(readdirSync(backupDir), ['store.db'], 'nothing but the backup beside it');
    assert.match(b.audit_head.hash, /^[0-9a-f]{64}$/);
    const live = await okJson<any>(['service', 'status'], { home });
    assert.equal(live.last_backup.to, file, 'status shows the last backup');
    assert.equal(live.last_backup.head_seq, b.audit_head.seq);

    // Refused while the service runs, and the store is untouched.
    const busy = await run(['service', 'restore', '--from', file, '--force'], { home });
    assert.equal(busy.code, 1, show(busy));
    assert.match(busy.stderr, new RegExp(`error: a service \\(pid ${service.child.pid}\\) is running on this home`));
    await service.stop();

    const noForce = await run(['service', 'restore', '--from', file], { home });
    assert.equal(noForce.code, 1, show(noForce));
    assert.match(noForce.stderr, /store\.db exists: restoring replaces it/);
    assert.match(noForce.stderr, /hint: add --force/);

    const r = await okJson<any>(['service', 'restore', '--from', file, '--force'], { home });
    assert.ok(r.aside && existsSync(r.aside), `the old store is kept aside: ${r.aside}`);
    assert.equal(r.enrollees, b.enrollees);
    assert.equal(r.audit.head.seq, b.audit_head.seq + 1, 'the restore is the next audit entry');

    // One state: every enrollment acknowledged before the backup began, nothing never acknowledged.
    const listed = await okJson<{ enrollees: { id: string; state: string }[] }>(['service', 'enrollee', 'list', '--state', 'enrolled'], { home });
    const enrolled = new Set(listed.enrollees.map((e) => e.id));
    for (const hex of ackedAtStart!) assert.ok(enrolled.has(hex), `acknowledged before the backup began, so in it: ${hex}`);
    const ackedAll = new Set(acked);
    for (const hex of enrolled) assert.ok(ackedAll.has(hex), `enrolled in the backup, so acknowledged: ${hex}`);
    assert.ok(enrolled.size <= ackedAtEnd);
    const verify = await okJson<any>(['service', 'audit', 'verify'], { home });
    assert.equal(verify.ok, true);
    assert.deepEqual(verify.head, r.audit.head);
    const status = await okJson<any>(['service', 'status'], { home });
    assert.equal(status.enrollees.enrolled, enrolled.size);
    assert.equal(status.restored.backup_head_seq, b.audit_head.seq);
    assert.equal(status.restored.backup_taken_at, b.taken_at);
    assert.match(status.restored.note, /must enroll again/);

    // The restored store serves: a device acknowledged after the backup enrolls again.
    const lost = acked.find((hex) => !enrolled.has(hex));
    assert.ok(lost, 'some acknowledged enrollment is not in the backup');
    const port = await freePort();
    const again = await startLiveService(home, port, ['--rate-per-ip', 'off']);
    try {
      const attempt = messageFor(byHex.get(lost)!);
      const out = await rawExchange(port, enrollChunks(attempt.message), { waitMs: 30_000 });
      assert.ok(out.frames[0] && openAcceptance(attempt, out.frames[0]), `enrolled again after the restore: ${out.how}`);
    } finally {
      await again.stop();
    }
  });
});

describe('service restore refuses what is not this service\'s intact store', () => {
  it('a file that is not a store, another service\'s store, a tampered audit log; nothing changes', { timeout: 120_000 }, async () => {
    const { service, home, root } = await serviceWithEnrollees([], 2, 'restore-refusals');
    const file = join(root, 'b.db');
    try {
      // A decision the CLI audits before it returns (the running service's own entries are
      // appended by its audit thread, maybe after the backup), so that the copy has an entry to tamper with.
      await okJson(['service', 'enroller', 'allow', toHex(generateX25519().publicKey), '--name', 'audited'], { home });
      await okJson(['service', 'backup', '--out', file], { home });
    } finally {
      await service.stop();
    }
    const storeBefore = statSync(join(home, 'service', 'store.db')).mtimeMs;

    const junk = join(root, 'junk.db');
    writeFileSync(junk, 'not a database at all, but long enough to look like one '.repeat(100));
    const r1 = await run(['service', 'restore', '--from', junk, '--force'], { home });
    assert.equal(r1.code, 1, show(r1));
    assert.match(r1.stderr, /error: .*junk\.db is not a SQLite database/);

    const other = await serviceWithEnrollees([], 0, 'restore-other');
    await other.service.stop();
    const otherFile = join(root, 'other.db');
    await okJson(['service', 'backup', '--to', otherFile], { home: other.home });
    const r2 = await run(['service', 'restore', '--from', otherFile, '--force'], { home });
    assert.equal(r2.code, 1, show(r2));
    assert.match(r2.stderr, /belongs to another service: its signed prekey 1 is not signed by this home's service key/);

    const tampered = join(root, 'tampered.db');
    copyFileSync(file, tampered);
    const db = new Database(tampered);
    try {
      const n = db.prepare(`UPDATE audit SET fields = '{"edited":true}' WHERE seq = 1`).run().changes;
      assert.equal(n, 1, 'the backup has an audit entry to edit');
    } finally {
      db.close();
    }
    const r3 = await run(['service', 'restore', '--from', tampered, '--force'], { home });
    assert.equal(r3.code, 1, show(r3));
    assert.match(r3.stderr, /the audit log in .*tampered\.db does not verify: seq 1/);

    assert.equal(statSync(join(home, 'service', 'store.db')).mtimeMs, storeBefore, 'the store was not touched');
    assert.deepEqual(readdirSync(join(home, 'service')).filter((f) => f.includes('before-restore') || f.includes('.tmp-')), []);

    // A new home from the kept identity files and the backup: no --force needed, it serves listings.
    const fresh = join(root, 'fresh-home');
    mkdirSync(join(fresh, 'service'), { recursive: true, mode: 0o700 });
    for (const f of readdirSync(join(home, 'service')).filter((x) => !x.startsWith('store.db'))) copyFileSync(join(home, 'service', f), join(fresh, 'service', f));
    const made = await okJson<any>(['service', 'restore', '--from', file], { home: fresh });
    assert.equal(made.aside, null);
    const list = await okJson<{ enrollees: unknown[] }>(['service', 'enrollee', 'list'], { home: fresh });
    assert.equal(list.enrollees.length, 2);
    assert.equal((await okJson<any>(['service', 'audit', 'verify'], { home: fresh })).ok, true);
  });
});

describe('service backup killed half-way', () => {
  it('leaves the previous backup whole: the target is only ever renamed into place', { timeout: 120_000 }, async () => {
    const { service, home, root } = await serviceWithEnrollees([], 1, 'backup-crash');
    await service.stop();
    // A store large enough that the copy takes a while: 48 MiB in a table of its own.
    const db = new Database(join(home, 'service', 'store.db'));
    try {
      db.exec(`CREATE TABLE ballast (b BLOB)`);
      const ins = db.prepare(`INSERT INTO ballast (b) VALUES (randomblob(1048576))`);
      db.transaction(() => {
        for (let i = 0; i < 48; i++) ins.run();
      })();
    } finally {
      db.close();
    }
    const dir = join(root, 'backups');
    mkdirSync(dir);
    const file = join(dir, 'store.db');
    await okJson(['service', 'backup', '--to', file], { home });
    const before = readFileSync(file);
    // Kill the next backup with SIGKILL as soon as its temporary file appears.
    const bg = spawnCli(['service', 'backup', '--to', file], { home });
    let killedMidway = false;
    while (bg.running()) {
      if (readdirSync(dir).some((f) => f.includes('.tmp-'))) {
        bg.kill('SIGKILL');
        killedMidway = true;
        break;
      }
      await sleep(2);
    }
    await bg.child.catch(() => undefined);
    if (killedMidway) {
      assert.ok(before.equals(readFileSync(file)), 'the previous backup is byte for byte what it was');
      assert.ok(readdirSync(dir).some((f) => f.includes('.tmp-')), 'what the killed copy wrote is only its temporary file');
    } else {
      // It finished before the poll saw its temporary file: the target is then the new, whole copy.
      process.stderr.write('# backup-crash: the backup finished before it could be killed\n');
    }
    // The next backup clears what the killed one left, and the target is a whole store that restores.
    await okJson(['service', 'backup', '--to', file], { home });
    assert.deepEqual(readdirSync(dir), ['store.db']);
    const r = await okJson<any>(['service', 'restore', '--from', file, '--force'], { home });
    assert.equal(r.enrollees, 1);
  });
});
