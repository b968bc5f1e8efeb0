/**
 * `npm run bench`: the service's throughput against the crypto bound, at 1k and 1M
 * records, its rejection rate, bundle generation and CLI start-up (issue 5). Prints one
 * JSON object on stdout and a readable table on stderr; progress goes to stderr as well.
 *
 *   npm run bench                      # everything but the 1M-record scale run
 *   BENCH_SCALE=1 npm run bench        # … and the scale run (or: -- --scale)
 *   node dist/bench/run.js --n 24000 --scale-records 1000000 --keep --profile
 *   node dist/bench/run.js --pg-n 8000                # PostgreSQL rows of 8000 enrollments each (--pg-n 0: none)
 *   node dist/bench/run.js --policy                   # the policy row alone (issue #20: CEL evaluation per stream open)
 *   node dist/bench/run.js --attributes               # the attributes row alone (issue #20: enrollment with 4 attributes vs none, interleaved)
 *
 * The service runs as a real `service start` in its own process, on a store on disk with
 * synchronous=FULL; the load generator and this script share the machine with it.
 *
 * The PostgreSQL rows (issue 11): the same C=256 stream run against `service start --store
 * postgres://…` on a throwaway local cluster (scripts/pg-cluster.mjs: fsync and
 * synchronous_commit on), with one replica and with two replicas sharing the database (the
 * load split evenly, 128 streams to each). pg_ratio = 1 replica / the SQLite C=256 row;
 * replica_scaling = 2 replicas / 1 replica.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { concat } from '../src/crypto/bytes.js';
import { defaultWorkers } from '../src/pool/pool.js';
import { generateX25519 } from '../src/crypto/x25519.js';
import { systemRandom } from '../src/crypto/random.js';
import { bundleSigner, encodeBundle, signBundle, type Bundle } from '../src/protocol/codec/bundle.js';
import { bundleToText } from '../src/protocol/codec/text.js';
import { SessionCipher } from '../src/protocol/enrollment/index.js';
import { ACCEPT_AAD, decodeAcceptance } from '../src/protocol/messages/service.js';
import { ServiceHome } from '../src/roles/service/home.js';
import { measureBound, measureExtras, type BoundResult } from './bound.js';
import { bulkLoad, Enrollees, loadEnrollees, loadEnrolleesPg, precompute, servicePublic, storePath } from './fixtures.js';
import { buildRequests, runLoad, type ConnectionMode, type LoadResult } from './loadgen.js';
import { cli, cpuSeconds, freePort, pgServerCpuSeconds, startService, statusKb, storeBytes, threadCpu, type RunningService } from './proc.js';
import { measureStartup } from './startup.js';
import { printTable } from './table.js';
import { runTokenBench } from './token.js';
import { runPortalBench } from './portal.js';
import { runPolicyBench } from './policy.js';
import { runAttributesBench } from './attributes.js';

// ---- options

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const value = (name: string, dflt: number): number => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? Number(argv[i + 1]) : dflt;
};
const OPTS = {
  scale: flag('scale') || process.env.BENCH_SCALE === '1',
  /** Pending enrollees preloaded for the main throughput runs (C = 1, 16, 256, and 256 per message). */
  n: value('n', 31_000),
  /** The first `warm` of them warm the service up (JIT, caches) at C=16 and are not measured. */
  warm: value('warm', 1_000),
  c1: value('c1', 1_500),
  c16: value('c16', 6_000),
  /** Enrollments at C=256 with one connection per message (the C=256 stream run gets the rest of n). */
  c256pm: value('c256pm', 6_000),
  rejections: value('rejections', 40_000),
  rejectionsPm: value('rejections-pm', 20_000),
  scaleRecords: value('scale-records', 1_000_000),
  scaleSmall: value('scale-small', 1_000),
  /** Enrollments per scale run (at 1k and at 1M records). */
  scaleK: value('scale-k', 15_000),
  fetch: value('fetch', 10_000),
  /** EKA v2 (issue 12): enrollees for the v2 run at C=256 (streams), the first `v2warm` of them a warm-up at C=16. */
  v2: value('v2', 9_000),
  v2warm: value('v2warm', 1_000),
  /** Issue 23: enrollees for the `service start --workers 1` row at C=256 (streams), the first `warm` of them a warm-up; 0 skips it. */
  workers1: value('workers1', 9_000),
  startupRuns: value('startup-runs', 10),
  threads: value('threads', Math.max(1, cpus().length)),
  /** Enrollments per PostgreSQL run (1 replica, 2 replicas), after a warm-up of `warm`; 0 skips them. */
  pgN: value('pg-n', 8_000),
  keep: flag('keep'),
  profile: flag('profile'),
  /** The token row (issue 23 item 5): certificates at C=1, 16, 64, after a warm-up; `--token` runs it alone. */
  /** Issue 19: the portal part; `--portal` runs it alone. MB per throughput run (BENCH_PORTAL_MB scales it down), round trips, idle streams. */
  portal: { mb: value('portal-mb', Number(process.env.BENCH_PORTAL_MB ?? 1024)), rtt: value('portal-rtt', 5000), idle: value('portal-idle', 1000) },
  /** Issue 20: enrollments per run (C=256 streams), runs of each kind (interleaved), warm-up per service; `--attributes` runs it alone. */
  attributes: { n: value('attributes-n', 3_000), rounds: value('attributes-rounds', 3), warm: value('attributes-warm', 500), concurrency: 256, threads: value('threads', Math.max(1, cpus().length)) },
  /** `--token-workers N` runs the token row's service with `--workers N` (0: the in-thread path); default: the service's default. */
  token: {
    warm: value('token-warm', 300),
    c1: value('token-c1', 300),
    c16: value('token-c16', 1500),
    c64: value('token-c64', 1500),
    ...(argv.includes('--token-workers') ? { serviceArgs: ['--workers', String(value('token-workers', 0))] } : {}),
  },
};

const t00 = performance.now();
const say = (s: string) => process.stderr.write(`[bench ${((performance.now() - t00) / 1000).toFixed(1)}s] ${s}\n`);
const r2 = (x: number) => Math.round(x * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

function gitRevision(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return dirty ? `${head} + uncommitted` : head;
  } catch {
    return 'unknown';
  }
}

// ---- one measured phase against a running service

interface Phase extends Omit<LoadResult, 'responses'> {
  service_cpu_s: number;
  cores_used: number;
  service_cpu_us_per_request: number;
  service_rss_peak_mb: number;
  service_rss_mb: number;
  /** CPU the load generator (this process) used, in cores: it shares the machine. */
  loadgen_cores: number;
  service_thread_us_per_request: Record<string, number>;
  ratio?: number;
}

async function phase(
  svc: RunningService,
  requests: Buffer,
  concurrency: number,
  bound: BoundResult,
  keep = false,
  mode: ConnectionMode = 'stream',
): Promise<{ phase: Phase; responses?: (Buffer | undefined)[] }> {
  const cpu0 = cpuSeconds(svc.pid);
  const threads0 = threadCpu(svc.pid);
  const own0 = process.cpuUsage();
  const res = await runLoad({ host: '127.0.0.1', port: svc.port, requests, concurrency, keep, mode });
  const cpu = cpuSeconds(svc.pid) - cpu0;
  const own = process.cpuUsage(own0);
  const threads1 = threadCpu(svc.pid);
  // Per thread, in µs per request: the main thread, the commit thread, and the rest.
  const perThread: Record<string, number> = {};
  for (const [k, v] of Object.entries(threads1)) {
    const d = v - (threads0[k] ?? 0);
    if (d > 0) perThread[k] = Math.round((d / res.count) * 1e6);
  }
  const { responses, ...rest } = res;
  const cores = cpu / res.wall_s;
  const p: Phase = {
    ...rest,
    service_cpu_s: r2(cpu),
    cores_used: r3(cores),
    service_cpu_us_per_request: Math.round((cpu / res.count) * 1e6),
    service_rss_peak_mb: r2(statusKb(svc.pid, 'VmHWM') / 1024),
    service_rss_mb: r2(statusKb(svc.pid, 'VmRSS') / 1024),
    loadgen_cores: r3((own.user + own.system) / 1e6 / res.wall_s),
    service_thread_us_per_request: perThread,
  };
  if (rest.statuses['0'] !== undefined) p.ratio = r3(res.per_s / (bound.bound_per_core_per_s * cores));
  return { phase: p, ...(responses ? { responses } : {}) };
}

/** Every accepted response must open under its enrollee's k_s2e and name that enrollee. */
function verifyAcceptances(set: Enrollees, responses: (Buffer | undefined)[]): { accepted: number; verified: number } {
  let accepted = 0;
  let verified = 0;
  for (let i = 0; i < set.count; i++) {
    const r = responses[i];
    if (!r || r[0] !== 0) continue;
    accepted++;
    const id = set.id(i);
    const plain = new SessionCipher(set.kS2e(i)).open(r.subarray(1), concat(ACCEPT_AAD, id));
    if (Buffer.compare(Buffer.from(decodeAcceptance(plain).enrolleeId), Buffer.from(id)) === 0) verified++;
  }
  return { accepted, verified };
}

function countEnrolled(home: string): number {
  const db = new Database(storePath(home), { readonly: true });
  try {
    return Number(db.prepare(`SELECT count(*) FROM enrollees WHERE state = 'enrolled'`).pluck().get());
  } finally {
    db.close();
  }
}

/** Every service started, so that a failed run still stops them all. */
const running = new Set<RunningService>();

async function serviceFor(home: string, name: string, root: string, more: string[] = []): Promise<RunningService> {
  const port = await freePort();
  const nodeArgs = OPTS.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(root, `prof-${name}`)}`] : [];
  // The per-IP and per-enroller rate limits are off: the load comes from one address, and
  // what is measured is the service's capacity, as if the load came from many peers.
  // Token enrollment's HTTPS listener gets a free port of its own (it is not measured here).
  // The failed-decryption bucket per IP is off too: with the enrollment pool, a source's
  // messages in flight at once are capped at the tokens its bucket holds (20 by default,
  // docs/threat-model.md §5.4), which one address sending for 256 devices would meet.
  const extraArgs = ['--rate-per-ip', 'off', '--rate-per-enroller', 'off', '--fail-rate-per-ip', 'off', '--https-listen', `127.0.0.1:${await freePort()}`, ...more];
  const svc = await startService({ home, port, logPath: join(root, `${name}.log`), nodeArgs, extraArgs });
  running.add(svc);
  const stop = svc.stop.bind(svc);
  svc.stop = async () => {
    running.delete(svc);
    return stop();
  };
  return svc;
}

/**
 * The PostgreSQL rows: a throwaway cluster, one database, one copy of the base home on it;
 * a warm-up and a measured C=256 stream run with one replica, then with two (a fresh set of
 * enrollees each, so each run starts from pending approvals as the SQLite one does).
 */
async function pgRuns(base: string, pub: Awaited<ReturnType<typeof servicePublic>>, now: number, sqliteC256: Phase | undefined) {
  const { startCluster } = (await import(new URL('../../scripts/pg-cluster.mjs', import.meta.url).href)) as {
    startCluster(): Promise<{ url: string; dir: string; stop(): void }>;
  };
  say('postgres: starting a throwaway cluster (fsync=on, synchronous_commit=on)');
  const cluster = await startCluster();
  try {
    const url = cluster.url.replace(/\/postgres$/, '/bench');
    const pg = (await import('pg')).default;
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE bench');
    await admin.end();
    const home = join(root, 'pg');
    cpSync(base, home, { recursive: true });
    const n = OPTS.pgN;
    const w = Math.min(OPTS.warm, n);
    say(`postgres: precomputing and loading ${2 * (n + w)} enrollees`);
    const sets = await precompute(pub, 2 * (n + w), OPTS.threads, now + 7 * 86400);
    await loadEnrolleesPg(base, home, url, [sets], now, 86400);
    const warmOf = (k: number) => sets.slice(k * (n + w), k * (n + w) + w);
    const runOf = (k: number) => sets.slice(k * (n + w) + w, (k + 1) * (n + w));
    const rows: Record<string, unknown> = {};

    // One replica.
    const one = await serviceFor(home, 'pg-1', root, ['--store', url]);
    try {
      const ws = warmOf(0);
      if (w > 0) await runLoad({ host: '127.0.0.1', port: one.port, requests: buildRequests(w, (i) => ws.message(i)), concurrency: 16 });
      const set = runOf(0);
      say(`postgres, 1 replica: ${set.count} at C=256`);
      const pg0 = pgServerCpuSeconds(join(cluster.dir, 'data'));
      const { phase: p, responses } = await phase(one, buildRequests(set.count, (i) => set.message(i)), 256, out.bound as BoundResult, true);
      const pgCpu = pgServerCpuSeconds(join(cluster.dir, 'data')) - pg0;
      const v = verifyAcceptances(set, responses!);
      // The PostgreSQL server's CPU (same machine, same cores): what the service's figure leaves out.
      rows.replicas_1 = { ...p, verified: v.verified, pg_server_cores: r3(pgCpu / p.wall_s), pg_server_cpu_us_per_request: Math.round((pgCpu / p.count) * 1e6) };
      say(`  ${p.per_s}/s p50 ${p.latency_ms.p50} ms p99 ${p.latency_ms.p99} ms, service ${p.cores_used} cores, accepted ${v.accepted}`);
    } finally {
      await one.stop();
    }

    // Two replicas, the load split evenly: 128 streams to each, at once.
    const a = await serviceFor(home, 'pg-2a', root, ['--store', url]);
    const b = await serviceFor(home, 'pg-2b', root, ['--store', url]);
    try {
      const ws = warmOf(1);
      const half = Math.floor(w / 2);
      if (w > 0) {
        await Promise.all([
          runLoad({ host: '127.0.0.1', port: a.port, requests: buildRequests(half, (i) => ws.message(i)), concurrency: 8 }),
          runLoad({ host: '127.0.0.1', port: b.port, requests: buildRequests(w - half, (i) => ws.message(half + i)), concurrency: 8 }),
        ]);
      }
      const set = runOf(1);
      const h = Math.floor(set.count / 2);
      const sa = set.slice(0, h);
      const sb = set.slice(h, set.count);
      say(`postgres, 2 replicas: ${set.count} at C=256 (128 streams to each)`);
      const cpu0 = cpuSeconds(a.pid) + cpuSeconds(b.pid);
      const pg0 = pgServerCpuSeconds(join(cluster.dir, 'data'));
      const t0 = performance.now();
      const [ra, rb] = await Promise.all([
        runLoad({ host: '127.0.0.1', port: a.port, requests: buildRequests(sa.count, (i) => sa.message(i)), concurrency: 128, keep: true }),
        runLoad({ host: '127.0.0.1', port: b.port, requests: buildRequests(sb.count, (i) => sb.message(i)), concurrency: 128, keep: true }),
      ]);
      const wall = (performance.now() - t0) / 1000;
      const cpu = cpuSeconds(a.pid) + cpuSeconds(b.pid) - cpu0;
      const pgCpu = pgServerCpuSeconds(join(cluster.dir, 'data')) - pg0;
      const va = verifyAcceptances(sa, ra.responses!);
      const vb = verifyAcceptances(sb, rb.responses!);
      const statuses: Record<string, number> = {};
      for (const r of [ra, rb]) for (const [k, c] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + c;
      rows.replicas_2 = {
        count: set.count,
        concurrency: 256,
        wall_s: r2(wall),
        per_s: Math.round(set.count / wall),
        per_replica_per_s: [ra.per_s, rb.per_s],
        latency_ms_p99: [ra.latency_ms.p99, rb.latency_ms.p99],
        statuses,
        service_cpu_s: r2(cpu),
        cores_used: r3(cpu / wall),
        service_cpu_us_per_request: Math.round((cpu / set.count) * 1e6),
        pg_server_cores: r3(pgCpu / wall),
        pg_server_cpu_us_per_request: Math.round((pgCpu / set.count) * 1e6),
        verified: va.verified + vb.verified,
      };
      say(`  ${Math.round(set.count / wall)}/s (${ra.per_s} + ${rb.per_s}), services ${r3(cpu / wall)} cores, verified ${va.verified + vb.verified}`);
    } finally {
      await a.stop();
      await b.stop();
    }
    const p1 = (rows.replicas_1 as Phase).per_s;
    const p2 = (rows.replicas_2 as { per_s: number }).per_s;
    return {
      ...rows,
      sqlite_c256_per_s: sqliteC256?.per_s ?? null,
      pg_ratio: sqliteC256 ? r3(p1 / sqliteC256.per_s) : null,
      replica_scaling: r3(p2 / p1),
      cluster: 'local throwaway PostgreSQL (scripts/pg-cluster.mjs), fsync=on, synchronous_commit=on, same machine',
    };
  } finally {
    cluster.stop();
  }
}

// ---- one part alone (`npm run bench -- --token`, `--portal`, `--policy`, `--attributes`)

/** The header every JSON output carries: what ran, where, and how busy the machine was (loadavg_start: the 1-minute load average as the run started). */
function runHeader(): Record<string, unknown> {
  return { revision: gitRevision(), date: new Date().toISOString(), node: process.version, cpus: cpus().length, cpu_model: cpus()[0]?.model, loadavg_start: loadavg()[0] };
}

/**
 * Runs one part in a work dir of its own, prints its JSON (the header, the part under `key`,
 * its targets) and exits; the services it started are stopped whatever happens.
 */
async function runAlone<T>(key: string, part: (root: string, track: (s: RunningService) => void) => Promise<T>, targets: (r: T) => unknown): Promise<never> {
  const root = mkdtempSync(join(tmpdir(), `ockam-bench-${key}-`));
  const svcs: RunningService[] = [];
  try {
    const r = await part(root, (s) => svcs.push(s));
    process.stdout.write(`${JSON.stringify({ ...runHeader(), [key]: r, targets: targets(r), loadavg_end: loadavg()[0] }, null, 2)}\n`);
  } catch (err) {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  } finally {
    for (const s of svcs) await s.stop();
    if (!OPTS.keep) rmSync(root, { recursive: true, force: true });
  }
  process.exit();
}

if (flag('token')) {
  await runAlone('token', (root, track) => runTokenBench(root, OPTS.token, say, track), (token) => ({ token_cpu_us: { value: token.token_cpu_us, target: '<= 1500', met: token.token_cpu_us <= 1500 } }));
}
if (flag('portal')) {
  await runAlone('portal', (root, track) => runPortalBench(root, OPTS.portal, say, track), (portal) => portal.targets);
}
const attributesTarget = (a: { attributes_throughput_ratio: number }) => ({
  value: a.attributes_throughput_ratio,
  target: '>= 0.95 (enrollments/s with 4 attributes / without, medians of interleaved runs)',
  met: a.attributes_throughput_ratio >= 0.95,
});
if (flag('attributes')) {
  await runAlone('attributes', (root, track) => runAttributesBench(root, OPTS.attributes, say, track), (a) => ({ attributes_throughput_ratio: attributesTarget(a) }));
}
if (flag('policy')) {
  await runAlone('policy', async () => runPolicyBench(), (policy) => ({ policy_eval_us: { value: policy.eval_us_median, target: '<= 20', met: policy.eval_us_median <= 20 } }));
}

// ---- the run

const root = mkdtempSync(join(tmpdir(), 'ockam-bench-'));
say(`work dir ${root}${OPTS.keep ? ' (kept)' : ''}`);
const out: Record<string, unknown> = { ...runHeader(), options: OPTS };

try {
  // 1. The crypto bound, in this thread, before anything else loads the machine.
  say('crypto bound: accept() with pre-imported service keys');
  // Measured again after the C=256 run; the faster of the two is used (the one least
  // disturbed by anything else on the machine), which makes every ratio conservative.
  let bound = measureBound();
  out.bound = bound;
  // Crypto the service now does per enrollment beyond the issue's bound (not in the ratio).
  const extras = await measureExtras();
  out.extra_crypto_us = extras;
  if (extras.credential_sign_us !== undefined) say(`  + credential signature ${extras.credential_sign_us} µs per enrollment (outside the bound)`);
  say(`  ${bound.accept_us} µs per accept() → ${bound.bound_per_core_per_s}/s per core`);
  say('crypto bound, EKA v2: acceptV2() (adds an ML-KEM-768 decapsulation)');
  let boundV2 = measureBound({ eka: 2 });
  say(`  ${boundV2.accept_us} µs per acceptV2() → ${boundV2.bound_per_core_per_s}/s per core`);

  // 2. CLI start-up.
  const enrolleeHome = join(root, 'enrollee');
  cli(['enrollee', 'init', '--home', enrolleeHome, '--name', 'bench device']);
  say('CLI start-up');
  out.startup = measureStartup(enrolleeHome, OPTS.startupRuns);

  // 3. The service homes: one `service init`, copied, so every copy shares IK_A and SPK_A
  //    and one set of precomputed enrollees can be loaded into several stores.
  const base = join(root, 'base');
  cli(['service', 'init', '--home', base, '--address', 'tcp://127.0.0.1:4100']);
  const pub = await servicePublic(base);
  const now = Math.floor(Date.now() / 1000);
  const home = join(root, 'main');
  cpSync(base, home, { recursive: true });

  say(`precomputing ${OPTS.n} enrollees in ${OPTS.threads} threads`);
  let t = performance.now();
  const all = await precompute(pub, OPTS.n, OPTS.threads, now + 7 * 86400);
  say(`  ${((performance.now() - t) / 1000).toFixed(1)}s`);
  say(`precomputing ${OPTS.v2} EKA v2 enrollees in ${OPTS.threads} threads`);
  t = performance.now();
  const allV2 = await precompute(pub, OPTS.v2, OPTS.threads, now + 7 * 86400, 2);
  say(`  ${((performance.now() - t) / 1000).toFixed(1)}s`);
  t = performance.now();
  await loadEnrollees(home, [all, allV2], now, 86400);
  say(`  loaded ${OPTS.n} + ${OPTS.v2} (v2) approved, pending enrollees in ${((performance.now() - t) / 1000).toFixed(1)}s`);

  // 4. Throughput at C = 1, 16, 256.
  const svc = await serviceFor(home, 'main', root);
  say(`service pid ${svc.pid} on 127.0.0.1:${svc.port}`);
  const w = OPTS.warm;
  let warmAccepted = 0;
  if (w > 0) {
    say(`warm-up: ${w} enrollments at C=16 (not measured)`);
    const ws = all.slice(0, w);
    const wr = await runLoad({ host: '127.0.0.1', port: svc.port, requests: buildRequests(w, (i) => ws.message(i)), concurrency: 16 });
    warmAccepted = wr.statuses['0'] ?? 0;
  }
  // C = 1, 16 and 256 on streams (KIND_ENROLL_STREAM, one connection per client), then
  // C = 256 again with one connection per message, as devices enrolling alone do.
  const cuts = [w, w + OPTS.c1, w + OPTS.c1 + OPTS.c16, OPTS.n - OPTS.c256pm, OPTS.n];
  const throughput: Record<string, Phase & { verified: number }> = {};
  const runs: [string, number, ConnectionMode][] = [
    ['c1', 1, 'stream'],
    ['c16', 16, 'stream'],
    ['c256', 256, 'stream'],
    ['c256_per_message', 256, 'per-message'],
  ];
  for (let k = 0; k < runs.length; k++) {
    const [name, c, mode] = runs[k]!;
    const set = all.slice(cuts[k]!, cuts[k + 1]!);
    if (set.count <= 0) continue;
    say(`enrollments: ${set.count} at C=${c} (${mode})`);
    const { phase: p, responses } = await phase(svc, buildRequests(set.count, (i) => set.message(i)), c, bound, true, mode);
    const v = verifyAcceptances(set, responses!);
    throughput[name] = { ...p, verified: v.verified };
    say(`  ${p.per_s}/s p50 ${p.latency_ms.p50} ms p99 ${p.latency_ms.p99} ms, service ${p.cores_used} cores, ratio ${p.ratio}, accepted ${v.accepted}, verified ${v.verified}`);
  }
  out.throughput = throughput;

  // 4b. EKA v2 beside v1: the same service, its own enrollees (v2 bundles, 1265-byte
  //     messages), at C=256 on streams after a warm-up at C=16 (the KEM's JIT).
  const v2warm = Math.min(OPTS.v2warm, Math.max(0, OPTS.v2 - 1));
  if (v2warm > 0) {
    say(`EKA v2 warm-up: ${v2warm} enrollments at C=16 (not measured)`);
    const ws = allV2.slice(0, v2warm);
    const wr = await runLoad({ host: '127.0.0.1', port: svc.port, requests: buildRequests(v2warm, (i) => ws.message(i)), concurrency: 16 });
    warmAccepted += wr.statuses['0'] ?? 0;
  }
  const setV2 = allV2.slice(v2warm, OPTS.v2);
  say(`EKA v2 enrollments: ${setV2.count} at C=256 (stream)`);
  const v2run = await phase(svc, buildRequests(setV2.count, (i) => setV2.message(i)), 256, boundV2, true, 'stream');
  const v2v = verifyAcceptances(setV2, v2run.responses!);
  const c256v2 = { ...v2run.phase, verified: v2v.verified, eka: 2 };
  say(`  ${c256v2.per_s}/s p50 ${c256v2.latency_ms.p50} ms p99 ${c256v2.latency_ms.p99} ms, service ${c256v2.cores_used} cores, ratio ${c256v2.ratio}, accepted ${v2v.accepted}, verified ${v2v.verified}`);

  // 4c. One pool worker (issue 23): a second service on a copy of the base home, its own
  //     enrollees, `--workers 1`, against which the default (one worker per core) is compared.
  let workers1: (Phase & { verified: number; workers: number }) | undefined;
  if (OPTS.workers1 > OPTS.warm) {
    const h1 = join(root, 'workers-1');
    cpSync(base, h1, { recursive: true });
    say(`--workers 1: precomputing and loading ${OPTS.workers1} enrollees`);
    const set1 = await precompute(pub, OPTS.workers1, OPTS.threads, now + 7 * 86400);
    await loadEnrollees(h1, [set1], now, 86400);
    const s1 = await serviceFor(h1, 'workers-1', root, ['--workers', '1']);
    const ws = set1.slice(0, OPTS.warm);
    await runLoad({ host: '127.0.0.1', port: s1.port, requests: buildRequests(ws.count, (i) => ws.message(i)), concurrency: 16 });
    const m1 = set1.slice(OPTS.warm, OPTS.workers1);
    say(`--workers 1: ${m1.count} enrollments at C=256 (stream)`);
    const r1 = await phase(s1, buildRequests(m1.count, (i) => m1.message(i)), 256, bound, true, 'stream');
    const v1 = verifyAcceptances(m1, r1.responses!);
    await s1.stop();
    workers1 = { ...r1.phase, verified: v1.verified, workers: 1 };
    say(`  ${workers1.per_s}/s, service ${workers1.cores_used} cores, ${workers1.service_cpu_us_per_request} µs each; default (${defaultWorkers()} workers) ${throughput.c256?.per_s}/s`);
    if (!OPTS.keep) rmSync(h1, { recursive: true, force: true });
  }

  say('crypto bound, again (v1 and v2)');
  const again = measureBound();
  const againV2 = measureBound({ eka: 2 });
  out.bound_measurements_us = [bound.accept_us, again.accept_us];
  out.bound_v2_measurements_us = [boundV2.accept_us, againV2.accept_us];
  if (again.accept_us < bound.accept_us) {
    bound = again;
    for (const p of Object.values(throughput)) {
      if (p.ratio !== undefined) p.ratio = r3(p.per_s / (bound.bound_per_core_per_s * p.cores_used));
    }
  }
  if (againV2.accept_us < boundV2.accept_us) boundV2 = againV2;
  if (c256v2.ratio !== undefined) c256v2.ratio = r3(c256v2.per_s / (boundV2.bound_per_core_per_s * c256v2.cores_used));
  out.bound = bound;
  out.bound_v2 = boundV2;
  say(`  ${again.accept_us} µs; using ${bound.accept_us} µs → ${bound.bound_per_core_per_s}/s per core; v2 ${againV2.accept_us} µs, using ${boundV2.accept_us} µs`);

  if (workers1 !== undefined) {
    if (workers1.ratio !== undefined) workers1.ratio = r3(workers1.per_s / (bound.bound_per_core_per_s * workers1.cores_used));
    out.workers_1 = workers1;
  }
  // Issue 23: what the pool used, and the whole service's CPU per enrollment (every thread, /proc).
  out.cores = defaultWorkers();
  out.cpu_us_per_enrollment = throughput.c256?.service_cpu_us_per_request ?? null;
  out.core_scaling = workers1 && throughput.c256 ? r3(throughput.c256.per_s / workers1.per_s) : null;

  // 4b. PostgreSQL: 1 replica, then 2 replicas on one database, C=256 streams.
  if (OPTS.pgN > 0) {
    out.postgres = await pgRuns(base, pub, now, throughput.c256);
  }

  // 5. Rejections: random 176-byte messages, unknown ids, at C=256; on streams, compared
  //    with the C=256 stream run, and one connection per message, compared with its own.
  const rejection = async (count: number, mode: ConnectionMode, valid: Phase) => {
    say(`rejections: ${count} random messages at C=256 (${mode})`);
    const garbage = randomBytes(count * 176);
    const rej = (await phase(svc, buildRequests(count, (i) => garbage.subarray(i * 176, (i + 1) * 176)), 256, bound, false, mode)).phase;
    say(`  ${rej.per_s}/s (${r2(rej.per_s / valid.per_s)}× enrollments), statuses ${JSON.stringify(rej.statuses)}`);
    return {
      ...rej,
      x_enrollment_rate: r2(rej.per_s / valid.per_s),
      per_service_core_s: Math.round(rej.per_s / rej.cores_used),
      x_enrollment_rate_per_core: r2(rej.per_s / rej.cores_used / (valid.per_s / valid.cores_used)),
    };
  };
  if (throughput.c256 === undefined) throw new Error('no C=256 stream run: --n must leave enrollees for it after --warm, --c1, --c16 and --c256pm');
  out.rejections = await rejection(OPTS.rejections, 'stream', throughput.c256);
  if (OPTS.rejectionsPm > 0 && throughput.c256_per_message) {
    out.rejections_per_message = await rejection(OPTS.rejectionsPm, 'per-message', throughput.c256_per_message);
  }

  // 6. Bundle fetch through the CLI against the running service.
  const enrollerHome = join(root, 'enroller');
  const enrollerKey = cli(['enroller', 'init', '--home', enrollerHome, '--quiet']).trim();
  cli(['service', 'enroller', 'allow', enrollerKey, '--home', home, '--name', 'bench fetch', '--quiet']);
  const fetchTimed = (eka: 'v1' | 'v2') => {
    say(`enroller bundle fetch --count ${OPTS.fetch} --eka ${eka}`);
    const cpu0 = cpuSeconds(svc.pid);
    const t0 = performance.now();
    cli(['enroller', 'bundle', 'fetch', '--home', enrollerHome, '--service', `tcp://127.0.0.1:${svc.port}`, '--count', String(OPTS.fetch), '--eka', eka, '--service-key', Buffer.from(pub.ikA).toString('hex'), '--quiet']);
    const wall = (performance.now() - t0) / 1000;
    say(`  ${wall.toFixed(2)}s`);
    return { wall, cpu: cpuSeconds(svc.pid) - cpu0 };
  };
  const { wall: fetchWall, cpu: fetchCpu } = fetchTimed('v1');
  const fetchV2 = fetchTimed('v2');
  const peak = statusKb(svc.pid, 'VmHWM') / 1024;
  await svc.stop();
  const enrolled = countEnrolled(home);
  const accepted = warmAccepted + Object.values(throughput).reduce((a, p) => a + (p.statuses['0'] ?? 0), 0) + (c256v2.statuses['0'] ?? 0);
  out.durability = { accepted_responses: accepted, enrolled_in_store_after_stop: enrolled, match: accepted === enrolled };
  out.service_rss_peak_mb = r2(peak);

  // 7. Bundle generation in this thread, as serveBundles makes them.
  const bsvc = await ServiceHome.open(base);
  const spk = (await bsvc.store.currentSignedPrekey())!;
  const genN = 400;
  const tg = performance.now();
  // IK_A prepared once per service, as serveBundles does (bundleSignerFor); counted here.
  const signer = bundleSigner(bsvc.ikA.privateKey);
  for (let i = 0; i < genN; i++) {
    const opk = generateX25519();
    const bundleId = systemRandom(16);
    const b = signBundle(
      { bundleId, ikA: bsvc.ikA.publicKey, spkA: spk.publicKey, spkSig: spk.signature, opkA: opk.publicKey, expiresAt: now + 86400, addr: bsvc.settings.address },
      signer,
    );
    bsvc.sealer.seal(opk.privateKey, 'opk', bundleId);
    encodeBundle(b);
    opk.wipe();
  }
  const genS = (performance.now() - tg) / 1000;
  await bsvc.close();
  out.bundles = {
    generated_per_s_one_thread: Math.round(genN / genS),
    fetch_count: OPTS.fetch,
    fetch_wall_s: r2(fetchWall),
    fetch_per_s: Math.round(OPTS.fetch / fetchWall),
    fetch_service_cpu_s: r2(fetchCpu),
  };
  say(`  bundles: ${Math.round(genN / genS)}/s generated in one thread`);

  // EKA v2 beside v1 (issue 12): sizes, the bound, C=256, bundle fetch.
  // Sizes do not depend on the signature's value: a zero one stands in.
  const sizeOf = (kemHash?: Uint8Array) => {
    const fields = { bundleId: new Uint8Array(16), ikA: pub.ikA, spkA: pub.spkA, spkSig: pub.spkSig, opkA: new Uint8Array(32), expiresAt: now, addr: pub.addr, signature: new Uint8Array(64) };
    const b: Bundle = kemHash ? { version: 2, ...fields, kemHash } : { version: 1, ...fields };
    return { bytes: encodeBundle(b).length, text_chars: bundleToText(b).length };
  };
  const c256v1 = throughput.c256!;
  out.eka_v2 = {
    addr: pub.addr,
    message_bytes: { v1: all.message(0).length, v2: allV2.message(0).length },
    bundle_bytes: { v1: sizeOf().bytes, v2: sizeOf(pub.kemHash).bytes },
    bundle_text_chars: { v1: sizeOf().text_chars, v2: sizeOf(pub.kemHash).text_chars },
    bound_us: { v1: bound.accept_us, v2: boundV2.accept_us, v2_minus_v1: r2(boundV2.accept_us - bound.accept_us) },
    bound_per_core_per_s: { v1: bound.bound_per_core_per_s, v2: boundV2.bound_per_core_per_s },
    c256: { v1: c256v1, v2: c256v2 },
    c256_per_s: { v1: c256v1.per_s, v2: c256v2.per_s, v2_over_v1: r3(c256v2.per_s / c256v1.per_s) },
    ratio_c256: { v1: c256v1.ratio ?? null, v2: c256v2.ratio ?? null },
    service_cpu_us_per_request: { v1: c256v1.service_cpu_us_per_request, v2: c256v2.service_cpu_us_per_request },
    fetch: { count: OPTS.fetch, v1_wall_s: r2(fetchWall), v2_wall_s: r2(fetchV2.wall), v1_service_cpu_s: r2(fetchCpu), v2_service_cpu_s: r2(fetchV2.cpu) },
  };

  // 8. Scale: the same C=256 run at 1k and at 1M (pending + enrolled) background records.
  if (OPTS.scale) {
    const k = OPTS.scaleK;
    say(`scale: precomputing ${k} enrollees`);
    const set = await precompute(pub, k, OPTS.threads, now + 7 * 86400);
    // The first fifth warms each fresh service up (JIT, caches) and is not measured.
    const warm = Math.floor(k / 5);
    const warmSet = set.slice(0, warm);
    const runSet = set.slice(warm, k);
    const warmRequests = buildRequests(warm, (i) => warmSet.message(i));
    const requests = buildRequests(runSet.count, (i) => runSet.message(i));
    const runs: Record<string, unknown> = {};
    for (const [name, records] of [['small', OPTS.scaleSmall], ['large', OPTS.scaleRecords]] as const) {
      const h = join(root, `scale-${name}`);
      cpSync(base, h, { recursive: true });
      await loadEnrollees(h, [set], now, 86400);
      say(`scale ${name}: bulk loading ${records} pending + ${records} enrolled`);
      const bl = bulkLoad(h, {
        pending: records,
        enrolled: records,
        now,
        progress: (d, tot) => {
          if (d % 200_000 === 0 || d === tot) say(`  ${d}/${tot}`);
        },
      });
      const size = storeBytes(storePath(h));
      const ts = performance.now();
      const s = await serviceFor(h, `scale-${name}`, root);
      const startS = (performance.now() - ts) / 1000;
      const rssIdle = statusKb(s.pid, 'VmRSS') / 1024;
      await runLoad({ host: '127.0.0.1', port: s.port, requests: warmRequests, concurrency: 256 });
      const { phase: p, responses } = await phase(s, requests, 256, bound, true);
      const v = verifyAcceptances(runSet, responses!);
      await s.stop();
      runs[name] = {
        records_pending: records,
        records_enrolled: records,
        bulk_load_s: r2(bl.seconds),
        store_bytes: size.total,
        store_mb: r2(size.total / 2 ** 20),
        service_start_s: r2(startS),
        service_rss_idle_mb: r2(rssIdle),
        ...p,
        verified: v.verified,
        store_mb_after: r2(storeBytes(storePath(h)).total / 2 ** 20),
      };
      say(`  ${name}: ${p.per_s}/s, p99 ${p.latency_ms.p99} ms, RSS peak ${p.service_rss_peak_mb} MB, store ${r2(size.total / 2 ** 20)} MB`);
      if (!OPTS.keep) rmSync(h, { recursive: true, force: true });
    }
    const small = runs.small as Phase;
    const large = runs.large as Phase;
    out.scale = { ...runs, scale_ratio: r3(large.per_s / small.per_s) };
  }

  // 8b. Token enrollment over HTTPS (issue 23 item 5).
  say('token enrollment: JWT → CSR → certificate over HTTPS');
  const token = await runTokenBench(root, OPTS.token, say, (s) => running.add(s));
  out.token = token;

  // 8c. Portals (issue 19): direct TCP, ssh -L, the service-outlet and the device-to-device portal.
  say('portals: direct TCP vs ssh -L vs the two portals');
  const portal = await runPortalBench(root, OPTS.portal, say, (s) => running.add(s));
  out.portal = portal;
  // 8d. Policy evaluation per stream open (issue #20): in this process, no service involved.
  say('policy: a compiled CEL expression of three comparisons, per evaluation');
  const policy = runPolicyBench();
  out.policy = policy;
  // 8e. Enrollment with attributes vs without (issue #20): two services, interleaved runs.
  say('attributes: enrollment throughput with 4 attributes vs none (interleaved runs)');
  const attributes = await runAttributesBench(root, OPTS.attributes, say, (s) => running.add(s));
  out.attributes = attributes;

  // 9. Targets.
  const c256 = throughput.c256!;
  const st = out.startup as { version_x: number };
  const targets: Record<string, { value: number | null; target: string; met: boolean | null }> = {
    ratio_c256: { value: c256.ratio ?? null, target: '>= 0.6', met: (c256.ratio ?? 0) >= 0.6 },
    durable_before_ack: { value: enrolled, target: `= ${accepted} accepted`, met: accepted === enrolled },
    rejections_x: { value: (out.rejections as { x_enrollment_rate: number }).x_enrollment_rate, target: '>= 10', met: (out.rejections as { x_enrollment_rate: number }).x_enrollment_rate >= 10 },
    version_x: { value: st.version_x, target: '<= 2', met: st.version_x <= 2 },
    v2_over_v1_c256: { value: r3(c256v2.per_s / c256.per_s), target: '>= 0.6 (EKA v2 / v1)', met: c256v2.per_s / c256.per_s >= 0.6 },
  };
  const scaling = out.core_scaling as number | null;
  targets.core_scaling = scaling !== null
    ? { value: scaling, target: `>= 1.6 (default ${out.cores} workers / --workers 1)`, met: scaling >= 1.6 }
    : { value: null, target: '>= 1.6 (run with --workers1 > --warm)', met: null };
  const cpuUs = out.cpu_us_per_enrollment as number | null;
  targets.cpu_us_per_enrollment = { value: cpuUs, target: `<= ${r2(2 * bound.accept_us)} (2 x the bound's µs)`, met: cpuUs === null ? null : cpuUs <= 2 * bound.accept_us };
  if (out.scale) {
    const sc = out.scale as { scale_ratio: number; large: Phase };
    targets.scale_ratio = { value: sc.scale_ratio, target: '>= 0.9', met: sc.scale_ratio >= 0.9 };
    targets.rss_1m_mb = { value: sc.large.service_rss_peak_mb, target: '<= 300', met: sc.large.service_rss_peak_mb <= 300 };
  } else {
    targets.scale_ratio = { value: null, target: '>= 0.9 (run with --scale)', met: null };
    targets.rss_1m_mb = { value: null, target: '<= 300 (run with --scale)', met: null };
  }
  const pgOut = out.postgres as { pg_ratio: number; replica_scaling: number } | undefined;
  targets.pg_ratio = pgOut
    ? { value: pgOut.pg_ratio, target: '>= 0.7', met: pgOut.pg_ratio >= 0.7 }
    : { value: null, target: '>= 0.7 (run with --pg-n > 0)', met: null };
  targets.replica_scaling = pgOut
    ? { value: pgOut.replica_scaling, target: '>= 1.3', met: pgOut.replica_scaling >= 1.3 }
    : { value: null, target: '>= 1.3 (run with --pg-n > 0)', met: null };
  targets.policy_eval_us = { value: policy.eval_us_median, target: '<= 20 (µs per evaluation of a compiled three-comparison policy, subject from a record)', met: policy.eval_us_median <= 20 };
  targets.attributes_throughput_ratio = attributesTarget(attributes);
  targets.token_cpu_us = { value: token.token_cpu_us, target: '<= 1500 (µs of service CPU per certificate, C=16)', met: token.token_cpu_us <= 1500 };
  Object.assign(targets, portal.targets as typeof targets);
  out.targets = targets;
  out.bench_wall_s = r2((performance.now() - t00) / 1000);
  out.loadavg_end = loadavg()[0];

  if (OPTS.profile) {
    const profs: string[] = [];
    for (const d of readdirSync(root)) if (d.startsWith('prof-')) for (const f of readdirSync(join(root, d))) profs.push(join(root, d, f));
    out.profiles = profs;
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  printTable(out);
  mkdirSync(join(root, 'out'), { recursive: true });
  writeFileSync(join(root, 'out', 'bench.json'), JSON.stringify(out, null, 2));
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  for (const f of readdirSync(root).filter((f) => f.endsWith('.log'))) {
    process.stderr.write(`--- ${f} (tail)\n${readFileSync(join(root, f), 'utf8').slice(-3000)}\n`);
  }
  process.exitCode = 1;
} finally {
  for (const svc of running) await svc.stop();
  if (!OPTS.keep) rmSync(root, { recursive: true, force: true });
}
