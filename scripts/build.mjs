#!/usr/bin/env node
// Builds dist/ without ever leaving a half-written one (#22 finding 5).
//
// tsc writes its files one by one, for a minute on a small machine; a CLI run from the same
// checkout meanwhile (a test, a walkthrough in another terminal) would load a new module next
// to an old one and crash ("does not provide an export named …"). So tsc writes into a fresh
// directory, dist.tmp-PID, and only a complete, successful build is swapped in: two renames
// (dist → dist.old-PID, dist.tmp-PID → dist), a window of microseconds instead of a minute,
// then the old tree is removed. A failed build leaves dist/ as it was, and removes its own.
//
// A build whose inputs have not changed since the last one is skipped: `npm pack` and
// `npm publish` run `prepare`, and a tree that is already built need not take minutes to be
// built again. The inputs are every file tsconfig.json includes, tsconfig.json,
// package.json and the TypeScript version; their SHA-256 is kept in dist/.build-inputs,
// and a dist/ file written after it (a `npx tsc` into dist/ by hand) makes the tree stale.
//
//   node scripts/build.mjs            build when stale ("up to date" otherwise)
//   node scripts/build.mjs --force    build anyway
//   node scripts/build.mjs --check    only say whether dist/ is up to date (exit 0) or stale (exit 1)
//
// The project is the working directory's tsconfig.json (`npm run` runs in the package root).
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative, sep } from 'node:path';

const root = process.cwd();
const force = process.argv.includes('--force');
const checkOnly = process.argv.includes('--check');
const out = 'dist';
const stampName = '.build-inputs';
const say = (m) => process.stderr.write(`build: ${m}\n`);

const tsconfig = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8'));
const tscPath = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
const tsVersion = JSON.parse(readFileSync(join(tscPath, '..', '..', 'package.json'), 'utf8')).version;

/** The include patterns this project uses: DIR/**\/*.ts. Anything else is refused rather than guessed. */
function inputs() {
  const files = [];
  for (const pattern of tsconfig.include ?? []) {
    const m = /^([\w.-]+)\/\*\*\/\*\.ts$/.exec(pattern);
    if (!m) throw new Error(`tsconfig.json include "${pattern}": scripts/build.mjs understands only DIR/**/*.ts`);
    const walk = (dir) => {
      if (!existsSync(dir)) return;
      for (const name of readdirSync(dir).sort()) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (name.endsWith('.ts')) files.push(p);
      }
    };
    walk(join(root, m[1]));
  }
  return files;
}

function inputHash() {
  const h = createHash('sha256');
  h.update(`typescript ${tsVersion}\n`);
  for (const f of [join(root, 'tsconfig.json'), join(root, 'package.json'), ...inputs()]) {
    const body = readFileSync(f);
    h.update(`${relative(root, f).split(sep).join('/')} ${body.length}\n`);
    h.update(body);
  }
  return h.digest('hex');
}

/** The newest mtime under dir, leaving out the stamp itself. */
function newest(dir) {
  let t = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    if (s.isDirectory()) t = Math.max(t, newest(p));
    else if (name !== stampName || dir !== join(root, out)) t = Math.max(t, s.mtimeMs);
  }
  return t;
}

// What a killed build left behind (its PID is gone): dist.tmp-PID, or dist.old-PID.
for (const name of readdirSync(root)) {
  const m = new RegExp(`^${out}\\.(?:tmp|old)-(\\d+)$`).exec(name);
  if (!m) continue;
  let alive = true;
  try {
    process.kill(Number(m[1]), 0);
  } catch (e) {
    alive = e.code === 'EPERM';
  }
  if (!alive) rmSync(join(root, name), { recursive: true, force: true });
}

const hash = inputHash();
const stamp = join(root, out, stampName);
const fresh = existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === hash && newest(join(root, out)) <= statSync(stamp).mtimeMs;
if (checkOnly) {
  say(fresh ? `${out}/ is up to date` : `${out}/ is stale`);
  process.exit(fresh ? 0 : 1);
}
if (!force && fresh) {
  say(`${out}/ is up to date (inputs unchanged since it was built); --force builds anyway`);
  process.exit(0);
}

const tmp = `${out}.tmp-${process.pid}`;
const old = `${out}.old-${process.pid}`;
const cleanup = () => rmSync(join(root, tmp), { recursive: true, force: true });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}
const t0 = Date.now();
const r = spawnSync(process.execPath, [tscPath, '-p', join(root, 'tsconfig.json'), '--outDir', join(root, tmp)], { stdio: 'inherit' });
if (r.status !== 0) {
  cleanup();
  say(`tsc failed (${r.status === null ? r.signal : `exit ${r.status}`}); ${out}/ is unchanged`);
  process.exit(r.status || 1);
}
writeFileSync(join(root, tmp, stampName), `${hash}\n`);
const had = existsSync(join(root, out));
if (had) renameSync(join(root, out), join(root, old));
renameSync(join(root, tmp), join(root, out));
if (had) rmSync(join(root, old), { recursive: true, force: true });
say(`built ${out}/ in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
