/**
 * Statements in README.md that are not command blocks, checked against the code: the
 * exit-code table's example messages are what the CLI prints with that status, and the
 * install note promises no install time a fresh machine does not meet.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, ok, removeTempHomes, run, show, tempHome, type RunResult } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/paths.js';

after(() => removeTempHomes());

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

/** The rows of the "### Exit codes" table: status → the backticked spans of its "for example" column. */
function exitCodeExamples(): Map<number, string[]> {
  const at = README.indexOf('### Exit codes');
  assert.ok(at >= 0, 'README.md has an "Exit codes" section');
  const rows = new Map<number, string[]>();
  for (const line of README.slice(at).split('\n').slice(1)) {
    if (line.startsWith('#')) break;
    const cells = line.split('|').map((c) => c.trim());
    const status = Number(cells[1]);
    if (!/^\d$/.test(cells[1] ?? '')) continue;
    rows.set(status, [...(cells[3] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
  }
  assert.deepEqual([...rows.keys()], [0, 1, 2, 3, 4, 5], 'the table lists statuses 0 to 5');
  return rows;
}

/**
 * How to provoke each example message the table quotes. A span that is a flag (`--service-key`)
 * or a command (`status --watch`) is no message and is not listed.
 */
async function provoke(message: string): Promise<{ r: RunResult; expected: string } | undefined> {
  if (message.startsWith('choose exactly one of')) return { r: await run(['enrollee', 'join'], { home: tempHome('exit') }), expected: message };
  const unreachable = /^cannot reach tcp:\/\/127\.0\.0\.1:(\d+): connection refused$/.exec(message);
  if (unreachable) {
    const home = tempHome('exit');
    await ok(['enroller', 'init'], { home });
    const port = await freePort(); // nothing listens there
    const r = await run(['enroller', 'bundle', 'fetch', '--service', `tcp://127.0.0.1:${port}`], { home });
    return { r, expected: message.replace(unreachable[1]!, String(port)) };
  }
  return undefined;
}

test('the exit-code table quotes messages the CLI prints, with that exit status', async () => {
  const bad: string[] = [];
  for (const [status, spans] of exitCodeExamples()) {
    for (const span of spans.filter((s) => !s.startsWith('-') && !/^[a-z]+ --/.test(s))) {
      const p = await provoke(span);
      if (!p) {
        bad.push(`status ${status}: \`${span}\`: this test does not know how to provoke it; add it to provoke()`);
        continue;
      }
      if (p.r.code !== status) bad.push(`status ${status}: \`${span}\`: the command exits ${p.r.code}\n${show(p.r)}`);
      else if (!p.r.stderr.includes(`ockam-enroll: error: ${p.expected}\n`)) bad.push(`status ${status}: \`${span}\`: the CLI prints something else\n${show(p.r)}`);
    }
  }
  assert.deepEqual(bad, [], bad.join('\n'));
});

test('the install note promises no install time (better-sqlite3 compiles for minutes on a small machine)', () => {
  const quick = README.slice(README.indexOf('## Quick start'), README.indexOf('\n## ', README.indexOf('## Quick start') + 5));
  const note = quick.split('\n\n').find((p) => p.includes('better-sqlite3'));
  assert.ok(note, 'the Quick start says better-sqlite3 is compiled during the install');
  assert.doesNotMatch(note, /\b\d+\s*(?:s|sec|seconds)\b/, `no duration in seconds: ${note}`);
  assert.match(note, /a few minutes/, note);
});
