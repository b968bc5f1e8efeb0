#!/usr/bin/env node
// Runs the test suite (scripts/test.mjs) N times in a row while every core is kept busy, and
// prints each run's pass/fail counts and the names of the tests that failed: a timing
// assumption that holds on a quiet machine but not on a busy one shows up here, not in CI.
//
//   node scripts/test-stress.mjs [--runs N] [--busy N] [FILTER… | --node-test-flag=…]
//
// --runs N   how many runs (default 5); --busy N  how many busy loops (default: one per core,
// os.availableParallelism()); everything else goes to scripts/test.mjs unchanged (filters and
// node --test flags), so `node scripts/test-stress.mjs --runs 3 cli/commands` stresses one file.
// It runs on the compiled tests in dist/ (`npm run test:stress` builds first).
//
// Each busy loop is `node -e 'for(;;){}'`, started before a run and stopped after it (so the
// PostgreSQL cluster and every test start under load too), and killed when this script exits,
// fails or is interrupted. Each run's full output (spec reporter) is kept in a log file whose
// path is printed. Exit status: 0 when every run passed, 1 otherwise, 130 when interrupted.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);

function usage(message) {
  process.stderr.write(`test-stress: error: ${message}\nhint: node scripts/test-stress.mjs [--runs N] [--busy N] [FILTER…]\n`);
  process.exit(2);
}

/** A whole number in [min, max] from a flag's value. */
function count(flag, value, min, max) {
  if (value === undefined || !/^\d{1,4}$/.test(value) || Number(value) < min || Number(value) > max) usage(`${flag} takes a whole number from ${min} to ${max}, not ${JSON.stringify(value ?? '')}`);
  return Number(value);
}

let runs = 5;
let busy = availableParallelism();
const passThrough = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const m = /^--(runs|busy)(?:=(.*))?$/.exec(a);
  if (!m) {
    passThrough.push(a);
    continue;
  }
  const value = m[2] ?? argv[++i];
  if (m[1] === 'runs') runs = count('--runs', value, 1, 1000);
  else busy = count('--busy', value, 0, 256);
}

// ---- the busy loops

const loops = new Set();
// A loop that notices its parent is gone (re-parented: this script was SIGKILLed) and exits,
// so that no spinning orphan outlives a stress run; it checks rarely, so it stays busy.
const LOOP = 'const p=process.ppid;let i=0;for(;;){if(++i===5e7){i=0;if(process.ppid!==p)process.exit(0)}}';

function startLoops() {
  for (let i = 0; i < busy; i++) {
    const c = spawn(process.execPath, ['-e', LOOP], { stdio: 'ignore' });
    loops.add(c);
    c.once('exit', () => loops.delete(c));
  }
}

async function stopLoops() {
  const gone = [...loops].map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', r))));
  for (const c of loops) c.kill('SIGKILL');
  await Promise.all(gone);
}

process.on('exit', () => {
  for (const c of loops) c.kill('SIGKILL');
});

// ---- one run

const logDir = mkdtempSync(join(tmpdir(), 'ockam-enroll-stress-'));
let current; // the scripts/test.mjs child of the run in progress
let interrupted = false;

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`test-stress: ${sig}: stopping the run in progress and the busy loops\n`);
    for (const c of loops) c.kill('SIGKILL');
    // scripts/test.mjs stops its runner and removes its PostgreSQL cluster on this signal;
    // it gets a while to do so (it gives the runner 10 s), then we leave anyway.
    if (current && current.exitCode === null) {
      current.kill(sig);
      current.once('exit', () => process.exit(130));
      setTimeout(() => process.exit(130), 15_000).unref();
    } else process.exit(130);
  });
}

/** The failing tests of a run: the deepest failures, as "file: suite > test: first line of the error". */
function failures(records) {
  // Per file, finished tests arrive children first, then their parent (at nesting - 1).
  const pending = new Map(); // file -> nesting -> nodes
  const roots = [];
  for (const r of records) {
    const file = r.file ?? '?';
    if (!pending.has(file)) pending.set(file, new Map());
    const byDepth = pending.get(file);
    const node = { ...r, children: byDepth.get(r.nesting + 1) ?? [] };
    byDepth.delete(r.nesting + 1);
    if (r.nesting === 0) roots.push(node);
    else byDepth.set(r.nesting, [...(byDepth.get(r.nesting) ?? []), node]);
  }
  const out = [];
  const walk = (node, path) => {
    const here = [...path, node.name];
    const failedChildren = node.children.filter((c) => c.failed);
    if (node.failed && failedChildren.length === 0) {
      const where = node.file ? `${relative(root, node.file)}: ` : '';
      out.push(`${where}${here.join(' > ')}${node.error ? `\n      ${node.error.replace(/\n/g, '\n      ')}` : ''}`);
    }
    for (const c of failedChildren) walk(c, here);
  };
  for (const r of roots) walk(r, []);
  return out;
}

function runOnce(n) {
  const events = join(logDir, `run-${n}.jsonl`);
  const log = join(logDir, `run-${n}.log`);
  writeFileSync(events, '');
  const args = [
    join(here, 'test.mjs'),
    ...passThrough,
    `--test-reporter=${join(here, 'stress-reporter.mjs')}`,
    `--test-reporter-destination=${events}`,
    '--test-reporter=spec',
    `--test-reporter-destination=${log}`,
  ];
  const t0 = Date.now();
  return new Promise((resolve) => {
    // stdout/stderr of scripts/test.mjs itself (the PostgreSQL cluster's lines, a test file's
    // stray output) go to the terminal; the reporters write to the files.
    current = spawn(process.execPath, args, { stdio: 'inherit', cwd: root });
    current.once('exit', (code, signal) => {
      const records = [];
      const diag = {};
      for (const line of readFileSync(events, 'utf8').split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line);
        if (r.kind === 'test') records.push(r);
        else {
          const m = /^(tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(r.message);
          if (m) diag[m[1]] = Number(m[2]);
        }
      }
      const tests = records.filter((r) => !r.suite);
      // The runner's own summary when it got that far, else what was seen.
      const pass = diag.pass ?? tests.filter((r) => !r.failed && !r.skip && !r.todo).length;
      const fail = diag.fail ?? tests.filter((r) => r.failed).length;
      const failed = failures(records);
      resolve({ n, code: code ?? 1, signal, pass, fail, cancelled: diag.cancelled ?? 0, skipped: diag.skipped ?? 0, failed, seconds: Math.round((Date.now() - t0) / 1000), log });
    });
  });
}

// ---- the runs

process.stderr.write(`test-stress: ${runs} run(s) of scripts/test.mjs ${passThrough.length ? `${passThrough.join(' ')} ` : ''}with ${busy} busy loop(s) on ${availableParallelism()} core(s); logs in ${logDir}\n`);
const results = [];
for (let n = 1; n <= runs && !interrupted; n++) {
  startLoops();
  const r = await runOnce(n);
  await stopLoops();
  if (interrupted) break;
  results.push(r);
  const ok = r.code === 0 && r.fail === 0;
  console.log(`run ${n}/${runs}: ${ok ? 'PASS' : 'FAIL'}  pass ${r.pass}  fail ${r.fail}  cancelled ${r.cancelled}  skipped ${r.skipped}  ${r.seconds} s  exit ${r.signal ?? r.code}  (${r.log})`);
  for (const f of r.failed) console.log(`  failed: ${f}`);
  if (!ok && r.failed.length === 0) console.log(`  (no failing test was reported: see ${r.log})`);
}
const bad = results.filter((r) => r.code !== 0 || r.fail !== 0).length;
console.log(`test-stress: ${results.length - bad} of ${results.length} run(s) passed with ${busy} busy loop(s)`);
process.exit(bad > 0 || results.length < runs ? 1 : 0);
