/**
 * Every command of the CLI, run as the built binary: help and version, init refusals,
 * listing and revoking enrollers and enrollees, --json discipline, and a clean stop of
 * `service start` on SIGINT and SIGTERM.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main.js';
import {
  assertFailure,
  freePort,
  initService,
  ok,
  okJson,
  parseJsonOut,
  removeTempHomes,
  run,
  setupWorld,
  show,
  startService,
  tempHome,
  type RunResult,
  type ServiceInit,
  type World,
} from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/paths.js';

const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, REJECTED: 3, UNREACHABLE: 4, AUTH: 5 } as const;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

after(() => removeTempHomes());

/** Runs `jobs` with at most `limit` at a time. */
async function pool<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, jobs.length) }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]!();
      }
    }),
  );
  return out;
}

/** Every command path in the tree (groups and leaves), from the program itself. */
async function commandPaths(): Promise<string[][]> {
  const paths: string[][] = [];
  const walk = (cmd: Command, prefix: string[]) => {
    for (const sub of cmd.commands) {
      if (sub.name() === 'help') continue;
      const p = [...prefix, sub.name()];
      paths.push(p);
      walk(sub, p);
    }
  };
  walk(await buildProgram(), []);
  return paths;
}

describe('help and version', () => {
  test('--help of every command exits 0, prints usage and an example on stdout', async () => {
    const paths = await commandPaths();
    // The tree walk sees every command the brief names (and any added since).
    for (const must of ['service init', 'service start', 'service enroller allow', 'service enroller list', 'service enroller revoke', 'service enrollee list', 'service enrollee show', 'service enrollee revoke', 'enroller init', 'enroller bundle fetch', 'enroller bundle list', 'enroller bundle show', 'enroller approve', 'enroller onboard', 'enrollee init', 'enrollee card', 'enrollee join', 'enrollee status', 'demo']) {
      assert.ok(paths.some((p) => p.join(' ') === must), `the command tree has ${must}`);
    }
    const results = await pool(
      [[], ...paths].map((p) => async () => ({ p, r: await run([...p, '--help']) })),
      6,
    );
    const bad: string[] = [];
    for (const { p, r } of results) {
      const name = ['ockam-enroll', ...p].join(' ');
      if (r.code !== 0) bad.push(`${name}: ${show(r)}`);
      else if (!r.stdout.startsWith(`Usage: ${name} `)) bad.push(`${name}: no usage line: ${r.stdout.slice(0, 200)}`);
      else if (!/^Example/m.test(r.stdout)) bad.push(`${name}: no Example in its help`);
      else if (r.stderr !== '') bad.push(`${name}: help wrote to stderr: ${r.stderr}`);
    }
    assert.deepEqual(bad, [], bad.join('\n\n'));
  });

  test('the top-level help documents the exit codes', async () => {
    const r = await ok(['--help']);
    assert.ok(r.stdout.includes('Exit codes: 0 ok, 1 failure, 2 usage, 3 rejected by the service, 4 cannot reach, 5 peer authentication failed'), r.stdout);
  });

  test('--version and -V print the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await ok([flag]);
      assert.equal(r.stdout, `${pkg.version}\n`);
      assert.equal(r.stderr, '');
    }
  });
});

describe('service init and service start', () => {
  test('a second service init without --force exits 1 with a hint about --force', async () => {
    const home = tempHome('svc');
    const first = await initService(home);
    const dir = join(home, 'service');
    assert.equal(first.json.dir, dir);
    assert.equal(first.json.address, first.address);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, 'ik_a.key')).mode & 0o777, 0o600);

    const again = await run(['service', 'init', '--address', first.address], { home });
    assertFailure(again, EXIT.FAILURE, `a service is already initialised in ${dir}`, '--force');
    // With --json, the failure is also one object on stdout (README §"Exit codes"); stderr as without.
    const againJson = await run(['service', 'init', '--address', first.address, '--json'], { home });
    assertFailure({ ...againJson, stdout: '' }, EXIT.FAILURE, 'already initialised', '--force');
    const failed = parseJsonOut<{ ok: boolean; error: { code: string; message: string; hint: string } }>(againJson);
    assert.equal(failed.ok, false);
    assert.equal(failed.error.code, 'ERR_KEY_EXISTS');
    assert.ok(failed.error.message.includes('already initialised') && failed.error.hint.includes('--force'), show(againJson));
    // The refused init changed nothing.
    const list = await okJson<{ enrollers: unknown[] }>(['service', 'enroller', 'list'], { home });
    assert.deepEqual(list.enrollers, []);

    const forced = await initService(home, { port: first.port, force: true });
    assert.notEqual(forced.serviceKey, first.serviceKey, '--force makes a new identity');
  });

  test('a bad --address is a usage error', async () => {
    const r = await run(['service', 'init', '--address', 'http://example.com:80'], { home: tempHome('svc') });
    assert.equal(r.code, EXIT.USAGE, show(r));
    assert.ok(r.stderr.startsWith('ockam-enroll: error: '), show(r));
  });

  // The two start tests need a service initialised, not a fresh one each: they share one
  // home (a `service init` is seconds on a busy machine, issue 24), each starting and stopping
  // its own services in turn.
  let started: Promise<{ home: string; init: ServiceInit }> | undefined;
  const startable = () =>
    (started ??= (async () => {
      const home = tempHome('svc-start');
      return { home, init: await initService(home) };
    })());

  test('service start stops cleanly on SIGINT, and on SIGTERM', async () => {
    const { home, init } = await startable();
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const svc = await startService(home, init.port, init.httpsPort);
      try {
        const listening = svc.lines.find((l) => l.includes(' listening '))!;
        assert.ok(listening.includes(`service_key=${init.serviceKey}`), listening);
        assert.ok(listening.includes(`enroll_address=${init.address}`), listening);
        const r = await svc.stop(signal); // asserts exit 0 and a stopped line naming the signal
        assert.equal(r.stdout, '', 'the decision log goes to stderr, not stdout');
      } finally {
        if (svc.running()) svc.kill('SIGKILL');
      }
    }
  });

  test('service start on a port that is taken fails with a message, and does not hang', async () => {
    const { home, init } = await startable();
    const svc = await startService(home, init.port, init.httpsPort);
    try {
      const r = await run(['service', 'start', '--listen', `127.0.0.1:${init.port}`, ...(init.httpsPort ? ['--https-listen', `127.0.0.1:${await freePort()}`] : [])], { home, timeoutMs: 15_000 });
      assertFailure(r, EXIT.FAILURE, `cannot listen on tcp://127.0.0.1:${init.port}`, 'another service');
    } finally {
      await svc.stop();
    }
  });

  test('commands on a home that was never initialised say to run init', async () => {
    const home = tempHome('empty');
    const cases: [string[], string][] = [
      [['service', 'enroller', 'list'], 'service init'],
      [['enroller', 'bundle', 'list'], 'enroller init'],
      [['enrollee', 'card'], 'enrollee init'],
      [['enrollee', 'status'], 'enrollee init'],
    ];
    for (const [args, hint] of cases) {
      const r = await run(args, { home });
      assertFailure(r, EXIT.FAILURE, /no (service|enroller|enrollee) is initialised in /, hint);
    }
  });
});

describe('managing enrollers and enrollees on a running service', () => {
  let w: World;
  before(async () => {
    w = await setupWorld({ bundles: 4 });
  });
  after(async () => {
    await w?.dispose();
  });

  /** Approves a fresh enrollee with a cached bundle and joins it; returns its id and home. */
  async function enroll(name: string): Promise<{ id: string; home: string }> {
    const e = await w.newEnrollee(name);
    const bundle = w.bundles.shift()!;
    const approved = await ok(['enroller', 'approve', e.card, '--bundle', bundle], { home: w.enrollerHome });
    await ok(['enrollee', 'join', '--bundle', approved.stdout.trim()], { home: e.home });
    return { id: e.id, home: e.home };
  }

  test('--json: every command writes exactly one JSON object on stdout, with its fields', async () => {
    const home = tempHome('json');
    const enr = await okJson<Record<string, unknown>>(['enroller', 'init'], { home });
    assert.match(String(enr.enroller_key), /^[0-9a-f]{64}$/);
    assert.equal(enr.dir, join(home, 'enroller'));

    const allow = await okJson<Record<string, unknown>>(['service', 'enroller', 'allow', String(enr.enroller_key), '--name', 'json terminal'], { home: w.serviceHome });
    assert.deepEqual(Object.keys(allow).sort(), ['allowed_at', 'enroller', 'may_assign', 'name']);
    assert.equal(allow.enroller, enr.enroller_key);
    assert.equal(allow.name, 'json terminal');
    assert.match(String(allow.allowed_at), ISO);

    const fetched = await okJson<Record<string, unknown>>(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '2', '--service-key', w.serviceKey], { home });
    assert.equal(fetched.service, w.address);
    assert.equal(fetched.service_key, w.serviceKey);
    assert.equal(fetched.fetched, 2);
    const ids = fetched.bundles as string[];
    assert.equal(ids.length, 2);
    ids.forEach((id) => assert.match(id, /^[0-9a-f]{32}$/));

    const list = await okJson<{ bundles: Record<string, unknown>[] }>(['enroller', 'bundle', 'list'], { home });
    assert.deepEqual(list.bundles.map((b) => b.id), ids);
    for (const b of list.bundles) {
      assert.equal(b.state, 'fresh');
      assert.equal(b.service, w.address);
      assert.match(String(b.expires_at), ISO);
    }

    const dev = await okJson<Record<string, unknown>>(['enrollee', 'init', '--name', 'Json Bot'], { home: join(home, 'dev') });
    assert.match(String(dev.enrollee_id), /^[0-9a-f]{64}$/);
    assert.match(String(dev.eik_b), /^[0-9a-f]{64}$/);
    assert.equal(dev.pet_name, 'Json Bot');
    assert.match(String(dev.card), /^OEC1:/);
    const card = await okJson<Record<string, unknown>>(['enrollee', 'card'], { home: join(home, 'dev') });
    assert.equal(card.card, dev.card);
    // --qr has no meaning with --json: the JSON wins.
    const cardQr = await okJson<Record<string, unknown>>(['enrollee', 'card', '--qr'], { home: join(home, 'dev') });
    assert.equal(cardQr.card, dev.card);

    const approved = await okJson<Record<string, unknown>>(['enroller', 'approve', String(dev.card), '--ttl', '90s'], { home });
    assert.equal(approved.enrollee, dev.enrollee_id);
    assert.equal(approved.bundle, ids[0], 'without --bundle, the next fresh bundle');
    assert.equal(approved.name, 'Json Bot');
    assert.match(String(approved.bundle_text), /^OEB2:/, 'bundles are EKA v2 by default');
    assert.equal(approved.eka, 'v2');
    assert.match(String(approved.expires_at), ISO);

    const joined = await okJson<Record<string, unknown>>(['enrollee', 'join', '--bundle', String(approved.bundle_text)], { home: join(home, 'dev') });
    assert.deepEqual(Object.keys(joined).sort(), ['address', 'credential', 'eka', 'enrolled', 'enrolled_at', 'enrollee_id', 'identity_key', 'name', 'service_key']);
    assert.equal(joined.eka, 'v2');
    assert.equal(joined.enrolled, true);
    assert.match(String(joined.enrolled_at), ISO);

    const status = await okJson<Record<string, unknown>>(['enrollee', 'status'], { home: join(home, 'dev') });
    // credential: the service's signed statement kept at enrollment (test/cli/lifecycle-credential.test.ts).
    assert.deepEqual(status, { state: 'enrolled', enrollee_id: dev.enrollee_id, name: 'Json Bot', enrolled_at: joined.enrolled_at, address: w.address, credential: joined.credential });

    const show1 = await okJson<Record<string, unknown>>(['service', 'enrollee', 'show', String(dev.enrollee_id)], { home: w.serviceHome });
    assert.equal(show1.state, 'enrolled');
    assert.equal(show1.identity_key, joined.identity_key);
    assert.equal(show1.enroller, enr.enroller_key);
    assert.equal(show1.bundle, ids[0]);
    assert.equal(show1.expired, false);
    assert.equal(show1.failed_attempts, 0);
    assert.equal(show1.revoked_at, null);

    const after = await okJson<{ bundles: Record<string, unknown>[] }>(['enroller', 'bundle', 'list'], { home });
    assert.deepEqual(after.bundles.map((b) => b.state), ['approved', 'fresh']);
    assert.equal(after.bundles[0]!.enrollee, dev.enrollee_id);
  });

  test('service enroller list and revoke; a revoked enroller is refused (exit 3), re-allowing restores it', async () => {
    const home = tempHome('revoked-enroller');
    const key = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home })).enroller_key;
    await ok(['service', 'enroller', 'allow', key, '--name', 'line 3'], { home: w.serviceHome });
    const bundles = (await okJson<{ bundles: string[] }>(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '2', '--service-key', w.serviceKey], { home })).bundles;
    // An approval that is pending when the enroller is revoked.
    const e = await w.newEnrollee('Orphan');
    const pending = await ok(['enroller', 'approve', e.card, '--bundle', bundles[0]!], { home });

    const before = await okJson<{ enrollers: Record<string, unknown>[] }>(['service', 'enroller', 'list'], { home: w.serviceHome });
    const row = before.enrollers.find((r) => r.enroller === key);
    assert.deepEqual({ ...row, allowed_at: undefined }, { enroller: key, name: 'line 3', state: 'allowed', allowed_at: undefined, revoked_at: null, may_assign: {} });
    assert.ok(before.enrollers.some((r) => r.enroller === w.enrollerKey && r.name === 'test terminal'));
    const text = await ok(['service', 'enroller', 'list'], { home: w.serviceHome });
    assert.match(text.stdout, new RegExp(`^${key}  allowed\\s+line 3$`, 'm'));

    const revoked = await okJson<Record<string, unknown>>(['service', 'enroller', 'revoke', key], { home: w.serviceHome });
    assert.deepEqual(revoked, { enroller: key, state: 'revoked' });
    const afterList = await okJson<{ enrollers: Record<string, unknown>[] }>(['service', 'enroller', 'list'], { home: w.serviceHome });
    const revokedRow = afterList.enrollers.find((r) => r.enroller === key)!;
    assert.equal(revokedRow.state, 'revoked');
    assert.match(String(revokedRow.revoked_at), ISO);

    const fetch = await run(['enroller', 'bundle', 'fetch', '--service', w.address], { home });
    assertFailure(fetch, EXIT.REJECTED, 'is not allowed by the service', `service enroller allow ${key}`);
    assert.ok(w.service.decisions('enroller-refused').some((l) => l.includes(`enroller=${key}`) && l.includes('revoked')));
    // Its pending approval stopped working at once.
    const join1 = await run(['enrollee', 'join', '--bundle', pending.stdout.trim()], { home: e.home });
    assertFailure(join1, EXIT.REJECTED, 'no pending approval', 'enroller approve');
    // Revoking twice is a usage error naming the list command.
    assertFailure(await run(['service', 'enroller', 'revoke', key], { home: w.serviceHome }), EXIT.USAGE, `no allowed enroller has key ${key}`, 'service enroller list');
    assertFailure(await run(['service', 'enroller', 'revoke', 'not-a-key'], { home: w.serviceHome }), EXIT.USAGE, 'must be 64 hex characters');

    await ok(['service', 'enroller', 'allow', key], { home: w.serviceHome });
    await ok(['enroller', 'bundle', 'fetch', '--service', w.address], { home });
    // The other enroller was never affected.
    await ok(['enroller', 'bundle', 'fetch', '--service', w.address], { home: w.enrollerHome });
  });

  test('service enrollee revoke: the enrollee\'s status then fails (exit 3)', async () => {
    const { id, home } = await enroll('Doomed Bot');
    const status = await ok(['enrollee', 'status'], { home });
    assert.match(status.stdout, new RegExp(`^enrolled as ${id} \\(Doomed Bot\\) since \\S+; service at ${w.address.replace(/[.]/g, '\\.')}\\n$`));

    const revoked = await okJson<Record<string, unknown>>(['service', 'enrollee', 'revoke', id.slice(0, 12)], { home: w.serviceHome });
    assert.deepEqual(revoked, { id, state: 'revoked' });

    const after = await run(['enrollee', 'status'], { home });
    assertFailure(after, EXIT.REJECTED, 'revoked');
    assert.ok(w.service.decisions('rejected').some((l) => l.includes('ERR_ENROLLEE_REVOKED') && l.includes(`enrollee=${id}`)), w.service.lines.join('\n'));

    const list = await okJson<{ enrollees: Record<string, unknown>[] }>(['service', 'enrollee', 'list', '--state', 'revoked'], { home: w.serviceHome });
    const row = list.enrollees.find((r) => r.id === id);
    assert.equal(row?.state, 'revoked');
    assert.match(String(row?.revoked_at), ISO);
    const enrolled = await okJson<{ enrollees: Record<string, unknown>[] }>(['service', 'enrollee', 'list', '--state', 'enrolled'], { home: w.serviceHome });
    assert.ok(!enrolled.enrollees.some((r) => r.id === id));
    const human = await ok(['service', 'enrollee', 'list'], { home: w.serviceHome });
    assert.match(human.stdout, /^ID\s+METHOD\s+STATE\s+NAME\s+ATTRIBUTES$/m);
    assert.match(human.stdout, new RegExp(`^${id.slice(0, 16)}  x3dh\\s+revoked\\s+Doomed Bot$`, 'm'));

    assertFailure(await run(['service', 'enrollee', 'revoke', id], { home: w.serviceHome }), EXIT.USAGE, 'already revoked');
    assertFailure(await run(['service', 'enrollee', 'list', '--state', 'bogus'], { home: w.serviceHome }), EXIT.USAGE, '--state must be');
    assertFailure(await run(['service', 'enrollee', 'show', '1234'], { home: w.serviceHome }), EXIT.USAGE, 'is not an enrollee id');
    assertFailure(await run(['service', 'enrollee', 'show', '00000000'], { home: w.serviceHome }), EXIT.FAILURE, 'no enrollee has id 00000000', 'service enrollee list');
  });

  test('--quiet silences progress lines but not results', async () => {
    const home = tempHome('quiet');
    const r = await ok(['enroller', 'init', '--quiet'], { home });
    assert.match(r.stdout, /^[0-9a-f]{64}\n$/);
    assert.equal(r.stderr, '');
    const loud: RunResult = await ok(['enrollee', 'init'], { home });
    assert.ok(loud.stderr.includes('enrollee initialised in'), show(loud));
    assert.match(loud.stdout, /^OEC1:[A-Z2-7]+\n$/);
    parseJsonOut(await ok(['enrollee', 'card', '--json', '-q'], { home }));
  });
});
