/**
 * The decision log (issue #21 item 3): `service start --json` writes JSON lines on stderr,
 * each with time, level and decision, and nothing on stdout; `--log-level` filters by level;
 * every line passes through one redaction (log.ts redact) that masks URL passwords and
 * fields named for secrets.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { levelOf, makeDecisionLog, redact, LOG_LEVELS } from '../../src/roles/service/log.js';
import { assertFailure, ok, okJson, removeTempHomes, run } from '../helpers/cli.js';
import { labWorld } from '../helpers/lab.js';

after(() => removeTempHomes());

describe('service start --json', () => {
  it('every stderr line of the service is a JSON object with time, level and decision; stdout stays empty', { timeout: 120_000 }, async () => {
    const w = await labWorld({ bundles: 1, serviceFlags: ['--json', '--log-level', 'debug'] });
    let lines: string[];
    try {
      const home = join(w.root, 'device');
      const { card } = await okJson<{ card: string }>(['enrollee', 'init', '--name', 'logged'], { home });
      const bundle = (await ok(['enroller', 'approve', card], { home: w.enrollerHome })).stdout.trim();
      await ok(['enrollee', 'join', '--bundle', bundle], { home });
      await w.service.waitForLine(/"decision":"accepted"/);
      // The same bundle from a device never approved: refused (check 3), a warn line.
      await ok(['enrollee', 'init'], { home: join(w.root, 'nobody') });
      const bad = await run(['enrollee', 'join', '--bundle', bundle], { home: join(w.root, 'nobody') });
      assert.equal(bad.code, 3);
      await w.service.waitForLine(/"decision":"rejected"/);
    } finally {
      lines = [...w.service.lines];
      await w.dispose();
    }
    const decisions = lines.filter((l) => l.startsWith('{'));
    assert.ok(decisions.length >= 5, lines.join('\n'));
    for (const l of decisions) {
      const j = JSON.parse(l) as Record<string, unknown>;
      assert.match(String(j.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, l);
      assert.ok(LOG_LEVELS.includes(j.level as never), `a level on ${l}`);
      assert.equal(typeof j.decision, 'string', l);
    }
    const byDecision = (d: string) => decisions.map((l) => JSON.parse(l) as Record<string, unknown>).find((j) => j.decision === d)!;
    assert.equal(byDecision('listening').level, 'info');
    assert.equal(byDecision('accepted').level, 'info');
    assert.equal(byDecision('rejected').level, 'warn');
    // What is not a decision is the CLI's own stderr (warnings), never stdout.
    for (const l of lines.filter((x) => !x.startsWith('{'))) assert.match(l, /^ockam-enroll: (warning|hint|info)?/, l);
  });

  it('--log-level other than error, warn, info, debug is a usage error', async () => {
    const w = await labWorld({ bundles: 0 });
    try {
      const r = await run(['service', 'start', '--log-level', 'loud'], { home: w.serviceHome });
      assertFailure(r, 2, '--log-level must be one of error, warn, info, debug, not "loud"');
    } finally {
      await w.dispose();
    }
  });
});

describe('the log writer', () => {
  it('writes only lines at or above --log-level, with their level', () => {
    const out: string[] = [];
    const log = makeDecisionLog({ json: true, level: 'warn', write: (l) => out.push(l) });
    log('listening', { address: '127.0.0.1:1' });
    log('rejected', { reason: 'ERR_ENROLLEE_UNKNOWN: no pending approval' });
    log('error', { reason: 'ERR_STORE: down' });
    assert.deepEqual(out.map((l) => [JSON.parse(l).decision, JSON.parse(l).level]), [['rejected', 'warn'], ['error', 'error']]);
    assert.equal(levelOf('store-unreachable'), 'error');
    assert.equal(levelOf('approve-refused'), 'warn');
  });

  it('redacts in one place: URL passwords in any string, and fields named for secrets, in both formats', () => {
    const fields = { reason: 'ERR_STORE: cannot reach postgres://ockam:hunter2@db:5432/enroll', passphrase: 'open sesame', jwt: 'eyJ.x.y', name: 'Robot' };
    assert.deepEqual(redact(fields), { reason: 'ERR_STORE: cannot reach postgres://ockam:***@db:5432/enroll', passphrase: '[redacted]', jwt: '[redacted]', name: 'Robot' });
    for (const json of [true, false]) {
      const out: string[] = [];
      makeDecisionLog({ json, write: (l) => out.push(l) })('error', fields);
      assert.ok(!/hunter2|open sesame|eyJ/.test(out.join('')), out.join(''));
    }
  });
});
