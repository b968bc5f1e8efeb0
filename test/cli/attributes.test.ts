/**
 * Attributes, scopes and policies through the CLI (issue #20, docs/policies.md): a scoped
 * enroller onboards a sensor with role=sensor and is refused role=operator (by the service,
 * nothing written); set-attr / unset-attr; show and list (and --json) show attributes;
 * `list --where` filters with CEL and refuses a bad expression with its column; every change
 * of scope or attributes is in the audit chain; a set-attr reaches the device's credential at
 * its next `enrollee status`, and within an interval of a running `enrollee status --watch`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { assertFailure, eventually, ok, okJson, removeTempHomes, run, setupWorld, show, spawnCli, type Enrollee, type World } from '../helpers/cli.js';
import { audited, auditEntries, EXIT, join } from '../helpers/lifecycle.js';

let w: World;
before(async () => {
  w = await setupWorld({ bundles: 8 });
});
after(async () => {
  try {
    await w?.dispose();
  } finally {
    removeTempHomes();
  }
});

async function approveWith(e: Enrollee, attrs: string[]) {
  return run(['enroller', 'approve', e.card, ...attrs.flatMap((a) => ['--attr', a])], { home: w.enrollerHome });
}

interface EnrolleeJson {
  id: string;
  state: string;
  name: string | null;
  attributes: Record<string, string>;
}

async function list(...args: string[]): Promise<EnrolleeJson[]> {
  return (await okJson<{ enrollees: EnrolleeJson[] }>(['service', 'enrollee', 'list', ...args], { home: w.serviceHome })).enrollees;
}

describe('attributes and scopes', () => {
  let sensor: Enrollee;

  test('an enroller allowed without --may-assign assigns no attribute: refused by the service, nothing written', async () => {
    const e = await w.newEnrollee('Unscoped');
    const before = await list();
    const r = await approveWith(e, ['role=sensor']);
    assertFailure(r, EXIT.REJECTED, /may not assign role=sensor/);
    assert.deepEqual(await list(), before, 'the refused approval wrote nothing');
  });

  test('service enroller allow --may-assign sets the scope, shown by show and list, audited', async () => {
    const j = await okJson(['service', 'enroller', 'allow', w.enrollerKey, '--name', 'line 3', '--may-assign', 'role=sensor|camera', '--may-assign', 'site=*'], { home: w.serviceHome });
    assert.deepEqual(j.may_assign, { role: ['camera', 'sensor'], site: '*' });
    const shown = await okJson(['service', 'enroller', 'show', w.enrollerKey], { home: w.serviceHome });
    assert.deepEqual(shown.may_assign, { role: ['camera', 'sensor'], site: '*' });
    const human = await ok(['service', 'enroller', 'list'], { home: w.serviceHome });
    assert.match(human.stdout, /may assign: role=camera\|sensor site=\*/);
    const entry = await audited(w.serviceHome, (x) => x.event === 'enroller-allowed' && JSON.stringify(x.fields.may_assign) === JSON.stringify({ role: ['camera', 'sensor'], site: '*' }));
    assert.equal(entry.fields.enroller, w.enrollerKey);
  });

  test('a bad --may-assign is a usage error', async () => {
    assertFailure(await run(['service', 'enroller', 'allow', w.enrollerKey, '--may-assign', 'Role=x'], { home: w.serviceHome }), EXIT.USAGE, /lower-case identifier/);
    assertFailure(await run(['service', 'enroller', 'allow', w.enrollerKey, '--may-assign', 'role'], { home: w.serviceHome }), EXIT.USAGE, /KEY=V1\|V2/);
  });

  test('the scoped enroller onboards a sensor with role=sensor and site=berlin; the device joins', async () => {
    sensor = await w.newEnrollee('Sensor 1');
    const r = await approveWith(sensor, ['role=sensor', 'site=berlin']);
    assert.equal(r.code, EXIT.OK, show(r));
    const joined = await join(sensor, r.stdout.trim());
    assert.equal(joined.code, EXIT.OK, show(joined));
    const shown = await okJson<EnrolleeJson>(['service', 'enrollee', 'show', sensor.id], { home: w.serviceHome });
    assert.equal(shown.state, 'enrolled');
    assert.deepEqual(shown.attributes, { role: 'sensor', site: 'berlin' });
    await audited(w.serviceHome, (x) => x.event === 'approved' && x.fields.enrollee === sensor.id && JSON.stringify(x.fields.attributes) === JSON.stringify({ role: 'sensor', site: 'berlin' }));
  });

  test('the sensor\'s credential is version 2 with its attributes: --require passes for "sensor", fails (exit 3) for "camera"', async () => {
    const file = `@${pathJoin(sensor.home, 'enrollee', 'credential.txt')}`;
    const j = await okJson(['credential', 'verify', file, '--service-key', w.serviceKey, '--require', 'subject.attributes.role == "sensor"'], { home: w.root });
    assert.equal(j.version, 2);
    assert.deepEqual(j.attributes, { role: 'sensor', site: 'berlin' });
    const r = await run(['credential', 'verify', file, '--service-key', w.serviceKey, '--require', 'subject.attributes.role == "camera"'], { home: w.root });
    assertFailure(r, EXIT.REJECTED, /--require does not hold/);
    assertFailure(await run(['credential', 'verify', file, '--service-key', w.serviceKey, '--require', 'subject.attributes.role =='], { home: w.root }), EXIT.USAGE, /at column 27/);
  });

  test('role=operator is outside the scope: refused, naming the attribute, and nothing is written', async () => {
    const e = await w.newEnrollee('Laptop');
    const before = await list();
    const r = await approveWith(e, ['role=operator']);
    assertFailure(r, EXIT.REJECTED, /may not assign role=operator/);
    assert.deepEqual(await list(), before);
  });

  test('bad --attr values are refused before anything is sent, naming the attribute', async () => {
    const e = await w.newEnrollee('Bad');
    assertFailure(await approveWith(e, ['role=a', 'role=b']), EXIT.USAGE, /"role" is given twice/);
    assertFailure(await approveWith(e, ['site=' + 'x'.repeat(65)]), EXIT.USAGE, /attribute "site": the value is 65 bytes/);
    assertFailure(await approveWith(e, ['Site=x']), EXIT.USAGE, /"Site"/);
  });

  test('set-attr and unset-attr change the record, audited with before and after', async () => {
    const set = await okJson(['service', 'enrollee', 'set-attr', sensor.id.slice(0, 12), 'floor=3', 'site=paris'], { home: w.serviceHome });
    assert.deepEqual(set.attributes, { floor: '3', role: 'sensor', site: 'paris' });
    const unset = await okJson(['service', 'enrollee', 'unset-attr', sensor.id, 'floor'], { home: w.serviceHome });
    assert.deepEqual(unset.attributes, { role: 'sensor', site: 'paris' });
    const entries = (await auditEntries(w.serviceHome)).filter((x) => x.event === 'enrollee-attributes-changed' && x.fields.enrollee === sensor.id);
    assert.equal(entries.length, 2);
    assert.deepEqual(entries[0]!.fields.before, { role: 'sensor', site: 'berlin' });
    assert.deepEqual(entries[1]!.fields.attributes, { role: 'sensor', site: 'paris' });
    assertFailure(await run(['service', 'enrollee', 'unset-attr', sensor.id, 'floor'], { home: w.serviceHome }), EXIT.USAGE, /no attribute "floor"/);
    assertFailure(await run(['service', 'enrollee', 'set-attr', sensor.id, 'site'], { home: w.serviceHome }), EXIT.USAGE, /KEY=VALUE/);
  });

  test('after set-attr, the device\'s next `enrollee status` fetches a credential reissued with the new attributes', async () => {
    const path = pathJoin(sensor.home, 'enrollee', 'credential.txt');
    const file = `@${path}`;
    const heldText = readFileSync(path, 'utf8');
    const held = await okJson(['credential', 'verify', file, '--service-key', w.serviceKey], { home: w.root });
    // The credential from the join still says site=berlin: set-attr changed only the record.
    assert.deepEqual(held.attributes, { role: 'sensor', site: 'berlin' });
    const status = await run(['enrollee', 'status'], { home: sensor.home });
    assert.equal(status.code, EXIT.OK, show(status));
    assert.match(status.stderr, /its attributes\): fetched the reissued credential/);
    const now = await okJson(['credential', 'verify', file, '--service-key', w.serviceKey, '--require', 'subject.attributes.site == "paris"'], { home: w.root });
    assert.deepEqual(now.attributes, { role: 'sensor', site: 'paris' });
    const nowText = readFileSync(path, 'utf8');
    assert.notEqual(nowText, heldText);
    // Nothing changed since: the next status keeps the credential (no request, no signature).
    const again = await run(['enrollee', 'status'], { home: sensor.home });
    assert.equal(again.code, EXIT.OK, show(again));
    assert.doesNotMatch(again.stderr, /reissued|renewed/);
    assert.equal(readFileSync(path, 'utf8'), nowText);
  });

  test('list --where filters with CEL; a bad expression is a usage error naming its column', async () => {
    const sensors = await list('--where', 'subject.attributes.role == "sensor"');
    assert.deepEqual(sensors.map((e) => e.id), [sensor.id]);
    assert.deepEqual(await list('--where', '"site" in subject.attributes && subject.attributes.site == "berlin"'), []);
    assert.deepEqual((await list('--where', '!("floor" in subject.attributes) && subject.method == "x3dh"')).map((e) => e.id), [sensor.id]);
    assert.deepEqual(await list('--where', '!("role" in subject.attributes)'), []);
    const human = await ok(['service', 'enrollee', 'list', '--where', 'subject.attributes.role == "sensor"'], { home: w.serviceHome });
    assert.match(human.stdout, /role=sensor,site=paris/);
    assertFailure(await run(['service', 'enrollee', 'list', '--where', 'subject.attributes.role =='], { home: w.serviceHome }), EXIT.USAGE, /at column 27/);
    assertFailure(await run(['service', 'enrollee', 'list', '--where', 'subject.id == 1'], { home: w.serviceHome }), EXIT.USAGE, /no such overload/);
  });
  test('a running `enrollee status --watch` fetches the reissued credential after set-attr and after unset-attr, without restarting', async () => {
    const path = pathJoin(sensor.home, 'enrollee', 'credential.txt');
    const file = `@${path}`;
    const verified = async () => (await okJson(['credential', 'verify', file, '--service-key', w.serviceKey], { home: w.root })).attributes as Record<string, string>;
    assert.deepEqual(await verified(), { role: 'sensor', site: 'paris' });
    const watch = spawnCli(['enrollee', 'status', '--watch', '--interval', '1s', '--json'], { home: sensor.home });
    const reports = () =>
      watch
        .stdout()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { state: string; credential: { attributes: Record<string, string> } | null });
    const reissues = () => watch.lines.filter((l) => /its attributes\): fetched the reissued credential/.test(l)).length;
    try {
      await watch.waitForLine('watching the session');
      // The credential is current: the watch starts without asking for one.
      assert.equal(reissues(), 0, watch.lines.join('\n'));
      assert.deepEqual(reports().map((r) => r.credential?.attributes), [{ role: 'sensor', site: 'paris' }]);

      await ok(['service', 'enrollee', 'set-attr', sensor.id, 'floor=2'], { home: w.serviceHome });
      await eventually(() => reissues() === 1, 'the watch fetching the credential reissued after set-attr');
      assert.deepEqual(await verified(), { floor: '2', role: 'sensor', site: 'paris' });
      // The watch reports the change (its credential field) on stdout, as one more JSON line.
      await eventually(() => reports().length === 2, 'a second report');
      assert.deepEqual(reports()[1]!.credential?.attributes, { floor: '2', role: 'sensor', site: 'paris' });

      await ok(['service', 'enrollee', 'unset-attr', sensor.id, 'floor'], { home: w.serviceHome });
      await eventually(() => reissues() === 2, 'the watch fetching the credential reissued after unset-attr');
      assert.deepEqual(await verified(), { role: 'sensor', site: 'paris' });
      await eventually(() => reports().length === 3, 'a third report');
      assert.deepEqual(reports()[2]!.credential?.attributes, { role: 'sensor', site: 'paris' });
      assert.ok(watch.running(), 'the watch is still running');
      const audit = (await auditEntries(w.serviceHome)).filter((x) => x.event === 'enrollee-attributes-changed' && x.fields.enrollee === sensor.id);
      assert.equal(audit.length, 4, 'two changes here, two in the set-attr test');
    } finally {
      if (watch.running()) watch.kill('SIGKILL');
    }
    assert.match(readFileSync(path, 'utf8'), /^OECR2:/);
  });
});
