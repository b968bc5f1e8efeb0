/**
 * Backup and restore of a PostgreSQL store with pg_dump and pg_restore, as docs/operations.md
 * "Backup and restore" tells an operator to (issue #21 item 5): a dump taken while the
 * service runs, restored into a fresh database, serves: the service starts on it, the
 * enrollee is there, `service audit verify` gives the dumped head, and a new device enrolls
 * through the restored database. `service backup` on a PostgreSQL store points at pg_dump.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ok, okJson, removeTempHomes, run, show } from '../helpers/cli.js';
import { labWorld, startLiveService, type LabWorld } from '../helpers/lab.js';
import { freshDatabase } from '../helpers/pg.js';

after(() => removeTempHomes());

async function bindir(): Promise<string> {
  const mod = (await import(new URL('../../../scripts/pg-cluster.mjs', import.meta.url).href)) as { pgBindir(): string };
  return mod.pgBindir();
}

async function enrollOne(w: LabWorld, name: string, env: Record<string, string>): Promise<string> {
  const home = join(w.root, `device-${name}`);
  const [id] = await w.fetchBundles(1);
  const { card, enrollee_id } = await okJson<{ card: string; enrollee_id: string }>(['enrollee', 'init', '--name', name], { home, env });
  const bundle = (await ok(['enroller', 'approve', card, '--bundle', id!], { home: w.enrollerHome, env })).stdout.trim();
  await ok(['enrollee', 'join', '--bundle', bundle], { home, env });
  return enrollee_id;
}

describe('PostgreSQL: pg_dump, pg_restore into a fresh database', () => {
  it('the restored database serves: enrollee present, audit head kept, a new device enrolls', { timeout: 180_000 }, async () => {
    const url = await freshDatabase();
    const env = { OCKAM_ENROLL_STORE: url };
    const w = await labWorld({ bundles: 0, env });
    const dump = join(w.root, 'enroll.dump');
    let first: string;
    let head: { seq: number; hash: string };
    try {
      first = await enrollOne(w, 'one', env);
      const refused = await run(['service', 'backup', '--to', join(w.root, 'x.db')], { home: w.serviceHome, env });
      assert.equal(refused.code, 2, show(refused));
      assert.match(refused.stderr, /the store is PostgreSQL .*: back it up with pg_dump/);
      assert.match(refused.stderr, /hint: pg_dump --format=custom/);
      // A head kept before the dump (the service's audit thread may append after it): the dump holds it.
      head = (await okJson<{ head: { seq: number; hash: string } }>(['service', 'audit', 'verify'], { home: w.serviceHome, env })).head;
      // While the service runs: pg_dump reads one snapshot.
      execFileSync(join(await bindir(), 'pg_dump'), ['--format=custom', '--no-owner', `--file=${dump}`, url], { stdio: ['ignore', 'ignore', 'pipe'] });
    } finally {
      await w.service.stop();
    }
    const restoredUrl = await freshDatabase();
    execFileSync(join(await bindir(), 'pg_restore'), ['--no-owner', '--exit-on-error', `--dbname=${restoredUrl}`, dump], { stdio: ['ignore', 'ignore', 'pipe'] });
    const renv = { OCKAM_ENROLL_STORE: restoredUrl };
    const verify = await okJson<{ ok: boolean; head: { seq: number; hash: string } }>(['service', 'audit', 'verify', '--head', head.hash], { home: w.serviceHome, env: renv });
    assert.equal(verify.ok, true);
    assert.ok(verify.head.seq >= head.seq, 'the dumped chain, whole');
    const list = await okJson<{ enrollees: { id: string; state: string }[] }>(['service', 'enrollee', 'list'], { home: w.serviceHome, env: renv });
    assert.deepEqual(list.enrollees.filter((e) => e.state === 'enrolled').map((e) => e.id), [first]);
    // The service on the restored database: a new device enrolls through it.
    const service = await startLiveService(w.serviceHome, w.port, [], renv);
    try {
      const second = await enrollOne({ ...w, service }, 'two', renv);
      const status = await okJson<any>(['service', 'status'], { home: w.serviceHome, env: renv });
      assert.equal(status.store.kind, 'postgres');
      assert.equal(status.enrollees.enrolled, 2);
      assert.ok(second !== first);
      assert.equal((await okJson<{ ok: boolean }>(['service', 'audit', 'verify'], { home: w.serviceHome, env: renv })).ok, true);
    } finally {
      await service.stop();
    }
  });
});
