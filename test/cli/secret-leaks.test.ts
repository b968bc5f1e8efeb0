/**
 * Issue #18 findings 3, 4 and 7, through the CLI: a PostgreSQL password given as `?password=`
 * (or any secret parameter) is never printed or saved in settings.json; an --on-enroll hook
 * and an `enroller onboard --exec` child that dump their environment see none of the
 * service's or the enroller's secrets; secrets given inline draw a warning.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.js';
import { freePort, ok, removeTempHomes, run, setupWorld, shellCommand, shellQuote, show, spawnService, tempHome, type World } from '../helpers/cli.js';
import { approve, join } from '../helpers/lifecycle.js';
import { freshDatabase } from '../helpers/pg.js';

const PG_SECRET = 'pg-s3cret-in-query';
const SSL_SECRET = 'ssl-s3cret-in-query';

describe('a PostgreSQL store URL with secret parameters', () => {
  after(() => removeTempHomes());

  test('?password= and ?sslpassword= are masked everywhere and never saved in settings.json', async () => {
    const db = new URL(await freshDatabase());
    db.searchParams.set('password', PG_SECRET);
    db.searchParams.set('sslpassword', SSL_SECRET);
    db.searchParams.set('sslmode', 'disable');
    const home = tempHome('pg-secret');
    const port = await freePort();
    const init = await run(['service', 'init', '--address', `tcp://127.0.0.1:${port}`, '--store', db.toString()], { home });
    assert.equal(init.code, 0, show(init));
    for (const secret of [PG_SECRET, SSL_SECRET]) {
      assert.ok(!init.stdout.includes(secret) && !init.stderr.includes(secret), `service init printed a secret: ${show(init)}`);
    }
    assert.match(init.stderr, /warning: the --store URL carries a password on the command line/, show(init));
    assert.match(init.stderr, /password \(and any secret parameter of its URL\) is not saved/, show(init));
    const settings = readFileSync(pathJoin(home, 'service', 'settings.json'), 'utf8');
    assert.ok(settings.includes('postgres'), `the store is saved: ${settings}`);
    for (const secret of [PG_SECRET, SSL_SECRET, 'password=', 'sslpassword']) assert.ok(!settings.includes(secret), `settings.json holds ${secret}: ${settings}`);

    // The listening line (and every line of the log) shows the masked URL only.
    const svc = await spawnService(['service', 'start', '--listen', `127.0.0.1:${port}`, '--https-listen', `127.0.0.1:${await freePort()}`], port, {
      home,
      env: { OCKAM_ENROLL_STORE: db.toString() },
      ready: [` listening address=127.0.0.1:${port} `],
    });
    try {
      const line = svc.lines.find((l) => l.includes(' listening '))!;
      assert.match(line, /store=postgres:\/\/\S*password=\*\*\*/, line);
      for (const secret of [PG_SECRET, SSL_SECRET]) assert.ok(!svc.lines.join('\n').includes(secret), svc.lines.join('\n'));
    } finally {
      await svc.stop();
    }
  });
});

describe('children get an allow-list environment', () => {
  let w: World;
  let dir: string;
  before(async () => {
    w = await setupWorld({ bundles: 4 });
    dir = tempHome('env-dump');
  });
  after(async () => {
    try {
      await w?.dispose();
    } finally {
      removeTempHomes();
    }
  });

  test('an --on-enroll hook that dumps its environment sees no secret of the service; --hook-env adds a name', async () => {
    await w.service.stop();
    const dump = pathJoin(dir, 'hook-env.txt');
    w.service = await spawnService(
      ['service', 'start', '--listen', `127.0.0.1:${w.port}`, ...(w.httpsPort ? ['--https-listen', `127.0.0.1:${w.httpsPort}`] : []), '--on-enroll', `env > ${shellQuote(dump)}`, '--hook-env', 'WANTED_BY_HOOK'],
      w.port,
      {
        home: w.serviceHome,
        env: { PGPASSWORD: 'pg-env-secret', AWS_SECRET_ACCESS_KEY: 'cloud-secret', OCKAM_ENROLL_STORE: 'sqlite', WANTED_BY_HOOK: 'visible' },
        ready: [` listening address=127.0.0.1:${w.port} `],
      },
    );
    const e = await w.newEnrollee('Env Bot');
    const joined = await join(e, await approve(w, e));
    assert.equal(joined.code, 0, show(joined));
    const seen = readFileSync(dump, 'utf8');
    for (const secret of ['pg-env-secret', 'cloud-secret', 'PGPASSWORD', 'AWS_SECRET_ACCESS_KEY', 'OCKAM_ENROLL_STORE']) {
      assert.ok(!seen.includes(secret), `the hook saw ${secret}:\n${seen}`);
    }
    assert.match(seen, /^PATH=/m);
    assert.match(seen, /^WANTED_BY_HOOK=visible$/m);
    assert.equal((await run(['service', 'start', '--hook-env', 'X'], { home: w.serviceHome })).code, EXIT.USAGE);
  });

  test('an `enroller onboard --exec` child sees no secret of the enroller', async () => {
    const e = await w.newEnrollee('Exec Env Bot');
    const dump = pathJoin(dir, 'exec-env.txt');
    const child = `env > ${shellQuote(dump)}; ${shellCommand(['enrollee', 'join', '--stdio', '--yes', '--home', e.home])}`;
    const r = await run(['enroller', 'onboard', '--expect-enrollee', e.id, '--exec', child], {
      home: w.enrollerHome,
      env: { ENROLLER_CLOUD_TOKEN: 'enroller-secret', PGPASSWORD: 'pg-env-secret' },
    });
    assert.equal(r.code, 0, show(r));
    const seen = readFileSync(dump, 'utf8');
    for (const secret of ['enroller-secret', 'pg-env-secret']) assert.ok(!seen.includes(secret), `the --exec child saw ${secret}:\n${seen}`);
    assert.match(seen, /^PATH=/m);
  });

  test('a token given inline draws a warning pointing at @FILE or -', async () => {
    const e = await w.newEnrollee();
    const r = await run(['enrollee', 'join', '--token', 'eyJhbGciOiJFZERTQSJ9.e30.c2ln'], { home: e.home });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /warning: the token was given on the command line.*--token @FILE or --token -/, show(r));
    const quiet = await run(['enrollee', 'join', '--token', '-'], { home: e.home, input: 'eyJhbGciOiJFZERTQSJ9.e30.c2ln\n' });
    assert.ok(!quiet.stderr.includes('given on the command line'), show(quiet));
    await ok(['enrollee', 'status', '--help']);
  });
});
