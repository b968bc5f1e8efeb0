/**
 * What a new user tripped over (issue #22), each as it was met: a device that took another
 * service's bundle, a `--json` failure with nothing on stdout, permission gaps, and uneven
 * messages and exit statuses. Real processes, real loopback TCP, real SQLite.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { assertFailure, childEnv, errorLine, NODE, okJson, parseJsonOut, removeTempHomes, run, RUN_TIMEOUT_MS, setupWorld, show, takeBundle, tempHome, type World } from '../helpers/cli.js';
import { patience } from '../helpers/pace.js';
import { BIN } from '../helpers/paths.js';

const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, REJECTED: 3, UNREACHABLE: 4, AUTH: 5 } as const;

/** The device's own service and enroller (w), and another service with its enroller (other). */
let w: World;
let other: World;

before(async () => {
  [w, other] = await Promise.all([setupWorld({ bundles: 6 }), setupWorld({ bundles: 3 })]);
});

after(async () => {
  await Promise.all([w?.dispose(), other?.dispose()]);
  removeTempHomes();
});

describe('a device that joined with another service\'s bundle (finding 1)', () => {
  test('is not stuck: the right enroller approves its card with --bundle, and the device enrolls with that bundle', async () => {
    const device = await w.newEnrollee('Robot Stray');
    const foreign = await okJson<{ text: string }>(['enroller', 'bundle', 'show', takeBundle(other)], { home: other.enrollerHome });

    // The foreign service has no approval for it: refused, and the hint names the way out.
    const join1 = await run(['enrollee', 'join', '--bundle', foreign.text], { home: device.home });
    assertFailure(join1, EXIT.REJECTED, 'no pending approval', '--bundle ID');
    assert.ok(!/init --force/.test(join1.stderr), `no second identity is suggested: ${show(join1)}`);

    // Its card now names the foreign bundle: the right enroller says so, locally (exit 1, not
    // "rejected by the service"), and names `--bundle`.
    const card = (await okJson<{ card: string }>(['enrollee', 'card'], { home: device.home })).card;
    const plain = await run(['enroller', 'approve', card], { home: w.enrollerHome });
    assertFailure(plain, EXIT.FAILURE, 'which this enroller did not fetch', 'enroller approve CARD --bundle ID');

    // --bundle binds one of this enroller's bundles instead of the card's foreign one.
    const mine = takeBundle(w);
    const approved = await okJson<{ bundle: string; bundle_text: string; enrollee: string }>(['enroller', 'approve', card, '--bundle', mine], { home: w.enrollerHome });
    assert.equal(approved.bundle, mine);
    assert.equal(approved.enrollee, device.id);

    const joined = await okJson<{ enrolled: boolean; enrollee_id: string; service_key: string }>(['enrollee', 'join', '--bundle', approved.bundle_text], { home: device.home });
    assert.equal(joined.enrolled, true);
    assert.equal(joined.enrollee_id, device.id);
    assert.equal(joined.service_key, w.serviceKey);
  });

  test('a card naming one of this enroller\'s bundles and a --bundle naming another is refused with a hint', async () => {
    const device = await w.newEnrollee();
    const held = takeBundle(w);
    const text = (await okJson<{ text: string }>(['enroller', 'bundle', 'show', held], { home: w.enrollerHome })).text;
    await run(['enrollee', 'join', '--bundle', text], { home: device.home });
    const card = (await okJson<{ card: string }>(['enrollee', 'card'], { home: device.home })).card;
    const r = await run(['enroller', 'approve', card, '--bundle', w.bundles[0]!], { home: w.enrollerHome });
    assertFailure(r, EXIT.USAGE, `the card names bundle ${held}`, 'leave out --bundle');
  });
});

describe('--json on failure (finding 6)', () => {
  type Failure = { ok: boolean; error: { code: string; message: string; hint: string | null } };

  test('a refused command prints {"ok":false,"error":{code,message,hint}} on stdout, and the human message on stderr', async () => {
    const home = tempHome('json-fail');
    const r = await run(['enrollee', 'card', '--json'], { home });
    assert.equal(r.code, EXIT.FAILURE, show(r));
    const f = parseJsonOut<Failure>(r);
    assert.deepEqual(Object.keys(f), ['ok', 'error']);
    assert.equal(f.ok, false);
    assert.equal(f.error.code, 'ERR_KEY_MISSING');
    assert.ok(f.error.message.includes('no enrollee is initialised'), show(r));
    assert.ok(f.error.hint?.includes('enrollee init'), show(r));
    assert.ok(errorLine(r).includes(f.error.message), show(r));
  });

  test('a usage error and a refusal by the service do too, with their exit statuses', async () => {
    const usage = await run(['enrollee', 'card', '--json', '--no-such-flag']);
    assert.equal(usage.code, EXIT.USAGE, show(usage));
    const u = parseJsonOut<Failure>(usage);
    assert.equal(u.error.code, 'ERR_USAGE');
    assert.match(u.error.message, /no-such-flag/);

    const device = await w.newEnrollee();
    const foreign = await okJson<{ text: string }>(['enroller', 'bundle', 'show', takeBundle(other)], { home: other.enrollerHome });
    const refused = await run(['enrollee', 'join', '--bundle', foreign.text, '--json'], { home: device.home });
    assert.equal(refused.code, EXIT.REJECTED, show(refused));
    const f = parseJsonOut<Failure>(refused);
    assert.equal(f.error.code, 'ERR_ENROLLEE_UNKNOWN');
    assert.equal(typeof f.error.hint, 'string');
  });
});

describe('permission gaps (finding 4)', () => {
  test('a session.json readable by others is refused with the chmod that fixes it', async () => {
    const device = await w.newEnrollee();
    const approved = (await okJson<{ bundle_text: string }>(['enroller', 'approve', device.card], { home: w.enrollerHome })).bundle_text;
    await okJson(['enrollee', 'join', '--bundle', approved], { home: device.home });
    const session = join(device.home, 'enrollee', 'session.json');
    chmodSync(session, 0o644);
    const r = await run(['enrollee', 'status'], { home: device.home });
    assertFailure(r, EXIT.FAILURE, `${session} is accessible by other users (mode 0644)`, 'chmod 600');
    chmodSync(session, 0o600);
    await okJson(['enrollee', 'status'], { home: device.home });
  });

  test('a home the user cannot read is reported as permission denied, not as "no enrollee is initialised"', async () => {
    const root = tempHome('eacces');
    const home = join(root, 'home');
    await okJson(['enrollee', 'init'], { home });
    // Root reads everything: then the command runs as another user (nobody), for whom the
    // home (0700, owned by us) is unreadable; otherwise the home is made unreadable to us.
    const asRoot = process.getuid?.() === 0;
    if (!asRoot) chmodSync(join(home, 'enrollee'), 0o000);
    chmodSync(root, 0o755);
    try {
      const r = await execa(NODE, [BIN, 'enrollee', 'card', '--home', home], {
        reject: false,
        extendEnv: false,
        env: childEnv(),
        stdin: 'ignore',
        timeout: await patience(RUN_TIMEOUT_MS),
        ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
      });
      const res = { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
      assertFailure(res, EXIT.FAILURE, 'permission denied', 'permissions');
      assert.ok(!/no enrollee is initialised/.test(res.stderr), show(res));
    } finally {
      if (!asRoot) chmodSync(join(home, 'enrollee'), 0o700);
    }
  });
});

describe('messages and exit statuses (finding 9)', () => {
  test('a garbage card is a usage error (2); an unknown enrollee id is a failure (1); an empty bundle says it is empty', async () => {
    assertFailure(await run(['enroller', 'approve', 'x'], { home: w.enrollerHome }), EXIT.USAGE, /./);
    assertFailure(await run(['service', 'enrollee', 'show', '00000000'], { home: w.serviceHome }), EXIT.FAILURE, 'no enrollee has id 00000000', 'service enrollee list');
    const device = await w.newEnrollee();
    const empty = await run(['enrollee', 'join', '--bundle', '-'], { home: device.home, input: '' });
    assertFailure(empty, EXIT.FAILURE, 'the bundle is empty', 'OEB2:');
    assert.ok(!/OEB1:$/m.test(errorLine(empty)), show(empty));
  });

  test('no fresh bundle is the enroller\'s own cache (1), and the hint names the address it knows', async () => {
    const root = tempHome('no-fresh');
    const enrollerHome = join(root, 'enroller');
    const key = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home: enrollerHome })).enroller_key;
    await okJson(['service', 'enroller', 'allow', key, '--name', 'one-bundle terminal'], { home: w.serviceHome });
    await okJson(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '1', '--service-key', w.serviceKey], { home: enrollerHome });
    const a = await w.newEnrollee();
    await okJson(['enroller', 'approve', a.card], { home: enrollerHome });
    const b = await w.newEnrollee();
    const r = await run(['enroller', 'approve', b.card], { home: enrollerHome });
    assertFailure(r, EXIT.FAILURE, 'no fresh', `--service ${w.address}`);
    assert.ok(!r.stderr.includes('tcp://HOST:PORT'), show(r));
  });

  test('a port in use is said once', async () => {
    const port = w.port;
    const r = await run(['enroller', 'onboard', '--listen', `127.0.0.1:${port}`, '--no-confirm'], { home: w.enrollerHome });
    assert.equal(r.code, EXIT.UNREACHABLE, show(r));
    assert.equal(errorLine(r).match(/cannot listen/g)?.length, 1, show(r));
  });
});

/** The columns of a text table: where each header word starts; every row must have a cell start there (or be blank up to it). */
function assertAligned(table: string, what: string): void {
  const lines = table.trimEnd().split('\n');
  for (const l of lines) assert.ok(l === l.trimEnd(), `${what}: no trailing blanks on ${JSON.stringify(l)}`);
  const starts = [...lines[0]!.matchAll(/\S+/g)].map((m) => m.index!);
  for (const l of lines.slice(1)) {
    for (const at of starts.slice(1)) {
      if (at >= l.length) continue;
      assert.ok(l.slice(at - 2, at) === '  ' && l[at] !== ' ', `${what}: the column at ${at} (${lines[0]!.slice(at).split(' ')[0]}) is not aligned in\n${table}`);
    }
  }
}

describe('tables, labels and help (finding 9)', () => {
  let lapsed: { id: string };
  let enrolled: { id: string };

  before(async () => {
    // One device whose approval lapses, one enrolled.
    const a = await w.newEnrollee('Robot Lapsed');
    await okJson(['enroller', 'approve', a.card, '--ttl', '1s', '--bundle', takeBundle(w)], { home: w.enrollerHome });
    const b = await w.newEnrollee('Robot Done');
    const approved = await okJson<{ bundle_text: string }>(['enroller', 'approve', b.card, '--bundle', takeBundle(w)], { home: w.enrollerHome });
    await okJson(['enrollee', 'join', '--bundle', approved.bundle_text], { home: b.home });
    for (let i = 0; ; i++) {
      const list = await okJson<{ enrollees: { id: string; expired: boolean }[] }>(['service', 'enrollee', 'list', '--json'], { home: w.serviceHome });
      if (list.enrollees.find((e) => e.id === a.id)?.expired) break;
      assert.ok(i < 100, 'the 1 s approval lapses');
      await new Promise((r) => setTimeout(r, 300));
    }
    lapsed = a;
    enrolled = b;
  });

  test('service enrollee list keeps its columns aligned around "pending (expired)"', async () => {
    const r = await run(['service', 'enrollee', 'list'], { home: w.serviceHome });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`^${lapsed.id.slice(0, 16)}  x3dh    pending \\(expired\\)  Robot Lapsed$`, 'm'));
    assert.match(r.stdout, new RegExp(`^${enrolled.id.slice(0, 16)}  x3dh    enrolled  +Robot Done$`, 'm'));
    assertAligned(r.stdout, 'service enrollee list');
  });

  test('enroller bundle list has a header row, aligned columns and no trailing blanks', async () => {
    const r = await run(['enroller', 'bundle', 'list'], { home: w.enrollerHome });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout.split('\n')[0]!, /^ID +EKA +STATE +EXPIRES_AT +ENROLLEE$/);
    assert.match(r.stdout, /^[0-9a-f]{32}  v2   fresh +\S+Z$/m, 'a fresh bundle ends at its expiry, with no blank name after it');
    assert.match(r.stdout, /^[0-9a-f]{32}  v2   approved +\S+Z  Robot Done$/m);
    assertAligned(r.stdout, 'enroller bundle list');
  });

  test("service enrollee show says whose expires_at it is: a pending approval's, or the used one of an enrolled device", async () => {
    const p = await run(['service', 'enrollee', 'show', lapsed.id], { home: w.serviceHome });
    assert.match(p.stdout, /^expires_at {7}\S+Z \(the approval has lapsed: approve the card again\)$/m, show(p));
    const e = await run(['service', 'enrollee', 'show', enrolled.id], { home: w.serviceHome });
    assert.match(e.stdout, /^expires_at {7}\S+Z \(the approval's, no longer used: the device enrolled at enrolled_at\)$/m, show(e));
    // --json keeps the plain field.
    const j = await okJson<{ expires_at: string }>(['service', 'enrollee', 'show', enrolled.id, '--json'], { home: w.serviceHome });
    assert.match(j.expires_at, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
  });

  test('every --help prints its defaults one way: (default: VALUE)', async () => {
    const { buildProgram } = await import('../../src/cli/main.js');
    const program = await buildProgram();
    const bad: string[] = [];
    let withDefault = 0;
    const walk = (cmd: import('commander').Command, path: string[]) => {
      const help = cmd.createHelp();
      for (const o of cmd.options) {
        const d = help.optionDescription(o);
        if (/\(default/.test(d)) withDefault++;
        if (/\(default [^:]|\(default: "|\(\d+[a-z]*\)$/.test(d)) bad.push(`${path.join(' ')} ${o.flags}: ${d}`);
      }
      for (const c of cmd.commands) walk(c, [...path, c.name()]);
    };
    walk(program, ['ockam-enroll']);
    assert.deepEqual(bad, []);
    assert.ok(withDefault > 20, `${withDefault} options name a default`);
    const r = await run(['enroller', 'approve', '--help']);
    assert.match(r.stdout.replace(/\s+/g, ' '), /--ttl <duration> how long the approval stays pending \(default: 1h\)/);
  });
});

describe('a token past its exp (finding 9)', () => {
  test('is refused before anything is sent: exit 3, when it expired, and a hint', async () => {
    // A token whose claims say it expired an hour ago, naming a server that counts who
    // connects. Its signature is never looked at: the exp check comes first.
    const { createServer } = await import('node:net');
    let connections = 0;
    const server = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as import('node:net').AddressInfo).port;
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const now = Math.floor(Date.now() / 1000);
      const claims = { iss: `https://127.0.0.1:${port}`, sub: 'ab'.repeat(32), jti: 'A'.repeat(22), iat: now - 4 * 3600, exp: now - 3 * 3600, em: 'ott', ca_fp: 'cd'.repeat(32), name: 'sensor-12' };
      const token = `${b64({ alg: 'ES256', typ: 'JWT' })}.${b64(claims)}.${Buffer.alloc(64, 1).toString('base64url')}`;
      const r = await run(['enrollee', 'join', '--token', token], { home: tempHome('expired-token') });
      assertFailure(r, EXIT.REJECTED, /error: the token expired at \S+Z \(3 h ago\); nothing was sent to the service$/, 'enroller token create --name "sensor-12"');
      assert.equal(connections, 0, 'nothing connected to the service');
      // --json gets the failure object too.
      const j = await run(['enrollee', 'join', '--token', token, '--json'], { home: tempHome('expired-token') });
      assert.equal(parseJsonOut<{ error: { code: string } }>(j).error.code, 'ERR_TOKEN_EXPIRED');
      assert.equal(connections, 0);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('a first run leaves no empty ~/.config/ockam-enroll (finding 8)', () => {
  test('a command without --home reads the user config only if it exists, and creates none', async () => {
    const fakeHome = tempHome('user-home');
    const r = await run(['enrollee', 'card'], { env: { HOME: fakeHome, XDG_CONFIG_HOME: join(fakeHome, '.config') } });
    assertFailure(r, EXIT.FAILURE, `no enrollee is initialised in ${join(fakeHome, '.ockam-enroll', 'enrollee')}`);
    assert.equal(existsSync(join(fakeHome, '.config', 'ockam-enroll')), false, 'no config directory was created');
  });
});
