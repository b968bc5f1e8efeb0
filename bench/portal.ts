/**
 * The portal part of `npm run bench` (issue #19 "Benchmark"; `npm run bench -- --portal` runs
 * it alone). Side by side, on loopback, in one process tree:
 *
 *   direct   client → target
 *   ssh -L   client → ssh (-L) → sshd → target   (OpenSSH, started here with throwaway keys)
 *   service  client → `enrollee inlet` → `service start` → target          (a service outlet)
 *   device   client → `enrollee inlet` → `service start` → `enrollee outlet` → target
 *
 * Each path: bulk throughput (one stream, BENCH_PORTAL_MB, default 1024 MB, downloaded from
 * the target), the round trip of 1-byte request/response (p50, p99 over `rtt` exchanges on
 * one connection), and the RSS that `idle` open, idle streams add to the path's processes
 * (kB per stream). Every process is real: the CLI as built, sshd from the system.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync, chmodSync, existsSync, readFileSync, openSync, closeSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { loadavg, userInfo } from 'node:os';
import { BIN, cli, freePort, startService, statusKb, type RunningService } from './proc.js';

export interface PortalBenchOptions {
  /** Megabytes per throughput run. */
  mb: number;
  /** 1-byte round trips per RTT run (the first tenth are a warm-up, not counted). */
  rtt: number;
  /** Idle streams for the memory run. */
  idle: number;
}

interface PathResult {
  throughput_mb_s: number;
  /**
   * CPU seconds (user + system, from /proc/PID/stat) the path's processes spent per GB moved,
   * in the faster throughput run: on a shared machine MB/s measures the neighbours as much as
   * the code, CPU per byte much less so.
   */
  cpu_s_per_gb: number;
  rtt_us: { p50: number; p99: number };
  idle_kb_per_stream: number;
  /** The processes whose RSS was counted. */
  processes: string[];
}

type Say = (line: string) => void;
const r2 = (n: number) => Math.round(n * 100) / 100;

// ---- targets: a source of N bytes, an echo

function listen(s: Server): Promise<number> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port)));
}

/** Sends `mb` MB to every connection that sends "G", then closes; echoes everything else. */
function targetServer(mb: number): Server {
  const chunk = Buffer.alloc(256 * 1024, 0x5a);
  return createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.setNoDelay(true);
    let first = true;
    s.on('data', (d: Buffer) => {
      if (first && d[0] === 0x47 /* G */) {
        first = false;
        let left = mb * 1024 * 1024;
        const more = () => {
          while (left > 0) {
            const n = Math.min(left, chunk.length);
            left -= n;
            if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once('drain', more);
          }
          s.end();
        };
        more();
        return;
      }
      first = false;
      s.write(d);
    });
    s.on('end', () => s.end());
  });
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.setNoDelay(true);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** CPU seconds (utime + stime) of each process so far; 0 for one that is gone. */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited
    }
  }
  return ticks / CLK_TCK;
}
/** USER_HZ: 100 on every Linux the bench runs on (getconf CLK_TCK). */
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

async function throughput(port: number, mb: number, pids: () => number[]): Promise<{ mbs: number; cpu: number }> {
  const s = await dial(port);
  const want = mb * 1024 * 1024;
  const procs = pids();
  const cpu0 = cpuSeconds(procs);
  const t0 = performance.now();
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => (got += d.length));
    s.on('end', resolve);
    s.on('error', reject);
    s.write('G');
  });
  const secs = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(procs) - cpu0;
  s.destroy();
  if (got !== want) throw new Error(`throughput run got ${got} bytes, wanted ${want}`);
  return { mbs: r2(mb / secs), cpu: r2((cpu * 1024) / mb) };
}

async function rtt(port: number, n: number): Promise<{ p50: number; p99: number }> {
  const s = await dial(port);
  const times: number[] = [];
  const one = Buffer.from([1]);
  await new Promise<void>((resolve, reject) => {
    let i = 0;
    let t = 0;
    s.on('error', reject);
    s.on('data', () => {
      times.push(performance.now() - t);
      if (++i >= n) return resolve();
      t = performance.now();
      s.write(one);
    });
    t = performance.now();
    s.write(one);
  });
  s.destroy();
  const counted = times.slice(Math.floor(n / 10)).sort((a, b) => a - b);
  const q = (p: number) => Math.round(counted[Math.min(counted.length - 1, Math.floor(p * counted.length))]! * 1000);
  return { p50: q(0.5), p99: q(0.99) };
}

/** Opens `n` connections through `port`, each proven open by one echoed byte; returns them. */
async function openIdle(port: number, n: number): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, async () => {
        const s = await dial(port);
        await new Promise<void>((resolve, reject) => {
          s.once('data', () => resolve());
          s.once('error', reject);
          s.write('x');
        });
        return s;
      }),
    );
    out.push(...batch);
  }
  return out;
}

const rssKb = (pids: number[]) => pids.reduce((a, p) => a + statusKb(p, 'VmRSS'), 0);

async function idleKb(port: number, n: number, pids: () => number[]): Promise<number> {
  // Warm the path first, so the first stream's one-time costs (JIT, buffers) are not counted.
  (await openIdle(port, 20)).forEach((s) => s.destroy());
  await new Promise((r) => setTimeout(r, 500));
  (globalThis as { gc?: () => void }).gc?.();
  const before = rssKb(pids());
  const socks = await openIdle(port, n);
  await new Promise((r) => setTimeout(r, 1000));
  const after = rssKb(pids());
  for (const s of socks) s.destroy();
  return r2(Math.max(0, after - before) / n);
}

async function measure(name: string, port: number, o: PortalBenchOptions, pids: () => number[], procs: string[], say: Say): Promise<PathResult> {
  say(`portal bench: ${name}: ${o.mb} MB throughput`);
  // The faster of two runs: the machine is shared, so the less disturbed one is the figure.
  const runs = [await throughput(port, o.mb, pids), await throughput(port, o.mb, pids)];
  const best = runs[0]!.mbs >= runs[1]!.mbs ? runs[0]! : runs[1]!;
  const tp = best.mbs;
  say(`  ${tp} MB/s, ${best.cpu} CPU s per GB (load ${loadavg()[0]!.toFixed(1)}); ${o.rtt} 1-byte round trips`);
  const rt = await rtt(port, o.rtt);
  say(`  p50 ${rt.p50} µs, p99 ${rt.p99} µs; ${o.idle} idle streams`);
  const kb = await idleKb(port, o.idle, pids);
  say(`  ${kb} kB per idle stream`);
  return { throughput_mb_s: tp, cpu_s_per_gb: best.cpu, rtt_us: rt, idle_kb_per_stream: kb, processes: procs };
}

// ---- sshd with throwaway keys

interface Sshd {
  localPort: number;
  pids: () => number[];
  stop(): void;
}

function childPids(pid: number): number[] {
  const r = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').filter(Boolean).map(Number);
}

async function startSsh(root: string, targetPort: number, say: Say): Promise<Sshd | { skipped: string }> {
  const sshd = '/usr/sbin/sshd';
  if (!existsSync(sshd)) return { skipped: 'sshd is not installed (/usr/sbin/sshd; Debian: apt-get install openssh-server)' };
  if (spawnSync('ssh', ['-V']).status !== 0) return { skipped: 'the ssh client is not installed' };
  const dir = join(root, 'ssh');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keygen = (file: string) => {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]);
    if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
  };
  keygen(join(dir, 'host'));
  keygen(join(dir, 'user'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user.pub')));
  chmodSync(join(dir, 'authorized_keys'), 0o600);
  const sshdPort = await freePort();
  const user = userInfo().username;
  const config = [
    `Port ${sshdPort}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host')}`, `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no', `PidFile ${join(dir, 'sshd.pid')}`,
    'AllowTcpForwarding yes', 'PermitRootLogin prohibit-password', `AllowUsers ${user}`, 'LogLevel ERROR', 'MaxSessions 10',
  ].join('\n');
  writeFileSync(join(dir, 'sshd_config'), `${config}\n`);
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const log = openSync(join(dir, 'sshd.log'), 'a');
  const d: ChildProcess = spawn(sshd, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', log, log] });
  closeSync(log);
  await new Promise((r) => setTimeout(r, 300));
  if (d.exitCode !== null) return { skipped: `sshd did not start: ${readFileSync(join(dir, 'sshd.log'), 'utf8').slice(-500)}` };
  const localPort = await freePort();
  const c: ChildProcess = spawn('ssh', [
    '-N', '-i', join(dir, 'user'), '-p', String(sshdPort), '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
    '-o', 'ExitOnForwardFailure=yes', '-o', 'BatchMode=yes', '-L', `127.0.0.1:${localPort}:127.0.0.1:${targetPort}`, `${user}@127.0.0.1`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  c.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    const okay = await dial(localPort).then((s) => (s.destroy(), true), () => false);
    if (okay) break;
    if (c.exitCode !== null || Date.now() > deadline) {
      c.kill('SIGKILL');
      d.kill('SIGKILL');
      return { skipped: `ssh -L did not come up: ${err.slice(-500)}` };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const version = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim();
  say(`  ${version}, sshd on 127.0.0.1:${sshdPort}, ssh -L 127.0.0.1:${localPort}`);
  return {
    localPort,
    // The ssh client, and sshd's per-connection children (the listener itself does no relaying).
    pids: () => [c.pid!, ...childPids(d.pid!).flatMap((p) => [p, ...childPids(p)])],
    stop() {
      c.kill('SIGTERM');
      d.kill('SIGTERM');
    },
  };
}

// ---- the portals, as CLI processes

interface Bg {
  child: ChildProcess;
  out: () => string;
  stop(): void;
}

function background(args: string[], logPath: string): Bg {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => writeFileSync(logPath, b, { flag: 'a' }));
  return { child, out: () => out, stop: () => void child.kill('SIGTERM') };
}

async function ready(bg: Bg, what: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!bg.out().includes('"event":"ready"')) {
    if (bg.child.exitCode !== null) throw new Error(`${what} exited ${bg.child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${what} not ready`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs the whole portal part; `track` learns of the service so the caller can stop it. */
export async function runPortalBench(root: string, o: PortalBenchOptions, say: Say, track: (s: RunningService) => void): Promise<Record<string, unknown>> {
  const target = targetServer(o.mb);
  const targetPort = await listen(target);
  const stops: (() => void)[] = [];
  try {
    const out: Record<string, unknown> = { options: o };
    out.direct = await measure('direct TCP', targetPort, o, () => [], [], say);

    say('portal bench: ssh -L');
    const ssh = await startSsh(root, targetPort, say);
    if ('skipped' in ssh) {
      say(`  skipped: ${ssh.skipped}`);
      out.ssh = { skipped: ssh.skipped };
    } else {
      stops.push(() => ssh.stop());
      out.ssh = await measure('ssh -L', ssh.localPort, o, ssh.pids, ['ssh', 'sshd (per connection)'], say);
      ssh.stop();
    }

    // A service, an enroller, two enrolled devices: X (inlets) and Y (a device outlet).
    say('portal bench: enrolling two devices');
    const dir = join(root, 'portal');
    mkdirSync(dir, { recursive: true });
    const svcHome = join(dir, 'service');
    const port = await freePort();
    const init = JSON.parse(cli(['service', 'init', '--home', svcHome, '--address', `tcp://127.0.0.1:${port}`, '--json']));
    const svc = await startService({ home: svcHome, port, logPath: join(dir, 'service.log') });
    track(svc);
    const enroller = join(dir, 'enroller');
    const ekey = JSON.parse(cli(['enroller', 'init', '--home', enroller, '--json'])).enroller_key as string;
    cli(['service', 'enroller', 'allow', ekey, '--home', svcHome, '--name', 'bench']);
    cli(['enroller', 'bundle', 'fetch', '--home', enroller, '--service', `tcp://127.0.0.1:${port}`, '--count', '2', '--service-key', init.service_key, '--quiet']);
    const device = (name: string) => {
      const home = join(dir, name);
      const card = JSON.parse(cli(['enrollee', 'init', '--home', home, '--name', name, '--json'])).card as string;
      const bundle = cli(['enroller', 'approve', card, '--home', enroller]).trim();
      cli(['enrollee', 'join', '--home', home, '--bundle', bundle, '--quiet']);
      return home;
    };
    const x = device('bench-x');
    const y = device('bench-y');
    cli(['service', 'outlet', 'add', 'target', '--to', `127.0.0.1:${targetPort}`, '--home', svcHome]);

    const inletPort = await freePort();
    const inlet = background(['enrollee', 'inlet', '--home', x, '--from', `127.0.0.1:${inletPort}`, '--to', 'service/target', '--json'], join(dir, 'inlet.log'));
    stops.push(inlet.stop);
    await ready(inlet, 'inlet service/target');
    out.service_outlet = await measure('service outlet portal', inletPort, o, () => [inlet.child.pid!, svc.pid], ['enrollee inlet', 'service start'], say);
    inlet.stop();

    const outlet = background(['enrollee', 'outlet', '--home', y, '--name', 'target', '--to', `127.0.0.1:${targetPort}`, '--json'], join(dir, 'outlet.log'));
    stops.push(outlet.stop);
    await ready(outlet, 'outlet target');
    const dInletPort = await freePort();
    const dInlet = background(['enrollee', 'inlet', '--home', x, '--from', `127.0.0.1:${dInletPort}`, '--to', 'bench-y/target', '--json'], join(dir, 'device-inlet.log'));
    stops.push(dInlet.stop);
    await ready(dInlet, 'inlet bench-y/target');
    out.device_portal = await measure('device-to-device portal', dInletPort, o, () => [dInlet.child.pid!, svc.pid, outlet.child.pid!], ['enrollee inlet', 'service start', 'enrollee outlet'], say);
    dInlet.stop();
    outlet.stop();
    await svc.stop();

    const s = out.ssh as PathResult | { skipped: string };
    const so = out.service_outlet as PathResult;
    const dp = out.device_portal as PathResult;
    const ratio = (a: number, b: number) => r2(a / b);
    const targets: Record<string, { value: number | null; target: string; met: boolean | null }> = {};
    if ('skipped' in s) {
      targets.portal_vs_ssh_throughput = { value: null, target: '>= 0.8 (both portals; ssh skipped)', met: null };
      targets.portal_rtt_vs_ssh = { value: null, target: '<= 1.5 (ssh skipped)', met: null };
    } else {
      const tp = Math.min(so.throughput_mb_s, dp.throughput_mb_s) / s.throughput_mb_s;
      const rt = Math.max(so.rtt_us.p50, dp.rtt_us.p50) / s.rtt_us.p50;
      out.ratios = {
        service_vs_ssh_throughput: ratio(so.throughput_mb_s, s.throughput_mb_s),
        device_vs_ssh_throughput: ratio(dp.throughput_mb_s, s.throughput_mb_s),
        service_rtt_p50_vs_ssh: ratio(so.rtt_us.p50, s.rtt_us.p50),
        device_rtt_p50_vs_ssh: ratio(dp.rtt_us.p50, s.rtt_us.p50),
        service_rtt_p99_vs_ssh: ratio(so.rtt_us.p99, s.rtt_us.p99),
        device_rtt_p99_vs_ssh: ratio(dp.rtt_us.p99, s.rtt_us.p99),
        // CPU per GB over ssh's: the figure that a busy machine disturbs least.
        service_vs_ssh_cpu_per_gb: ratio(so.cpu_s_per_gb, s.cpu_s_per_gb),
        device_vs_ssh_cpu_per_gb: ratio(dp.cpu_s_per_gb, s.cpu_s_per_gb),
      };
      targets.portal_vs_ssh_throughput = { value: r2(tp), target: '>= 0.8 (the slower of the two portals / ssh -L)', met: tp >= 0.8 };
      targets.portal_rtt_vs_ssh = { value: r2(rt), target: '<= 1.5 (p50, the slower portal / ssh -L)', met: rt <= 1.5 };
    }
    const idle = Math.max(so.idle_kb_per_stream, dp.idle_kb_per_stream);
    targets.portal_idle_kb_per_stream = { value: idle, target: '<= 16 (RSS added per idle stream, over all the path\'s processes)', met: idle <= 16 };
    out.targets = targets;
    return out;
  } finally {
    for (const s of stops) s();
    target.close();
  }
}
