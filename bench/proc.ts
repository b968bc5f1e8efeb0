/**
 * Process plumbing for the benchmark: the CLI's path, spawning `service start` and waiting
 * for its `listening` line, and what /proc says about a process (CPU seconds, peak RSS).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** bin/ockam-enroll.js, from dist/bench/. */
export const BIN = fileURLToPath(new URL('../../bin/ockam-enroll.js', import.meta.url));

/** Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on every Linux we run on). */
const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** utime + stime of the whole process (all its threads), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / CLK_TCK;
}

/**
 * CPU seconds of each thread of a process, summed by thread name (node: the main thread is
 * "node", a worker thread "node" too but with its own tid, libuv's pool "libuv-worker", V8's
 * "V8 DefaultWorke"). Keyed "name" for the main thread and "name/tid" for the others.
 */
export function threadCpu(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[Number(tid) === pid ? `${name} (main)` : `${name}/${tid}`] = (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** A field of /proc/<pid>/status in kB (VmHWM: peak RSS, VmRSS: current RSS). */
export function statusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Bytes on disk of a SQLite store: the database, its WAL and its shared-memory file. */
export function storeBytes(dbPath: string): { db: number; wal: number; total: number } {
  const size = (p: string) => (existsSync(p) ? statSync(p).size : 0);
  const db = size(dbPath);
  const wal = size(`${dbPath}-wal`) + size(`${dbPath}-shm`);
  return { db, wal, total: db + wal };
}

/** A TCP port nobody listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RunningService {
  child: ChildProcess;
  pid: number;
  port: number;
  logPath: string;
  stop(): Promise<number | null>;
}

/**
 * Spawns `node bin/ockam-enroll.js service start --home H --listen 127.0.0.1:P`, its
 * decision log (stderr) going to `logPath`, and resolves once it logs `listening`.
 */
export async function startService(opts: {
  home: string;
  port: number;
  logPath: string;
  nodeArgs?: string[];
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}): Promise<RunningService> {
  const fd = openSync(opts.logPath, 'a');
  const child = spawn(
    process.execPath,
    [...(opts.nodeArgs ?? []), BIN, 'service', 'start', '--home', opts.home, '--listen', `127.0.0.1:${opts.port}`, ...(opts.extraArgs ?? [])],
    { stdio: ['ignore', 'ignore', fd], env: { ...process.env, ...opts.env } },
  );
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
  for (;;) {
    const text = readFileSync(opts.logPath, 'utf8');
    if (/ listening /.test(text) || /"decision":"listening"/.test(text)) break;
    if (child.exitCode !== null) throw new Error(`service start exited with ${child.exitCode}:\n${text.slice(-2000)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`service start did not listen in time:\n${text.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    pid: child.pid!,
    port: opts.port,
    logPath: opts.logPath,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** Runs the CLI to completion (for setup steps); throws with its stderr on failure. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`ockam-enroll ${args.join(' ')} exited ${r.status}:\n${r.stderr}`);
  return r.stdout;
}

/**
 * CPU seconds of a PostgreSQL server: its postmaster (with the time of children that have
 * exited, cutime + cstime) and every live child (backends, WAL writer, checkpointer). The
 * postmaster's pid is the first line of `<data>/postmaster.pid`.
 */
export function pgServerCpuSeconds(dataDir: string): number {
  const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
  const fields = (p: number | string) => {
    const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  };
  const own = fields(pid);
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = fields(d);
      if (Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks / CLK_TCK;
}
