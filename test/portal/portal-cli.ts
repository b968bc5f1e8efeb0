/**
 * What the portal CLI tests share: the built CLI's `enrollee inlet` and `enrollee outlet` as
 * background processes, waiting for the line each says when it is ready, and the revocation
 * check of issue #19 "Tests" that both kinds of portal must pass (service outlet, device
 * outlet).
 */
import assert from 'node:assert/strict';
import { assertFailure, ok, run, sleep, spawnCli, type Background, type Enrollee, type World } from '../helpers/cli.js';
import { approve, EXIT, join } from '../helpers/lifecycle.js';
import { freePort } from '../helpers/ports.js';
import { patience } from '../helpers/pace.js';
import type { curl as curlBytes } from './target.js';

/** Approves `e` through the world's enroller and joins it. */
export async function enroll(w: World, e: Enrollee): Promise<void> {
  const r = await join(e, await approve(w, e));
  assert.equal(r.code, 0, r.stderr);
}

const count = (bg: Background, re: RegExp) => `${bg.stdout()}\n${bg.lines.join('\n')}`.split('\n').filter((l) => re.test(l)).length;

/** Resolves once `what` matches `times` lines of bg's stdout or stderr; fails if bg exits first. */
export async function waitFor(bg: Background, what: RegExp, label: string, times = 1): Promise<void> {
  const end = Date.now() + (await patience(20_000));
  while (count(bg, what) < times) {
    if (!bg.running()) throw new Error(`${label} exited:\n${bg.lines.join('\n')}`);
    if (Date.now() > end) throw new Error(`${label}: no ${what} (×${times}) in:\n${bg.stdout()}\n${bg.lines.join('\n')}`);
    await sleep(25);
  }
}

/** `enrollee inlet --json` for `e` on a free port; resolves once its ready event is out. */
export async function startInlet(e: Enrollee, target: string, procs: Background[]): Promise<{ bg: Background; port: number }> {
  const port = await freePort();
  const bg = spawnCli(['enrollee', 'inlet', '--from', `127.0.0.1:${port}`, '--to', target, '--json'], { home: e.home });
  procs.push(bg);
  await waitFor(bg, /"event":"ready"/, 'inlet');
  return { bg, port };
}

/** `enrollee outlet --json` for `e`; resolves once its ready event is out. */
export async function startOutlet(e: Enrollee, name: string, to: string, procs: Background[], extra: readonly string[] = []): Promise<Background> {
  const bg = spawnCli(['enrollee', 'outlet', '--name', name, '--to', to, '--json', ...extra], { home: e.home });
  procs.push(bg);
  await waitFor(bg, /"event":"ready"/, 'outlet');
  return bg;
}

/**
 * Revokes `e` while its inlet `p` (to `target`) is in the middle of a /slow transfer: the
 * stream is closed within 1 s (scaled by the machine's pace), the inlet ends with exit 3 and
 * says why, and neither that inlet's port nor a new inlet gets a stream. `opened` picks the
 * service's decision line that says the transfer's stream is open.
 */
export async function revokeDuringTransfer(
  w: World,
  e: Enrollee,
  p: { bg: Background; port: number },
  target: string,
  opened: (line: string) => boolean,
  curl: (args: readonly string[]) => ReturnType<typeof curlBytes>,
): Promise<void> {
  const slow = curl([`http://127.0.0.1:${p.port}/slow`]);
  const end = Date.now() + (await patience(5000));
  while (!w.service.decisions('stream-opened').some(opened)) {
    assert.ok(Date.now() < end, w.service.lines.join('\n'));
    await sleep(20);
  }
  await sleep(200);
  await ok(['service', 'enrollee', 'revoke', e.id], { home: w.serviceHome });
  const t0 = Date.now();
  const r = await slow;
  const took = Date.now() - t0;
  assert.notEqual(r.exitCode, 0, 'the transfer was cut');
  assert.ok(r.stdout.length > 0, 'bytes flowed before the revocation');
  assert.ok(took <= (await patience(1000)), `the stream closed ${took} ms after the revocation`);
  const done = await p.bg.done();
  assert.equal(done.code, EXIT.REJECTED, done.stderr);
  assert.match(done.stderr, /the service revoked this enrollee: the inlet stops/);
  // A new stream is refused: the inlet is gone and a new one cannot open a session.
  assert.notEqual((await curl([`http://127.0.0.1:${p.port}/hello`])).exitCode, 0);
  const again = await run(['enrollee', 'inlet', '--from', `127.0.0.1:${p.port}`, '--to', target], { home: e.home });
  assertFailure(again, EXIT.REJECTED, /revoked/);
}
