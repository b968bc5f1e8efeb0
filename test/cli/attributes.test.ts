/**
 * Attributes, scopes and policies through the CLI (issue #20, docs/policies.md): a scoped
 * enroller onboards a sensor with role=sensor and is refused role=operator (by the service,
 * nothing written); set-attr / unset-attr; show and list (and --json) show attributes;
 * `list --where` filters with CEL and refuses a bad expression with its column; every change
 * of scope or attributes is in the audit chain.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertFailure, ok, okJson, removeTempHomes, run, setupWorld, show, type Enrollee, type World } from '../helpers/cli.js';
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
});
