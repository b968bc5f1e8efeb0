#!/usr/bin/env node
// Builds dist/ without ever leaving a half-written or a missing one (#22 finding 5).
//
// tsc writes its files one by one, for a minute on a small machine; a CLI run from the same
// checkout meanwhile (a test, a walkthrough in another terminal) would load a new module next
// to an old one and crash ("does not provide an export named …"). So dist/ is a symbolic link
// to one complete tree, a *generation* dist.<ms>-<pid>/, and a build is:
//   1. tsc writes into dist.tmp-<pid>/ (a failed build removes it and leaves dist/ alone);
//   2. that directory is renamed to dist.<ms>-<pid>/, complete;
//   3. a new link dist.swap-<pid> → dist.<ms>-<pid> is renamed over dist: rename(2) replaces
//      the old link in one step (POSIX), so dist/ always names a complete tree, never none.
// Node resolves a module to its real path, so a process that started on one generation loads
// every later module (a lazy import, a worker) from that same generation; bin/ockam-enroll.js
// and scripts/test.mjs also note their PID in <generation>/.running/ while they run. The
// generation just replaced is kept (a process may be between reading the link and noting its
// PID); older ones are removed once no PID noted in them is alive.
//
// npm pack leaves symbolic links out of a package (npm-packlist walks with follow: false), so
// a link named dist would ship no code. `prepack` (--pack) therefore puts a real directory at
// dist/ for npm to read, made of hard links to the current generation's files (no copying),
// and `postpack` (--unpack) makes it a generation again behind a link. A symlink and a
// directory cannot replace each other by rename(2), so each of those two steps leaves dist/
// absent for the microseconds between two renames; a dist.swap-<pid> entry marks that
// moment and bin/ockam-enroll.js waits it out. Only packing does this; a build never does.
// (So does the first build over a dist/ that `npx tsc` wrote as a plain directory: once.)
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
//   node scripts/build.mjs --pack     build when stale, then make dist/ a real directory (prepack)
//   node scripts/build.mjs --unpack   make a real dist/ a generation behind the link again (postpack)
//
// The project is the working directory's tsconfig.json (`npm run` runs in the package root).
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join, relative, sep } from 'node:path';

const root = process.cwd();
const force = process.argv.includes('--force');
const checkOnly = process.argv.includes('--check');
const packMode = process.argv.includes('--pack');
const unpackMode = process.argv.includes('--unpack');
const out = 'dist';
const stampName = '.build-inputs';
/** Entries at a generation's top that are not build output (the stamp, the PIDs running from it). */
const META = new Set([stampName, '.running', '.packed-from']);
const GENERATION = new RegExp(`^${out}\\.(\\d+)-(\\d+)$`);
/** What a build or a pack step names while it works, by its PID. */
const WORKING = new RegExp(`^${out}\\.(?:tmp|old|swap|pack)-(\\d+)$`);
const say = (m) => process.stderr.write(`build: ${m}\n`);
const at = (name) => join(root, name);

const tsconfig = JSON.parse(readFileSync(at('tsconfig.json'), 'utf8'));
const tscPath = createRequire(at('package.json')).resolve('typescript/bin/tsc');
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
    walk(at(m[1]));
  }
  return files;
}

function inputHash() {
  const h = createHash('sha256');
  h.update(`typescript ${tsVersion}\n`);
  for (const f of [at('tsconfig.json'), at('package.json'), ...inputs()]) {
    const body = readFileSync(f);
    h.update(`${relative(root, f).split(sep).join('/')} ${body.length}\n`);
    h.update(body);
  }
  return h.digest('hex');
}

/** The newest mtime of the build output under dir (the meta entries at its top left out). */
function newest(dir, top = true) {
  let t = 0;
  for (const name of readdirSync(dir)) {
    if (top && META.has(name)) continue;
    const p = join(dir, name);
    const s = statSync(p);
    t = Math.max(t, s.isDirectory() ? newest(p, false) : s.mtimeMs);
  }
  return t;
}

function alive(pid) {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** What dist is now: a link (to which generation), a real directory, or nothing. */
function current() {
  try {
    const s = lstatSync(at(out));
    if (s.isSymbolicLink()) return { kind: 'link', target: basename(readlinkSync(at(out))) };
    return { kind: s.isDirectory() ? 'dir' : 'other' };
  } catch {
    return { kind: 'none' };
  }
}

/** A new generation's name: milliseconds, then this PID (two builds in one millisecond differ by PID). */
const generationName = () => `${out}.${Date.now()}-${process.pid}`;

/**
 * Points dist at the generation `gen` (a directory name beside it). Over a link: one rename(2).
 * Over a real directory (packed, or written by a hand-run tsc): that directory becomes a
 * generation of its own first, which leaves dist absent between the two renames (marked by
 * the dist.swap-PID link). Returns the generation dist named before, if any.
 */
function pointAt(gen) {
  const was = current();
  const swap = `${out}.swap-${process.pid}`;
  rmSync(at(swap), { force: true });
  symlinkSync(gen, at(swap));
  if (was.kind === 'link') {
    renameSync(at(swap), at(out));
    return was.target;
  }
  let previous;
  if (was.kind === 'dir') {
    previous = generationName();
    if (previous === gen) previous = `${out}.${Date.now() + 1}-${process.pid}`;
    renameSync(at(out), at(previous));
  } else if (was.kind === 'other') {
    unlinkSync(at(out));
  }
  renameSync(at(swap), at(out));
  return previous;
}

/** The PIDs noted in a generation's .running/ that are still alive. */
function users(gen) {
  try {
    return readdirSync(at(join(gen, '.running'))).filter((n) => /^\d+$/.test(n) && alive(Number(n)));
  } catch {
    return [];
  }
}

/**
 * Removes what dead builds and pack steps left (dist.tmp-, dist.swap-, dist.pack-, and the old
 * script's dist.old-), and every generation but `keep` that no live process is running from.
 * A generation whose builder is alive is another build's, about to be swapped in.
 */
function prune(keep) {
  for (const name of readdirSync(root)) {
    const w = WORKING.exec(name);
    if (w) {
      if (!alive(Number(w[1]))) rmSync(at(name), { recursive: true, force: true });
      continue;
    }
    const g = GENERATION.exec(name);
    if (!g || keep.includes(name)) continue;
    if (Number(g[2]) !== process.pid && alive(Number(g[2]))) continue;
    if (users(name).length > 0) continue;
    rmSync(at(name), { recursive: true, force: true });
  }
}

function isFresh(hash) {
  const stamp = at(join(out, stampName));
  return existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === hash && newest(at(out)) <= statSync(stamp).mtimeMs;
}

/** Hard-links every file of the tree `from` into `to` (new), the meta entries at its top left out. */
function linkTree(from, to, top = true) {
  mkdirSync(to);
  for (const name of readdirSync(from)) {
    if (top && META.has(name) && name !== stampName) continue;
    const p = join(from, name);
    if (lstatSync(p).isDirectory()) linkTree(p, join(to, name), false);
    else linkSync(p, join(to, name));
  }
}

/** prepack: dist becomes a real directory (hard links to the current generation) for npm to read. */
function pack() {
  const was = current();
  if (was.kind !== 'link') return;
  const staged = `${out}.pack-${process.pid}`;
  const swap = `${out}.swap-${process.pid}`;
  rmSync(at(staged), { recursive: true, force: true });
  linkTree(at(was.target), at(staged));
  writeFileSync(at(join(staged, '.packed-from')), `${was.target}\n`);
  rmSync(at(swap), { force: true });
  renameSync(at(out), at(swap)); // dist absent from here …
  renameSync(at(staged), at(out)); // … to here
  unlinkSync(at(swap));
  say(`${out}/ is a real directory for npm pack (hard links to ${was.target}/); postpack puts the link back`);
}

/** postpack: a real dist becomes a generation again, behind the link. */
function unpack() {
  if (current().kind !== 'dir') return;
  const gen = generationName();
  let from;
  try {
    from = readFileSync(at(join(out, '.packed-from')), 'utf8').trim();
  } catch {
    from = undefined;
  }
  const swap = `${out}.swap-${process.pid}`;
  rmSync(at(swap), { force: true });
  symlinkSync(gen, at(swap));
  renameSync(at(out), at(gen)); // dist absent from here …
  renameSync(at(swap), at(out)); // … to here
  // The generation the packed tree was linked from stays, as the one just replaced would.
  prune(from && GENERATION.test(from) ? [gen, from] : [gen]);
  say(`${out}/ is a link to ${gen}/ again`);
}

const hash = inputHash();
if (checkOnly) {
  const fresh = isFresh(hash);
  say(fresh ? `${out}/ is up to date` : `${out}/ is stale`);
  process.exit(fresh ? 0 : 1);
}
if (unpackMode) {
  unpack();
  process.exit(0);
}
if (!force && isFresh(hash)) {
  say(`${out}/ is up to date (inputs unchanged since it was built); --force builds anyway`);
  if (packMode) pack();
  process.exit(0);
}

const tmp = `${out}.tmp-${process.pid}`;
const cleanup = () => rmSync(at(tmp), { recursive: true, force: true });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}
const t0 = Date.now();
const r = spawnSync(process.execPath, [tscPath, '-p', at('tsconfig.json'), '--outDir', at(tmp)], { stdio: 'inherit' });
if (r.status !== 0) {
  cleanup();
  say(`tsc failed (${r.status === null ? r.signal : `exit ${r.status}`}); ${out}/ is unchanged`);
  process.exit(r.status || 1);
}
writeFileSync(at(join(tmp, stampName)), `${hash}\n`);
const gen = generationName();
renameSync(at(tmp), at(gen));
const previous = pointAt(gen);
prune(previous === undefined ? [gen] : [gen, previous]);
say(`built ${out}/ in ${((Date.now() - t0) / 1000).toFixed(1)} s (${out} → ${gen}/)`);
if (packMode) pack();
