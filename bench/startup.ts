/**
 * CLI start-up: wall time of `ockam-enroll --version` and `ockam-enroll enrollee card`
 * against `node -e 0`, each the median of `runs` runs, interleaved so that a burst of noise
 * on the machine lands on all three alike.
 */
import { spawnSync } from 'node:child_process';
import { BIN } from './proc.js';

export interface StartupResult {
  runs: number;
  node_e0_ms: number;
  version_ms: number;
  card_ms: number;
  version_x: number;
  card_x: number;
}

function wallMs(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export function measureStartup(enrolleeHome: string, runs = 10): StartupResult {
  const env = { ...process.env };
  const cmds: Record<'e0' | 'version' | 'card', string[]> = {
    e0: ['-e', '0'],
    version: [BIN, '--version'],
    card: [BIN, 'enrollee', 'card', '--home', enrolleeHome],
  };
  const times: Record<keyof typeof cmds, number[]> = { e0: [], version: [], card: [] };
  for (const k of Object.keys(cmds) as (keyof typeof cmds)[]) wallMs(cmds[k], env); // warm the page cache
  for (let i = 0; i < runs; i++) {
    for (const k of Object.keys(cmds) as (keyof typeof cmds)[]) times[k].push(wallMs(cmds[k], env));
  }
  const e0 = median(times.e0);
  const version = median(times.version);
  const card = median(times.card);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { runs, node_e0_ms: r(e0), version_ms: r(version), card_ms: r(card), version_x: r(version / e0), card_x: r(card / e0) };
}
