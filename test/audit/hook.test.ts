/**
 * The --on-enroll hook runner (src/roles/service/hooks.ts), driven directly with real
 * shell commands: the verdict from the exit status, the reason from the first stderr line,
 * the timeout that kills the whole process group, and the audited log wrapper's policy
 * (src/audit/index.ts).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditedLog, REFUSAL_BURST } from '../../src/audit/index.js';
import type { AuditSink } from '../../src/audit/sink.js';
import type { AuditEntry } from '../../src/store/audit.js';
import { commandHook, firstLine, hookEnvironment, type EnrollHookRequest } from '../../src/roles/service/hooks.js';
import type { Decision, DecisionFields } from '../../src/roles/service/log.js';
import { alive } from '../helpers/cli.js';
import { patience } from '../helpers/pace.js';

const dir = mkdtempSync(join(tmpdir(), 'ockam-hook-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const REQ: EnrollHookRequest = {
  event: 'enroll',
  enrollee: 'ab'.repeat(32),
  name: 'Robot Axiom',
  enroller: 'cd'.repeat(32),
  enroller_name: 'line 3 terminal',
  identity_key: 'ef'.repeat(32),
  method: 'x3dh',
  bundle: '01'.repeat(16),
  attributes: { role: 'sensor' },
  peer: '127.0.0.1:40000',
  time: '2026-11-21T15:31:37.000Z',
};

describe('commandHook', () => {
  it('exit 0 allows; the request arrives as one JSON line on stdin', async () => {
    const out = join(dir, 'req.json');
    assert.equal(await commandHook(`cat > '${out}'`)(REQ), undefined);
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), REQ);
  });

  it('a non-zero exit refuses, with the first stderr line as the reason', async () => {
    const d = await commandHook(`echo 'device not on the install list' >&2; echo second >&2; exit 7`)(REQ);
    assert.deepEqual(d, { reason: 'ERR_HOOK_REJECTED: device not on the install list', fields: { hook_exit: 7 } });
  });

  it('a refusal with nothing on stderr names the exit status; a hook that ignores stdin is fine', async () => {
    assert.deepEqual(await commandHook('exit 1')(REQ), { reason: 'ERR_HOOK_REJECTED: the hook refused (exit status 1)', fields: { hook_exit: 1 } });
    assert.equal(await commandHook('true')(REQ), undefined);
  });

  it('a command that does not exist is refused (the shell says so)', async () => {
    const d = await commandHook('/nonexistent/hook-xyz')(REQ);
    assert.match(d!.reason, /^ERR_HOOK_REJECTED: .*not found/);
  });

  it('a hook that outlives its timeout is refused within the timeout, and killed with what it started', async () => {
    const pidFile = join(dir, 'hook.pid');
    const t0 = Date.now();
    const d = await commandHook(`echo $$ > '${pidFile}'; exec sleep 10`, { timeoutMs: 1000 })(REQ);
    const took = Date.now() - t0;
    assert.match(d!.reason, /^ERR_HOOK_TIMEOUT: the hook did not finish within \d+ ms and was killed/);
    // Within the timeout: never before it, and long before the hook's 10 s (2.5 s idle, scaled).
    const late = await patience(2500);
    assert.ok(took >= 900 && took < Math.min(late, 9000), `took ${took} ms (bound ${late} ms)`);
    assert.ok(existsSync(pidFile));
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    const end = Date.now() + (await patience(2000));
    while (alive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.ok(!alive(pid), 'the hook\'s sleep was killed');
  });

  it('a background child holding stderr open does not delay an allow', async () => {
    // The bound on the allow is 1.5 s idle, scaled to the machine's pace; the child outlives
    // the hook's timeout, which outlives that bound, so waiting for the child would show as
    // a timeout refusal, and a slow allow as a late one.
    const bound = await patience(1500);
    const t0 = Date.now();
    assert.equal(await commandHook(`sleep ${Math.ceil((3 * bound) / 1000)} & exit 0`, { timeoutMs: 2 * bound })(REQ), undefined);
    assert.ok(Date.now() - t0 < bound, `took ${Date.now() - t0} ms (bound ${bound} ms)`);
  });

  it('at most maxConcurrent hooks run at once; the others wait within their timeout', async () => {
    const hook = commandHook('sleep 0.3', { timeoutMs: await patience(3000), maxConcurrent: 2 });
    const t0 = Date.now();
    const all = await Promise.all([hook(REQ), hook(REQ), hook(REQ), hook(REQ)]);
    assert.deepEqual(all, [undefined, undefined, undefined, undefined]);
    assert.ok(Date.now() - t0 >= 550, 'four 0.3 s hooks two at a time take two rounds');
    const short = commandHook('sleep 1', { timeoutMs: 400, maxConcurrent: 1 });
    const [a, b] = await Promise.all([short(REQ), short(REQ)]);
    assert.match(a!.reason, /^ERR_HOOK_TIMEOUT/);
    assert.match(b!.reason, /^ERR_HOOK_TIMEOUT: no free hook slot/);
  });

  it('the hook runs without the passphrase variables in its environment', async () => {
    const out = join(dir, 'env.txt');
    // KEEP is added by the operator (--hook-env); the passphrase variables never pass, even when added.
    const env = hookEnvironment({ PATH: process.env.PATH, OCKAM_ENROLL_PASSPHRASE: 'correct horse', MY_PP: 'battery staple', KEEP: 'yes', PGPASSWORD: 'pg secret' }, 'MY_PP', ['KEEP', 'MY_PP', 'OCKAM_ENROLL_PASSPHRASE']);
    assert.deepEqual(Object.keys(env).sort(), ['KEEP', 'PATH']);
    // Without an addition: the allow-list only (issue #18 finding 4).
    const bare = hookEnvironment({ PATH: '/bin', HOME: '/h', LANG: 'C', LC_ALL: 'C', TZ: 'UTC', PGPASSWORD: 'x', OCKAM_ENROLL_STORE: 'postgres://u:p@h/d', AWS_SECRET_ACCESS_KEY: 'y' });
    assert.deepEqual(Object.keys(bare).sort(), ['HOME', 'LANG', 'LC_ALL', 'PATH', 'TZ']);
    assert.equal(await commandHook(`env > '${out}'`, { env })(REQ), undefined);
    const seen = readFileSync(out, 'utf8');
    assert.ok(seen.includes('KEEP=yes'));
    assert.ok(!seen.includes('correct horse') && !seen.includes('battery staple'));
  });

  it('firstLine keeps one clean line: no controls, no bidi overrides, bounded', () => {
    assert.equal(firstLine('a\u001b[31mred\u202e\r\nsecond'), 'a[31mred');
    assert.equal(firstLine('x'.repeat(500)).length, 201);
    assert.equal(firstLine(''), '');
  });
});

describe('auditedLog: what goes into the audit log', () => {
  function fakeSink(): { sink: AuditSink; entries: AuditEntry[] } {
    const entries: AuditEntry[] = [];
    return { entries, sink: { append: (e: AuditEntry) => entries.push(e) } as unknown as AuditSink };
  }

  it('every decision but limited and error, after the log line itself', () => {
    const { sink, entries } = fakeSink();
    const lines: string[] = [];
    const log = auditedLog((d: Decision) => void lines.push(d), sink);
    for (const d of ['listening', 'approved', 'accepted', 'limited', 'error', 'rotated', 'token-created', 'stopped'] as Decision[]) log(d, { enrollee: 'ab' });
    log.stop();
    assert.deepEqual(lines, ['listening', 'approved', 'accepted', 'limited', 'error', 'rotated', 'token-created', 'stopped']);
    assert.deepEqual(entries.map((e) => e.event), ['listening', 'approved', 'accepted', 'rotated', 'token-created', 'stopped']);
    assert.deepEqual(entries[1]!.fields, { enrollee: 'ab' });
  });

  it('refusals beyond the burst are counted into one refusals-suppressed entry, not written one by one', () => {
    const { sink, entries } = fakeSink();
    let t = 1_000_000;
    const log = auditedLog(() => undefined, sink, { nowMs: () => t });
    const f: DecisionFields = { reason: 'ERR_ENROLLEE_UNKNOWN: no pending approval' };
    for (let i = 0; i < REFUSAL_BURST + 40; i++) log('rejected', f);
    log('accepted', { enrollee: 'ab' }); // authenticated decisions are never capped
    assert.equal(entries.filter((e) => e.event === 'rejected').length, REFUSAL_BURST);
    assert.equal(entries.at(-1)!.event, 'accepted');
    t += 5_000; // five tokens back
    log('enroller-refused', { reason: 'not on the allow list' });
    const summary = entries.find((e) => e.event === 'refusals-suppressed');
    assert.deepEqual(summary?.fields.count, 40);
    assert.deepEqual(summary?.fields.kinds, { 'rejected ERR_ENROLLEE_UNKNOWN': 40 });
    assert.equal(entries.at(-1)!.event, 'enroller-refused');
    // Pending ones are written by flush() (service stop).
    for (let i = 0; i < 10; i++) log('rejected', f);
    log.flush();
    assert.equal(entries.at(-1)!.event, 'refusals-suppressed');
    assert.equal(entries.at(-1)!.fields.count, 6);
    log.stop();
  });
});
