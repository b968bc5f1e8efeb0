/**
 * The token row of the benchmark (issue 23 item 5): JWT → CSR → certificate over HTTPS
 * against a real `service start`, at C = 1, 16 and 64 keep-alive connections.
 *
 *   npm run bench -- --token          # this row alone
 *   node dist/bench/run.js --token --token-c1 300 --token-c16 2000 --token-c64 2000
 *
 * As the step-ca comparison did: tokens and CSRs are made before timing (the tokens by
 * createToken on the service's home, recorded in its store like `enroller token create`),
 * one keep-alive HTTPS load generator, only returned certificates counted, and samples
 * checked with `openssl verify`. CPU is the service process's, all threads, from /proc.
 */
import { execFileSync } from 'node:child_process';
import { Agent, request } from 'node:https';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ServiceHome } from '../src/roles/service/home.js';
import { createToken } from '../src/roles/service/tokens.js';
import { createCsr } from '../src/x509/csr.js';
import { generateKeyPair } from '../src/x509/keys.js';
import { decodeBase64Body, decodeCertsOnly, encodeBase64Body } from '../src/x509/pkcs7.js';
import { cli, cpuSeconds, freePort, startService, threadCpu, type RunningService } from './proc.js';

export interface TokenPhase {
  concurrency: number;
  count: number;
  issued: number;
  refused: number;
  wall_s: number;
  per_s: number;
  latency_ms: { p50: number; p99: number };
  service_cpu_s: number;
  service_cpu_us_per_cert: number;
  service_thread_us_per_cert: Record<string, number>;
  loadgen_cores: number;
}

export interface TokenBench {
  phases: Record<string, TokenPhase>;
  token_cpu_us: number;
  openssl_verified: number;
  stepca_recorded: { note: string; c16_per_s: number; cpu_s_per_1000: number };
}

interface Job {
  jwt: string;
  body: string;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

async function mint(home: string, n: number, say: (s: string) => void): Promise<Job[]> {
  const svc = await ServiceHome.open(home);
  try {
    const now = Math.floor(Date.now() / 1000);
    const keys = await generateKeyPair('p256');
    const jobs: Job[] = [];
    for (let i = 0; i < n; i++) {
      const name = `bench-${i}`;
      const t = await createToken(svc, { name, ttl: 3600, enroller: null, now });
      // One key for every request: the service's work does not depend on it, and key
      // generation is not what is measured.
      const csr = await createCsr({ keys, keyType: 'p256', name, idHex: Buffer.from(t.identityId).toString('hex') });
      jobs.push({ jwt: t.jwt, body: encodeBase64Body(csr) });
      if ((i + 1) % 1000 === 0) say(`  minted ${i + 1}/${n}`);
    }
    return jobs;
  } finally {
    await svc.close();
  }
}

async function load(svc: RunningService, url: string, ca: string, jobs: Job[], concurrency: number): Promise<{ phase: TokenPhase; bodies: string[] }> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, ca });
  const latencies: number[] = [];
  const bodies: string[] = [];
  let issued = 0;
  let refused = 0;
  let firstRefusal = '';
  let next = 0;
  const one = (job: Job) =>
    new Promise<void>((resolve, reject) => {
      const t0 = performance.now();
      const req = request(
        `${url}/.well-known/est/simpleenroll`,
        { method: 'POST', agent, headers: { 'Content-Type': 'application/pkcs10', Authorization: `Bearer ${job.jwt}` } },
        (res) => {
          let body = '';
          res.setEncoding('latin1');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => {
            latencies.push(performance.now() - t0);
            if (res.statusCode === 200) {
              issued++;
              if (bodies.length < 8) bodies.push(body);
            } else {
              refused++;
              if (!firstRefusal) firstRefusal = `HTTP ${res.statusCode} ${body.slice(0, 200)}`;
            }
            resolve();
          });
        },
      );
      req.on('error', reject);
      req.end(job.body);
    });
  const cpu0 = cpuSeconds(svc.pid);
  const th0 = threadCpu(svc.pid);
  const own0 = process.cpuUsage();
  const w0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs.length) await one(jobs[next++]!);
    }),
  );
  const wall = (performance.now() - w0) / 1000;
  const cpu = cpuSeconds(svc.pid) - cpu0;
  const own = process.cpuUsage(own0);
  const th1 = threadCpu(svc.pid);
  agent.destroy();
  // A refused request is no certificate: a rate of refusals is not the figure this row reports.
  if (refused > 0) throw new Error(`${refused} of ${jobs.length} token requests at C=${concurrency} were refused (first: ${firstRefusal})`);
  const perThread: Record<string, number> = {};
  for (const [k, v] of Object.entries(th1)) {
    const d = v - (th0[k] ?? 0);
    if (d > 0 && issued > 0) perThread[k] = Math.round((d / issued) * 1e6);
  }
  latencies.sort((a, b) => a - b);
  const q = (p: number) => r2(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0);
  return {
    bodies,
    phase: {
      concurrency,
      count: jobs.length,
      issued,
      refused,
      wall_s: r2(wall),
      per_s: Math.round(issued / wall),
      latency_ms: { p50: q(0.5), p99: q(0.99) },
      service_cpu_s: r2(cpu),
      service_cpu_us_per_cert: issued > 0 ? Math.round((cpu / issued) * 1e6) : 0,
      service_thread_us_per_cert: perThread,
      loadgen_cores: r2((own.user + own.system) / 1e6 / wall),
    },
  };
}

export async function runTokenBench(
  root: string,
  opts: { c1: number; c16: number; c64: number; warm: number; serviceArgs?: string[] },
  say: (s: string) => void,
  track: (svc: RunningService) => void,
): Promise<TokenBench> {
  const home = join(root, 'token');
  const httpsPort = await freePort();
  const url = `https://127.0.0.1:${httpsPort}`;
  cli(['service', 'init', '--home', home, '--address', `tcp://127.0.0.1:${await freePort()}`, '--https-address', url]);
  const sizes: [string, number, number][] = [
    ['warm', 16, opts.warm],
    ['c1', 1, opts.c1],
    ['c16', 16, opts.c16],
    ['c64', 64, opts.c64],
  ];
  const total = sizes.reduce((a, [, , n]) => a + n, 0);
  say(`token: minting ${total} tokens and CSRs before timing`);
  const jobs = await mint(home, total, say);
  // The HTTPS listener's per-address limits are off: every connection of the load generator
  // comes from 127.0.0.1, and the defaults (100/s, 32 connections per address) would refuse
  // most requests with 429 and reset the C=64 connections.
  const svc = await startService({
    home,
    port: await freePort(),
    logPath: join(root, 'token.log'),
    extraArgs: ['--https-listen', `127.0.0.1:${httpsPort}`, '--https-rate-per-ip', 'off', '--https-max-connections-per-ip', '1024', ...(opts.serviceArgs ?? [])],
  });
  track(svc);
  // The service logs https-listening after listening on TCP: wait for it.
  for (let i = 0; !/https-listening/.test(readFileSync(svc.logPath, 'utf8')); i++) {
    if (i > 6000) throw new Error('the service never listened for HTTPS');
    await new Promise((r) => setTimeout(r, 50));
  }
  const ca = readFileSync(join(ServiceHome.dir(home), 'ca.cert.pem'), 'utf8');
  const phases: Record<string, TokenPhase> = {};
  let at = 0;
  const samples: string[] = [];
  for (const [name, c, n] of sizes) {
    const slice = jobs.slice(at, at + n);
    at += n;
    if (n === 0) continue;
    const { phase, bodies } = await load(svc, url, ca, slice, c);
    if (name !== 'warm') {
      phases[name] = phase;
      say(`  token C=${c}: ${phase.per_s}/s, ${phase.service_cpu_us_per_cert} µs CPU per certificate, p99 ${phase.latency_ms.p99} ms (${phase.issued}/${phase.count} issued)`);
    }
    samples.push(...bodies.slice(0, 2));
  }
  await svc.stop();
  // openssl verify on samples: the returned certificates chain to the CA, as TLS clients.
  const dir = join(root, 'token-samples');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ca.pem'), ca);
  let verified = 0;
  for (const [i, b] of samples.entries()) {
    const [der] = decodeCertsOnly(decodeBase64Body(b, 65536, 'ERR_DECODE', 'the response'));
    const f = join(dir, `c${i}.pem`);
    writeFileSync(f, `-----BEGIN CERTIFICATE-----\n${Buffer.from(der!).toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`);
    const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', join(dir, 'ca.pem'), f], { encoding: 'utf8' });
    if (/: OK/.test(out)) verified++;
  }
  const c16 = phases.c16 ?? phases.c64 ?? phases.c1!;
  return {
    phases,
    token_cpu_us: c16.service_cpu_us_per_cert,
    openssl_verified: verified,
    stepca_recorded: {
      note: "step-ca 0.19's figures as issue 23 records them (not measured by this run; see docs/performance.md)",
      c16_per_s: 359,
      cpu_s_per_1000: 1.8,
    },
  };
}
