/**
 * The attributes row (issue #20 "Tests and figures"): enrollment throughput does not fall by
 * more than 5 % with attributes present. Two `service start` on copies of one home (the same
 * IK_A and SPK_A), each with its own pending enrollees: one set approved without attributes,
 * one with four (role, site, floor, line: what `enroller approve --attr …` records), which the
 * service reads at enrollment and signs into each device's credential (version 2,
 * docs/protocol.md §4.6).
 *
 * The machine is shared, so the two are measured interleaved — plain, attributes; attributes,
 * plain; … — each run the same number of enrollments at C=256 on streams, after a warm-up
 * of each. Reported per run: enrollments per second and the service's CPU µs per enrollment
 * (its process's user+system time over the run: what the machine's other load disturbs least);
 * the ratios are of the medians. Every accepted response is opened under its enrollee's k_s2e
 * and its credential decoded: the attribute runs must carry exactly the four attributes.
 */
import { cpSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { concat, toHex } from '../src/crypto/bytes.js';
import { SessionCipher } from '../src/protocol/enrollment/index.js';
import { decodeCredential } from '../src/protocol/credential.js';
import { ACCEPT_AAD, decodeAcceptance } from '../src/protocol/messages/service.js';
import { loadEnrollees, precompute, servicePublic, type Enrollees } from './fixtures.js';
import { buildRequests, runLoad } from './loadgen.js';
import { cli, cpuSeconds, freePort, startService, type RunningService } from './proc.js';

/** What an approval with `--attr role=sensor --attr site=berlin --attr floor=3 --attr line=3` records. */
export const BENCH_ATTRIBUTES = Object.freeze({ floor: '3', line: '3', role: 'sensor', site: 'berlin' });

export interface AttributesOptions {
  /** Enrollments per measured run. */
  n: number;
  /** Runs of each kind (interleaved: plain, attributes; attributes, plain; …). */
  rounds: number;
  /** Enrollments of each service's warm-up (not measured). */
  warm: number;
  concurrency: number;
  threads: number;
}

interface Run {
  kind: 'plain' | 'attributes';
  per_s: number;
  cpu_us_per_enrollment: number;
  p99_ms: number;
  accepted: number;
  loadavg: number;
}

export interface AttributesRow {
  attributes: Record<string, string>;
  n_per_run: number;
  concurrency: number;
  runs: Run[];
  plain: { per_s_median: number; cpu_us_median: number };
  with_attributes: { per_s_median: number; cpu_us_median: number };
  /** Median rate with attributes / median rate without: the target is ≥ 0.95. */
  attributes_throughput_ratio: number;
  /** Median CPU µs per enrollment without / with attributes (≥ 0.95 means at most 5 % more CPU). */
  attributes_cpu_ratio: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** Accepted responses, each opened and its credential decoded; throws if one says other attributes than `want`. */
function checkResponses(set: Enrollees, responses: (Buffer | undefined)[], want: Record<string, string>): number {
  let accepted = 0;
  for (let i = 0; i < set.count; i++) {
    const r = responses[i];
    if (!r || r[0] !== 0) continue;
    const id = set.id(i);
    const a = decodeAcceptance(new SessionCipher(set.kS2e(i)).open(r.subarray(1), concat(ACCEPT_AAD, id)));
    if (toHex(a.enrolleeId) !== toHex(id)) throw new Error(`acceptance ${i} names another enrollee`);
    if (a.credential === undefined) throw new Error(`acceptance ${i} carries no credential`);
    const c = decodeCredential(a.credential);
    const got = c.version === 2 ? c.attributes : {};
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`acceptance ${i}: credential attributes ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
    accepted++;
  }
  return accepted;
}

export async function runAttributesBench(root: string, opts: AttributesOptions, say: (s: string) => void, track: (s: RunningService) => void): Promise<AttributesRow> {
  const base = join(root, 'base');
  cli(['service', 'init', '--home', base, '--address', 'tcp://127.0.0.1:4100']);
  const pub = await servicePublic(base);
  const now = Math.floor(Date.now() / 1000);
  const perKind = opts.warm + opts.rounds * opts.n;
  say(`attributes: precomputing ${2 * perKind} enrollees in ${opts.threads} threads`);
  const all = await precompute(pub, 2 * perKind, opts.threads, now + 7 * 86400);
  const sets = { plain: all.slice(0, perKind), attributes: all.slice(perKind, 2 * perKind) };
  const homes = { plain: join(root, 'plain'), attributes: join(root, 'attributes') };
  cpSync(base, homes.plain, { recursive: true });
  cpSync(base, homes.attributes, { recursive: true });
  await loadEnrollees(homes.plain, [sets.plain], now, 86400);
  await loadEnrollees(homes.attributes, [sets.attributes], now, 86400, BENCH_ATTRIBUTES);
  const want = { plain: {}, attributes: BENCH_ATTRIBUTES };

  const services: Partial<Record<'plain' | 'attributes', RunningService>> = {};
  for (const kind of ['plain', 'attributes'] as const) {
    const port = await freePort();
    // As bench/run.ts serviceFor: rate limits off (the load comes from one address).
    const extraArgs = ['--rate-per-ip', 'off', '--rate-per-enroller', 'off', '--fail-rate-per-ip', 'off', '--https-listen', `127.0.0.1:${await freePort()}`];
    const svc = await startService({ home: homes[kind], port, logPath: join(root, `${kind}.log`), extraArgs });
    track(svc);
    services[kind] = svc;
    if (opts.warm > 0) {
      const ws = sets[kind].slice(0, opts.warm);
      say(`attributes: warm-up of the ${kind} service, ${opts.warm} enrollments at C=16 (not measured)`);
      const wr = await runLoad({ host: '127.0.0.1', port, requests: buildRequests(ws.count, (i) => ws.message(i)), concurrency: 16 });
      if ((wr.statuses['0'] ?? 0) !== ws.count) throw new Error(`warm-up of the ${kind} service: ${JSON.stringify(wr.statuses)}`);
    }
  }

  const runs: Run[] = [];
  for (let k = 0; k < opts.rounds; k++) {
    // A B, B A, A B, …: neither kind always runs first (after the other's run, on a machine whose load drifts).
    for (const kind of k % 2 === 0 ? (['plain', 'attributes'] as const) : (['attributes', 'plain'] as const)) {
      const svc = services[kind]!;
      const from = opts.warm + k * opts.n;
      const set = sets[kind].slice(from, from + opts.n);
      const cpu0 = cpuSeconds(svc.pid);
      const res = await runLoad({ host: '127.0.0.1', port: svc.port, requests: buildRequests(set.count, (i) => set.message(i)), concurrency: opts.concurrency, keep: true });
      const cpu = cpuSeconds(svc.pid) - cpu0;
      const accepted = checkResponses(set, res.responses!, want[kind]);
      if (accepted !== set.count) throw new Error(`${kind} run ${k + 1}: ${accepted} of ${set.count} accepted (${JSON.stringify(res.statuses)})`);
      const run: Run = { kind, per_s: res.per_s, cpu_us_per_enrollment: Math.round((cpu / res.count) * 1e6), p99_ms: res.latency_ms.p99, accepted, loadavg: r3(loadavg()[0]!) };
      runs.push(run);
      say(`attributes: ${kind} run ${k + 1}/${opts.rounds}: ${run.per_s}/s, ${run.cpu_us_per_enrollment} µs CPU each, p99 ${run.p99_ms} ms (load ${run.loadavg})`);
    }
  }
  const of = (kind: Run['kind']) => runs.filter((r) => r.kind === kind);
  const plain = { per_s_median: median(of('plain').map((r) => r.per_s)), cpu_us_median: median(of('plain').map((r) => r.cpu_us_per_enrollment)) };
  const withAttrs = { per_s_median: median(of('attributes').map((r) => r.per_s)), cpu_us_median: median(of('attributes').map((r) => r.cpu_us_per_enrollment)) };
  return {
    attributes: { ...BENCH_ATTRIBUTES },
    n_per_run: opts.n,
    concurrency: opts.concurrency,
    runs,
    plain,
    with_attributes: withAttrs,
    attributes_throughput_ratio: r3(withAttrs.per_s_median / plain.per_s_median),
    attributes_cpu_ratio: r3(plain.cpu_us_median / withAttrs.cpu_us_median),
  };
}
