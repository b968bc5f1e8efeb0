/**
 * A harness for end-to-end CLI tests: it runs the built binary (bin/ockam-enroll.js) with
 * this node as separate processes, over real loopback TCP and real pipes, against the real
 * SQLite store, each test in fresh temporary homes.
 *
 * Every wait here is bounded: a command that hangs is killed after its timeout, and a
 * background process is killed if it has not exited when asked to stop. Every bound is the
 * time on an idle machine, scaled by how slow the machine is right now (pace.ts patience()),
 * so that load makes the suite slower, not red.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { patience } from './pace.js';
import { freePort as reservedPort } from './ports.js';
import { BIN, REPO_ROOT } from './paths.js';

export const NODE = process.execPath;

/** How long one foreground command may take before it is killed, on an idle machine (scaled: pace.ts). */
export const RUN_TIMEOUT_MS = 30_000;
/** How long a background process may take to print the line a test waits for, on an idle machine (scaled: pace.ts). */
export const WAIT_TIMEOUT_MS = 20_000;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Appended as `--home DIR`. */
  home?: string;
  /** Written to the child's stdin (which is otherwise closed at once). */
  input?: string;
  /** Extra environment variables for the child. */
  env?: Record<string, string>;
  /** spawnCli only: keep the child's stdin open as a pipe (write answers with child.stdin). */
  stdinPipe?: boolean;
  /** The bound on an idle machine (default RUN_TIMEOUT_MS); scaled by patience(). */
  timeoutMs?: number;
}

/**
 * The child's environment: ours without anything of ockam-enroll's own (a stray
 * OCKAM_ENROLL_HOME or passphrase in the developer's shell must not change a test), plus
 * NO_COLOR so diagnostics are plain text.
 */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('OCKAM_ENROLL_') && k !== 'FORCE_COLOR') env[k] = v;
  }
  return { ...env, NO_COLOR: '1', ...extra };
}

function withHome(args: readonly string[], home: string | undefined): string[] {
  return home === undefined ? [...args] : [...args, '--home', home];
}

/** Runs `ockam-enroll ARGS` to completion. Never throws for a non-zero exit. */
export async function run(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await execa(NODE, [BIN, ...withHome(args, opts.home)], {
    reject: false,
    extendEnv: false,
    env: childEnv(opts.env),
    timeout: await patience(opts.timeoutMs ?? RUN_TIMEOUT_MS),
    stripFinalNewline: false,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
  });
  if (r.timedOut) throw new Error(`ockam-enroll ${args.join(' ')} timed out\nstderr:\n${String(r.stderr)}`);
  if (r.exitCode === undefined) throw new Error(`ockam-enroll ${args.join(' ')} did not exit normally (${r.signal ?? '?'})\nstderr:\n${String(r.stderr)}`);
  return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Describes a result for assertion messages. */
export function show(r: RunResult): string {
  return `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

/** Runs and asserts exit 0; returns the result. */
export async function ok(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(args, opts);
  assert.equal(r.code, 0, `ockam-enroll ${args.join(' ')} failed: ${show(r)}`);
  return r;
}

/** Runs with --json, asserts exit 0 and that stdout is exactly one JSON object; returns it. */
export async function okJson<T = any>(args: readonly string[], opts: RunOptions = {}): Promise<T> {
  const r = await ok([...args, '--json'], opts);
  return parseJsonOut<T>(r);
}

/** Asserts stdout is exactly one JSON object on one line (nothing else) and returns it. */
export function parseJsonOut<T = any>(r: RunResult): T {
  assert.ok(r.stdout.endsWith('\n'), `stdout must end with a newline: ${show(r)}`);
  const lines = r.stdout.split('\n').slice(0, -1);
  assert.equal(lines.length, 1, `stdout must hold exactly one line of JSON: ${show(r)}`);
  const v = JSON.parse(lines[0]!) as unknown;
  assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), `stdout must be a JSON object: ${show(r)}`);
  return v as T;
}

/** The `ockam-enroll: error: …` line of stderr (asserting there is exactly one). */
export function errorLine(r: RunResult): string {
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('ockam-enroll: error: '));
  assert.equal(lines.length, 1, `expected one error line: ${show(r)}`);
  return lines[0]!;
}

/** The `ockam-enroll: hint: …` line of stderr, or undefined. */
export function hintLine(r: RunResult): string | undefined {
  return r.stderr.split('\n').find((l) => l.startsWith('ockam-enroll: hint: '));
}

/**
 * Asserts a failed run the CLI way: the exit status, nothing on stdout, an error line that
 * holds `message`, and (when given) a hint line that holds `hint`.
 */
export function assertFailure(r: RunResult, code: number, message: string | RegExp, hint?: string | RegExp): void {
  assert.equal(r.code, code, `expected exit ${code}: ${show(r)}`);
  assert.equal(r.stdout, '', `a failure writes nothing to stdout: ${show(r)}`);
  const e = errorLine(r);
  if (typeof message === 'string') assert.ok(e.includes(message), `error line should mention "${message}": ${show(r)}`);
  else assert.match(e, message, show(r));
  if (hint !== undefined) {
    const h = hintLine(r);
    assert.ok(h !== undefined, `expected a hint line: ${show(r)}`);
    if (typeof hint === 'string') assert.ok(h.includes(hint), `hint should mention "${hint}": ${show(r)}`);
    else assert.match(h, hint, show(r));
  }
}

// ---- temporary homes and ports

const homes: string[] = [];

/** A fresh, empty temporary directory, removed by removeTempHomes(). */
export function tempHome(label = 'home'): string {
  const dir = mkdtempSync(join(tmpdir(), `ockam-enroll-cli-${label}-`));
  homes.push(dir);
  return dir;
}

/** Removes every directory tempHome() made in this process. */
export function removeTempHomes(): void {
  for (const d of homes.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A free TCP port on 127.0.0.1, outside the ephemeral range and reserved for this process (ports.ts). */
export const freePort = reservedPort;

/** Quotes a word for sh. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A shell command line that runs this binary with this node: for --exec. */
export function shellCommand(args: readonly string[]): string {
  return [NODE, BIN, ...args].map(shellQuote).join(' ');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- background processes

export interface Background {
  readonly child: ResultPromise;
  /** stderr lines so far (complete lines only). */
  readonly lines: string[];
  /** stdout so far. */
  stdout(): string;
  /**
   * Resolves with the first stderr line (past or future) that matches; rejects on exit, or
   * after timeoutMs (the bound on an idle machine, default WAIT_TIMEOUT_MS; scaled by patience()).
   */
  waitForLine(match: string | RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when the process exits (killing it with SIGKILL after timeoutMs, scaled likewise). */
  done(timeoutMs?: number): Promise<RunResult>;
  /** Whether the process is still running. */
  running(): boolean;
  kill(signal?: NodeJS.Signals): void;
}

/** Whether a process with this pid still exists (signal 0 checks without sending). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts `ockam-enroll ARGS` in the background, collecting its output. */
export function spawnCli(args: readonly string[], opts: RunOptions = {}): Background {
  const child = execa(NODE, [BIN, ...withHome(args, opts.home)], {
    reject: false,
    extendEnv: false,
    // execa SIGKILLs a child 5 s after a SIGTERM by default: a clean stop that takes longer
    // on a busy machine became "killed by SIGKILL". done() bounds the wait instead, scaled
    // to the machine's pace, and kills only when that bound passes.
    forceKillAfterDelay: false,
    env: childEnv(opts.env),
    stripFinalNewline: false,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: opts.stdinPipe ? ('pipe' as const) : ('ignore' as const) }),
  });
  const lines: string[] = [];
  let partial = '';
  let out = '';
  let exited = false;
  const waiters = new Set<() => void>();
  const poke = () => waiters.forEach((w) => w());
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    poke();
  });
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    out += chunk;
  });
  const finished = child.then((r) => {
    exited = true;
    if (partial) lines.push(partial);
    partial = '';
    poke();
    return r;
  });
  const describe = () => `ockam-enroll ${args.join(' ')}\n--- stderr so far ---\n${lines.join('\n')}${partial}`;

  return {
    child,
    lines,
    stdout: () => out,
    running: () => !exited,
    kill: (signal = 'SIGTERM') => void child.kill(signal),
    async waitForLine(match, timeoutMs = WAIT_TIMEOUT_MS) {
      const test = (l: string) => (typeof match === 'string' ? l.includes(match) : match.test(l));
      const bound = await patience(timeoutMs);
      return new Promise<string>((resolve, reject) => {
        const check = () => {
          const hit = lines.find(test);
          if (hit !== undefined) return finish(() => resolve(hit));
          if (exited) return finish(() => reject(new Error(`exited before printing ${String(match)}: ${describe()}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`timed out after ${bound} ms waiting for ${String(match)}: ${describe()}`))), bound);
        const finish = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
    async done(timeoutMs = RUN_TIMEOUT_MS) {
      const bound = await patience(timeoutMs);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(r, bound, 'timeout')));
      const r = await Promise.race([finished, timeout]);
      clearTimeout(timer);
      if (r === 'timeout') {
        child.kill('SIGKILL');
        await finished;
        throw new Error(`did not exit within ${bound} ms: ${describe()}`);
      }
      if (r.exitCode === undefined) throw new Error(`was killed by ${r.signal ?? '?'}: ${describe()}`);
      return { code: r.exitCode, stdout: out, stderr: lines.join('\n') };
    },
  };
}

// ---- the service

export interface ServiceHandle extends Background {
  readonly port: number;
  /** Stderr decision lines containing ` <decision> ` (e.g. 'rejected', 'accepted'). */
  decisions(decision: string): string[];
  /**
   * Sends `signal` (default SIGTERM), awaits the exit and asserts a clean stop: exit 0 and
   * a ` stopped ` line naming the signal. Safe to call twice.
   */
  stop(signal?: NodeJS.Signals): Promise<RunResult>;
}

let httpsSupport: Promise<boolean> | undefined;

/**
 * Whether this build's service also serves token enrollment over HTTPS (`service start
 * --https-listen`). When it does, every test service gets its own free HTTPS port too, so
 * parallel tests never fight over the default one.
 *
 * Read from the built command file that declares the option, not from `service start --help`:
 * that spawn loads the whole service command tree, once in every test file that starts a
 * service (issue 24: the suite's time is mostly process start-ups).
 */
export function serviceHasHttps(): Promise<boolean> {
  httpsSupport ??= readFile(join(REPO_ROOT, 'dist', 'src', 'cli', 'service-start.js'), 'utf8').then((js) => js.includes('--https-listen <HOST:PORT>'));
  return httpsSupport;
}

export interface ServiceInit {
  serviceKey: string;
  address: string;
  port: number;
  /** The HTTPS port put in the service's settings, when the build has token enrollment. */
  httpsPort: number | undefined;
  /** The whole `service init --json` object. */
  json: Record<string, unknown>;
}

/** `service init --address tcp://127.0.0.1:PORT` (and a free HTTPS address), asserting success. */
export async function initService(home: string, opts: { port?: number; httpsPort?: number; force?: boolean } = {}): Promise<ServiceInit> {
  const port = opts.port ?? (await freePort());
  const address = `tcp://127.0.0.1:${port}`;
  const httpsPort = (await serviceHasHttps()) ? (opts.httpsPort ?? (await freePort())) : undefined;
  const args = ['service', 'init', '--address', address];
  if (httpsPort !== undefined) args.push('--https-address', `https://127.0.0.1:${httpsPort}`);
  if (opts.force) args.push('--force');
  const json = await okJson<Record<string, unknown>>(args, { home });
  assert.match(String(json.service_key), /^[0-9a-f]{64}$/);
  return { serviceKey: String(json.service_key), address, port, httpsPort, json };
}

/**
 * Runs `service start --listen 127.0.0.1:PORT [EXTRA…]` and resolves once it logs
 * ` listening ` (and ` https-listening ` when the build serves HTTPS too).
 */
export async function startService(home: string, port: number, httpsPort?: number, extra: readonly string[] = []): Promise<ServiceHandle> {
  const https = await serviceHasHttps();
  const args = ['service', 'start', '--listen', `127.0.0.1:${port}`, ...extra];
  if (https) args.push('--https-listen', `127.0.0.1:${httpsPort ?? (await freePort())}`);
  return spawnService(args, port, { home, ready: [` listening address=127.0.0.1:${port} `, ...(https ? [' https-listening '] : [])] });
}

/**
 * Spawns `ARGS` (a `service start` command line) and resolves once every `ready` pattern has
 * been logged, in order; kills it if one never comes. The handle reads the decision log as
 * text or JSON lines (`--json`), and stop() asserts a clean stop.
 */
export async function spawnService(
  args: readonly string[],
  port: number,
  opts: { home: string; env?: Record<string, string>; ready: readonly (string | RegExp)[] },
): Promise<ServiceHandle> {
  const bg = spawnCli(args, { home: opts.home, ...(opts.env ? { env: opts.env } : {}) });
  try {
    for (const line of opts.ready) await bg.waitForLine(line);
  } catch (err) {
    bg.kill('SIGKILL');
    await bg.done().catch(() => undefined);
    throw err;
  }
  let stopped: Promise<RunResult> | undefined;
  return {
    ...bg,
    port,
    decisions: (d) => bg.lines.filter((l) => l.includes(` ${d} `) || l.includes(`"decision":"${d}"`)),
    stop(signal = 'SIGTERM') {
      stopped ??= (async () => {
        if (bg.running()) bg.kill(signal);
        const r = await bg.done(15_000);
        assert.equal(r.code, 0, `the service should stop cleanly on ${signal}: ${show(r)}`);
        assert.ok(
          bg.lines.some(
            (l) =>
              (l.includes(' stopped ') && l.includes(`signal=${signal}`)) ||
              (l.includes('"decision":"stopped"') && l.includes(`"signal":"${signal}"`)),
          ),
          `the service should log a stopped line for ${signal}: ${show(r)}`,
        );
        return r;
      })();
      return stopped;
    },
  };
}

/** Waits until `pred` holds, polling; fails after timeoutMs (the bound on an idle machine; scaled by patience()). */
export async function eventually(pred: () => boolean, what: string, timeoutMs = WAIT_TIMEOUT_MS): Promise<void> {
  const bound = await patience(timeoutMs);
  const end = Date.now() + bound;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${bound} ms waiting for ${what}`);
    await sleep(25);
  }
}

// ---- a world: a running service, an allowed enroller with bundles, an enrollee

export interface Enrollee {
  home: string;
  id: string;
  card: string;
  name: string | undefined;
}

export interface World {
  root: string;
  port: number;
  httpsPort: number | undefined;
  address: string;
  serviceHome: string;
  serviceKey: string;
  /** The running service; a test that restarts it replaces this handle. */
  service: ServiceHandle;
  enrollerHome: string;
  enrollerKey: string;
  /** The ids of the bundles fetched at set-up, in order. */
  bundles: string[];
  enrollee: Enrollee;
  /** Inits another enrollee in a fresh home. */
  newEnrollee(name?: string): Promise<Enrollee>;
  /** Fetches more bundles into the enroller's cache; returns their ids. */
  fetchBundles(count: number): Promise<string[]>;
  /** Stops the service (asserting a clean stop) and removes the homes. */
  dispose(): Promise<void>;
}

export async function initEnrollee(home: string, name?: string): Promise<Enrollee> {
  const j = await okJson<{ enrollee_id: string; card: string }>(['enrollee', 'init', ...(name ? ['--name', name] : [])], { home });
  return { home, id: j.enrollee_id, card: j.card, name };
}

/** `eka`: the version of the bundles fetched (`enroller bundle fetch --eka`); default the CLI's (v2). */
export async function setupWorld(opts: { bundles?: number; enrolleeName?: string; eka?: 'v1' | 'v2' } = {}): Promise<World> {
  const root = tempHome('world');
  const serviceHome = join(root, 'service');
  const enrollerHome = join(root, 'enroller');
  let n = 0;
  const newEnrollee = (name?: string) => initEnrollee(join(root, `enrollee-${++n}`), name);
  // The three homes are made at once: each init is a process of its own in its own home,
  // and none needs another (the suite's time is mostly process start-ups: issue 24).
  const [{ port, httpsPort, address, serviceKey }, enrollerKey, enrollee] = await Promise.all([
    initService(serviceHome),
    okJson<{ enroller_key: string }>(['enroller', 'init'], { home: enrollerHome }).then((j) => j.enroller_key),
    newEnrollee(opts.enrolleeName ?? 'Robot Axiom'),
  ]);
  const service = await startService(serviceHome, port, httpsPort);
  try {
    await ok(['service', 'enroller', 'allow', enrollerKey, '--name', 'test terminal'], { home: serviceHome });
    const fetchBundles = async (count: number) =>
      (await okJson<{ bundles: string[] }>(
        ['enroller', 'bundle', 'fetch', '--service', address, '--count', String(count), '--service-key', serviceKey, ...(opts.eka ? ['--eka', opts.eka] : [])],
        { home: enrollerHome },
      )).bundles;
    const bundles = await fetchBundles(opts.bundles ?? 3);
    const world: World = {
      root,
      port,
      httpsPort,
      address,
      serviceHome,
      serviceKey,
      service,
      enrollerHome,
      enrollerKey,
      bundles,
      enrollee,
      newEnrollee,
      fetchBundles,
      async dispose() {
        try {
          await world.service.stop();
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      },
    };
    return world;
  } catch (err) {
    service.kill('SIGKILL');
    await service.done().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
}

/** The `short authentication string: dddd-dddd` in some stderr lines. */
export function sasIn(lines: readonly string[] | string): string {
  const text = typeof lines === 'string' ? lines : lines.join('\n');
  const all = [...text.matchAll(/short authentication string: (\d{4}-\d{4})/g)].map((m) => m[1]!);
  assert.ok(all.length >= 1, `no short authentication string in:\n${text}`);
  return all[0]!;
}

/**
 * Runs two commands with each one's stdout piped into the other's stdin (as two `--stdio`
 * peers would be joined by ssh or a serial line); resolves with both results.
 */
export async function runCrossPiped(
  a: { args: readonly string[]; home: string },
  b: { args: readonly string[]; home: string },
  timeoutMs = RUN_TIMEOUT_MS,
): Promise<[RunResult, RunResult]> {
  const start = (p: { args: readonly string[]; home: string }) =>
    execa(NODE, [BIN, ...withHome(p.args, p.home)], {
      reject: false,
      extendEnv: false,
      env: childEnv(),
      timeout: timeoutMs,
      stripFinalNewline: false,
      stdin: 'pipe',
      encoding: 'buffer',
    });
  const ca = start(a);
  const cb = start(b);
  // A peer that has exited makes the other's late writes fail with EPIPE: that is theirs to report.
  for (const s of [ca.stdin, cb.stdin, ca.stdout, cb.stdout]) s!.on('error', () => undefined);
  ca.stdout!.pipe(cb.stdin!);
  cb.stdout!.pipe(ca.stdin!);
  const [ra, rb] = await Promise.all([ca, cb]);
  const result = (r: typeof ra, args: readonly string[]): RunResult => {
    if (r.timedOut) throw new Error(`ockam-enroll ${args.join(' ')} timed out\nstderr:\n${Buffer.from(r.stderr as Uint8Array).toString('utf8')}`);
    return {
      code: r.exitCode ?? -1,
      stdout: Buffer.from(r.stdout as Uint8Array).toString('latin1'),
      stderr: Buffer.from(r.stderr as Uint8Array).toString('utf8'),
    };
  };
  return [result(ra, a.args), result(rb, b.args)];
}

/** A cached bundle no other test uses (taken from the end; `enroller onboard` takes from the front). */
export function takeBundle(w: World): string {
  const id = w.bundles.pop();
  assert.ok(id, 'the world ran out of bundles');
  return id;
}
