/**
 * Bounds on waits, derived from how fast this machine is right now rather than from a guess.
 *
 * A test waits on a condition (a log line, an exit, a closed socket), never for a while; the
 * bound only decides when waiting turns into a failure. It is the time the wait takes on an
 * idle machine, times how much slower than idle a trivial spawn of the built binary is at
 * the moment, so that a machine loaded by other work gets proportionally more time instead
 * of failing the suite. The pace is measured again when the last measurement is older than
 * REMEASURE_MS: a test file runs for minutes, and the load on a shared machine changes in
 * that time (the file beside it in the runner starts 2 000 enrollments, a build starts), so a
 * pace taken when the file started would give a wait that begins later too little time.
 */
import { spawn } from 'node:child_process';
import { BIN } from './paths.js';

/**
 * `node bin/ockam-enroll.js --version` on this project's 2-core CI machine, idle: the
 * fastest of several runs (measured with the other helpers' work on it: about 65 ms).
 */
export const IDLE_SPAWN_MS = 60;

/** The measured slowdown is capped: past this the machine is not slow but stuck. */
const MAX_SLOWDOWN = 20;

/** A measurement older than this is taken again before it sizes a wait. */
const REMEASURE_MS = 15_000;

let baseline: Promise<number> | undefined;
let measuredAt = 0;

function spawnOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [BIN, '--version'], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`ockam-enroll --version exited ${code}`))));
  });
}

/** How long a trivial spawn of the binary takes now: the faster of two, measured again after REMEASURE_MS. */
export function spawnBaselineMs(): Promise<number> {
  if (baseline === undefined || performance.now() - measuredAt > REMEASURE_MS) {
    measuredAt = performance.now();
    baseline = (async () => Math.min(await spawnOnce(), await spawnOnce()))();
  }
  return baseline;
}

/** How many times slower than idle this machine is right now; at least 1. */
export async function slowdown(): Promise<number> {
  return Math.min(MAX_SLOWDOWN, Math.max(1, (await spawnBaselineMs()) / IDLE_SPAWN_MS));
}

/** The bound for a wait that takes at most `idleMs` on an idle machine, scaled by slowdown(). */
export async function patience(idleMs: number): Promise<number> {
  return Math.ceil(idleMs * (await slowdown()));
}
