#!/usr/bin/env node
// Runs node's built-in test runner on the compiled *.test.js files (node 20 has no glob
// support in --test). Extra arguments narrow the run: `node scripts/test.mjs crypto noise`.
//
// Test files that use PostgreSQL (they import test/helpers/pg.ts) get a throwaway cluster
// (scripts/pg-cluster.mjs), started here and passed as OCKAM_ENROLL_TEST_PG; it is stopped
// and removed when the run ends, fails, or is interrupted (Ctrl-C, SIGTERM). If it cannot be
// started, those tests fail with the reason; they are never skipped.
//
// dist is a link to one build (scripts/build.mjs); the run is pinned to the tree it names
// when the run starts, by its real path, and notes its PID there (<tree>/.running/) so that a
// build during the run neither mixes two trees into it nor removes the one it runs from.
import { lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawn } from 'node:child_process';
import { startCluster } from './pg-cluster.mjs';

let tree = 'dist';
try {
  if (lstatSync('dist').isSymbolicLink()) {
    tree = relative('.', realpathSync('dist'));
    mkdirSync(join(tree, '.running'), { recursive: true });
    const mark = join(tree, '.running', String(process.pid));
    writeFileSync(mark, '');
    process.on('exit', () => {
      try {
        unlinkSync(mark);
      } catch {
        // removed with its tree
      }
    });
  }
} catch {
  // no dist yet: the walk below says so
}
const root = join(tree, 'test');
const filters = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.test.js')) files.push(p);
  }
})(root);
const chosen = filters.length ? files.filter((f) => filters.some((x) => relative(root, f).includes(x))) : files;
if (chosen.length === 0) {
  console.error(`no test files under ${root} match ${filters.join(' ')}`);
  process.exit(1);
}

const env = { ...process.env };
let cluster;
const needsPg = !process.env.OCKAM_ENROLL_TEST_PG && chosen.some((f) => readFileSync(f, 'utf8').includes('helpers/pg.js'));
if (needsPg) {
  try {
    cluster = await startCluster();
    env.OCKAM_ENROLL_TEST_PG = cluster.url;
    process.stderr.write(`test: PostgreSQL test cluster at ${cluster.url} (${cluster.dir})\n`);
  } catch (err) {
    // The PostgreSQL tests see this reason and fail with it (test/helpers/pg.ts).
    env.OCKAM_ENROLL_TEST_PG_ERROR = err.message;
    process.stderr.write(`test: ${err.message}\n`);
  }
}

let stopped = false;
function stopCluster() {
  if (stopped) return;
  stopped = true;
  cluster?.stop();
}
process.on('exit', stopCluster);

const child = spawn(process.execPath, ['--test', '--test-concurrency=2', ...flags, ...chosen], { stdio: 'inherit', env });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    // The runner (same process group on Ctrl-C) stops its tests; we wait for it, then clean up.
    child.kill(sig);
    setTimeout(() => {
      child.kill('SIGKILL');
      stopCluster();
      process.exit(130);
    }, 10_000).unref();
  });
}
child.on('exit', (code, signal) => {
  stopCluster();
  process.exit(code ?? (signal ? 130 : 1));
});
