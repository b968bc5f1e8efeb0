/**
 * Bounds on waits, derived from how fast this machine is right now rather than from a guess.
 *
 * A test waits on a condition (a log line, an exit, a closed socket), never for a while; the
 * bound only decides when waiting turns into a failure. It is the time the wait takes on an
 * idle machine, times how much slower than idle a trivial spawn of the built binary is at
 * the moment (measured once per test process), so that a machine loaded by other work gets
 * proportionally more time instead of failing the suite.
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

let baseline: Promise<number> | undefined;

function spawnOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [BIN, '--version'], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`ockam-enroll --version exited ${code}`))));
  });
}

/** How long a trivial spawn of the binary takes now: the faster of two, measured once per process. */
export function spawnBaselineMs(): Promise<number> {
  baseline ??= (async () => Math.min(await spawnOnce(), await spawnOnce()))();
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
