/**
 * `ockam-enroll demo`, run as a process: its narration is what a newcomer reads first, so
 * its structure is checked line by line. Each step's output sits under that step (the
 * service's background log included), every command shown is followed by what it printed,
 * step 8 shows the enrollee table, and nothing follows "Done".
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseJsonOut, removeTempHomes, run, show, tempHome } from '../helpers/cli.js';

after(() => removeTempHomes());

// The demo runs ten commands and a service; on a loaded machine that takes a while.
const DEMO_TIMEOUT_MS = 180_000;
const DONE = 'Done: one device onboarded across three processes.';

interface Step {
  n: number;
  lines: string[];
}

/** The narration split at its numbered headings; the lines before step 1 and after "Done" kept apart. */
function steps(stdout: string): { before: string[]; steps: Step[]; after: string[] } {
  const lines = stdout.split('\n');
  const before: string[] = [];
  const out: Step[] = [];
  let tail: string[] | undefined;
  for (const line of lines) {
    const m = /^(\d+)\. /.exec(line);
    if (tail) tail.push(line);
    else if (line === DONE) tail = [];
    else if (m) out.push({ n: Number(m[1]), lines: [] });
    else if (out.length === 0) before.push(line);
    else out[out.length - 1]!.lines.push(line);
  }
  return { before, steps: out, after: tail ?? [] };
}

/** The service's decision-log lines in a step (`│ <time> <decision> …`), as decisions. */
function serviceDecisions(step: Step): string[] {
  return step.lines.map((l) => /^\s+│ \d{4}-\d\d-\d\dT[\d:.]+Z (\S+)/.exec(l)?.[1]).filter((d): d is string => d !== undefined);
}

test('demo: every step shows its own output, step 8 the table, and nothing follows Done', async () => {
  const home = join(tempHome('demo'), 'homes');
  const r = await run(['demo', '--home', home], { timeoutMs: DEMO_TIMEOUT_MS });
  assert.equal(r.code, 0, show(r));
  const { before, steps: got, after: tail } = steps(r.stdout);
  const ctx = `\n--- stdout ---\n${r.stdout}`;

  assert.deepEqual(got.map((s) => s.n), [1, 2, 3, 4, 5, 6, 7, 8], `eight numbered steps, in order${ctx}`);
  assert.deepEqual(before.filter((l) => l.trim() !== ''), [], `nothing before step 1${ctx}`);
  assert.deepEqual(tail.filter((l) => l.trim() !== ''), [], `nothing after "${DONE}"${ctx}`);
  assert.ok(r.stdout.endsWith(`${DONE}\n`), `"${DONE}" is the last line${ctx}`);

  // Every command shown is followed by some output of its own before the next command or step.
  for (const s of got) {
    const cmds = s.lines.map((l, i) => (l.startsWith('  $ ockam-enroll ') ? i : -1)).filter((i) => i >= 0);
    assert.ok(cmds.length > 0, `step ${s.n} shows the command it runs${ctx}`);
    for (const [k, i] of cmds.entries()) {
      const end = cmds[k + 1] ?? s.lines.length;
      const output = s.lines.slice(i + 1, end).filter((l) => l.trim() !== '');
      assert.ok(output.length > 0, `step ${s.n}: "${s.lines[i]}" is followed by its output${ctx}`);
    }
  }

  // The service's log lines sit under the step whose command caused them.
  const decisions = Object.fromEntries(got.map((s) => [s.n, serviceDecisions(s)]));
  assert.deepEqual(decisions, { 1: [], 2: ['listening', 'https-listening'], 3: [], 4: ['bundles'], 5: [], 6: ['approved', 'accepted'], 7: [], 8: [] }, `service log lines per step${ctx}`);

  // Step 6: both ends show the same short authentication string; the device's result and the enroller's.
  const s6 = got[5]!.lines.join('\n');
  const sas = [...s6.matchAll(/short authentication string: (\d{4}-\d{4})/g)].map((m) => m[1]);
  assert.equal(sas.length, 2, `two SAS lines in step 6${ctx}`);
  assert.equal(sas[0], sas[1]);
  assert.match(s6, /^ {3}enrolled as [0-9a-f]{64} \(Robot Axiom\) with the service at tcp:\/\/127\.0\.0\.1:\d+$/m);
  assert.match(s6, /^ {3}enroller: onboarded Robot Axiom \(enrollee [0-9a-f]{64}\)$/m);

  // Step 8: the table, as `service enrollee list` prints it, and no other command.
  const s8 = got[7]!.lines;
  assert.deepEqual(s8.filter((l) => l.startsWith('  $ ')), ['  $ ockam-enroll service enrollee list'], `step 8 shows one command${ctx}`);
  const header = s8.findIndex((l) => /^ {3}ID {2,}METHOD {2,}STATE {2,}NAME {2,}ATTRIBUTES$/.test(l));
  assert.ok(header >= 0, `step 8 shows the table's header${ctx}`);
  assert.match(s8[header + 1] ?? '', /^ {3}[0-9a-f]{16} {2}x3dh {4}enrolled {2,}Robot Axiom$/, `and the enrolled device${ctx}`);

  // --home keeps the homes, and says so before "Done".
  assert.match(r.stdout, new RegExp(`^homes kept in ${home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n\\n?${DONE}\\n$`, 'm'), ctx);
  assert.deepEqual(readdirSync(home).sort(), ['device', 'enroller', 'service']);
  assert.equal(r.stderr, '', 'the narration is on stdout; the demo itself writes nothing to stderr');
});

test('demo --json: one JSON object with the enrolled device, no narration', async () => {
  const r = await run(['demo', '--json'], { timeoutMs: DEMO_TIMEOUT_MS });
  assert.equal(r.code, 0, show(r));
  const j = parseJsonOut<{ ok: boolean; service_key: string; enrollees: { state: string; name: string; method: string }[]; homes?: unknown }>(r);
  assert.equal(j.ok, true);
  assert.match(j.service_key, /^[0-9a-f]{64}$/);
  assert.equal(j.enrollees.length, 1);
  assert.equal(j.enrollees[0]!.state, 'enrolled');
  assert.equal(j.enrollees[0]!.name, 'Robot Axiom');
  assert.equal(j.homes, undefined, 'temporary homes are removed, so none are named');
  assert.equal(r.stderr, '');
});
