/**
 * scripts/build.mjs (#22 finding 5): dist/ is a link to one complete build, swapped for the
 * next one in a single rename(2), so a reader never finds dist/ missing or half-written; a
 * failed build leaves the old one; a build noted as running (bin/ockam-enroll.js does this)
 * is kept while its process lives; and `npm pack` (which runs prepack, prepare, postpack)
 * does not rebuild a tree that is already built and ships real files, not a link.
 *
 * Each test builds a small project of its own in a temporary directory (tsconfig.json like
 * this repository's, TypeScript from this checkout's node_modules), with the real script and
 * the real tsc: building the repository itself would take a minute and swap dist/ under the
 * other tests' feet.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childEnv } from '../helpers/cli.js';
import { patience } from '../helpers/pace.js';
import { REPO_ROOT } from '../helpers/paths.js';

const SCRIPT = join(REPO_ROOT, 'scripts', 'build.mjs');
const work = realpathSync(mkdtempSync(join(tmpdir(), 'ockam-enroll-build-')));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

/** Modules per project: enough that tsc takes a while to write them all. */
const N = 40;

let count = 0;
function project(version: number): string {
  const dir = join(work, `p${++count}`);
  mkdirSync(join(dir, 'src'), { recursive: true });
  const node = `node ${JSON.stringify(SCRIPT)}`;
  // The scripts this repository's package.json has (checked by the last test).
  const scripts = { prepare: node, prepack: `${node} --pack`, postpack: `${node} --unpack` };
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `p${count}`, version: '1.0.0', type: 'module', main: './dist/src/m0.js', files: ['dist/src'], scripts }));
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'dist', rootDir: '.', types: [], lib: ['ES2022'], skipLibCheck: true }, include: ['src/**/*.ts'] }));
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  writeSources(dir, version);
  return dir;
}

function writeSources(dir: string, version: number): void {
  for (let i = 0; i < N; i++) writeFileSync(join(dir, 'src', `m${i}.ts`), `export const VERSION: number = ${version};\nexport const M${i} = "${'x'.repeat(4000)}${i}";\n`);
}

interface Built {
  code: number | null;
  stderr: string;
}

async function build(dir: string, ...args: string[]): Promise<Built> {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], { cwd: dir, encoding: 'utf8', env: childEnv(), timeout: await patience(60_000) });
  return { code: r.status, stderr: r.stderr };
}

/** The version every module of a tree says it is, or a description of a mixed or missing tree. */
function treeVersion(tree: string): string {
  const seen = new Set<string>();
  for (let i = 0; i < N; i++) {
    let text: string;
    try {
      text = readFileSync(join(tree, 'src', `m${i}.js`), 'utf8');
    } catch {
      return 'missing';
    }
    seen.add(/VERSION = (\d+)/.exec(text)?.[1] ?? 'partial');
  }
  return [...seen].sort().join('+');
}
const distVersion = (dir: string) => treeVersion(join(dir, 'dist'));

/** The generation dist/ links to (a directory name beside it), or what dist/ is instead. */
function target(dir: string): string {
  try {
    const st = lstatSync(join(dir, 'dist'));
    return st.isSymbolicLink() ? readlinkSync(join(dir, 'dist')) : st.isDirectory() ? 'a directory' : 'a file';
  } catch {
    return 'missing';
  }
}

const generations = (dir: string) => readdirSync(dir).filter((n) => /^dist\.\d+-\d+$/.test(n)).sort();
const leftovers = (dir: string) => readdirSync(dir).filter((n) => /^dist\.(?:tmp|old|swap|pack)-/.test(n));

let dir = '';

test('the first build writes a generation and links dist/ to it, with its input stamp; a second one with the same inputs is skipped', async () => {
  dir = project(1);
  writeFileSync(join(dir, 'src', 'gone.ts'), 'export const GONE = 1;\n');
  const first = await build(dir);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /built dist\//);
  assert.equal(distVersion(dir), '1');
  assert.deepEqual(generations(dir), [target(dir)], 'dist/ is a link to the one generation');
  assert.ok(statSync(join(dir, target(dir))).isDirectory());
  assert.ok(existsSync(join(dir, 'dist', 'src', 'gone.js')));
  assert.match(readFileSync(join(dir, 'dist', '.build-inputs'), 'utf8'), /^[0-9a-f]{64}\n$/);
  assert.deepEqual(leftovers(dir), []);

  const before = target(dir);
  const again = await build(dir);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /dist\/ is up to date/);
  assert.equal(target(dir), before, 'dist/ was left alone');
  assert.equal((await build(dir, '--check')).code, 0);
});

test('a failed build leaves dist/ exactly as it was and removes its own output', async () => {
  const before = readFileSync(join(dir, 'dist', 'src', 'm0.js'), 'utf8');
  const was = target(dir);
  writeSources(dir, 2);
  writeFileSync(join(dir, 'src', 'bad.ts'), 'export const BAD: number = "not a number";\n');
  const r = await build(dir);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /tsc failed .*dist\/ is unchanged/);
  assert.equal(target(dir), was);
  assert.deepEqual(generations(dir), [was]);
  assert.equal(readFileSync(join(dir, 'dist', 'src', 'm0.js'), 'utf8'), before);
  assert.equal(distVersion(dir), '1');
  assert.deepEqual(leftovers(dir), []);
  rmSync(join(dir, 'src', 'bad.ts'));
});

test('a changed source, or a dist/ file written after the stamp (tsc run by hand), makes the tree stale', async () => {
  const m3 = join(dir, 'dist', 'src', 'm3.js');
  const stamp = statSync(join(dir, 'dist', '.build-inputs')).mtime;
  writeSources(dir, 1);
  assert.equal((await build(dir, '--check')).code, 0, 'the sources are as built again');
  const later = new Date(stamp.getTime() + 5_000);
  utimesSync(m3, later, later);
  const byHand = await build(dir, '--check');
  assert.equal(byHand.code, 1, byHand.stderr);
  assert.match(byHand.stderr, /dist\/ is stale/);
  const earlier = new Date(stamp.getTime() - 5_000);
  utimesSync(m3, earlier, earlier);
  assert.equal((await build(dir, '--check')).code, 0, 'written before the stamp again');
  writeFileSync(join(dir, 'src', 'm0.ts'), readFileSync(join(dir, 'src', 'm0.ts'), 'utf8') + '\n');
  assert.equal((await build(dir, '--check')).code, 1);
});

/** A process that stands for a CLI still running from a generation (its PID noted there, as bin/ockam-enroll.js does). */
let user: ChildProcess | undefined;
let first = '';

test('across many rebuilds dist/ is never missing, and a reader that resolves it once (as the CLI does) sees one whole version', async () => {
  first = target(dir);
  user = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  children.push(user);
  mkdirSync(join(dir, first, '.running'), { recursive: true });
  writeFileSync(join(dir, first, '.running', String(user.pid)), '');
  rmSync(join(dir, 'src', 'gone.ts'));

  // A second process samples dist/ as fast as it can for the whole run: lstat of the link and
  // a stat of a module through it. A single sample that finds nothing fails the test.
  const sampler = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('node:fs'); const d = process.argv[1]; let samples = 0, missing = [], stop = false;
       process.stdin.on('data', () => (stop = true)); process.stdin.resume();
       (function loop() {
         const until = Date.now() + 20;
         while (Date.now() < until) {
           samples++;
           try { fs.lstatSync(d + '/dist'); fs.statSync(d + '/dist/src/m0.js'); } catch (e) { missing.push(e.code); }
         }
         if (stop) { process.stdout.write(JSON.stringify({ samples, missing })); process.exit(0); }
         setImmediate(loop);
       })();`,
      dir,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  children.push(sampler);
  let sampled = '';
  sampler.stdout!.on('data', (c: Buffer) => (sampled += c.toString()));
  const samplerDone = new Promise<void>((resolve) => sampler.once('close', () => resolve()));

  // Four builds in a row, each of a new version of every module.
  const versions = [3, 4, 5, 6];
  let done = false;
  const builds = (async () => {
    const logs: string[] = [];
    for (const v of versions) {
      writeSources(dir, v);
      const child = spawn(process.execPath, [SCRIPT], { cwd: dir, env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      logs.push(`v${v}: exit ${code} ${stderr}`);
      if (code !== 0) break;
    }
    done = true;
    return logs;
  })();

  // Meanwhile, read the whole tree over and over, as bin/ockam-enroll.js loads it: resolve
  // the link once, note this PID in that generation, read every module by its real path.
  const seen = new Map<string, number>();
  const targets = [first];
  let reads = 0;
  while (!done) {
    const link = target(dir);
    assert.ok(/^dist\.\d+-\d+$/.test(link), `dist/ is ${link}`);
    if (targets.at(-1) !== link) targets.push(link);
    const tree = realpathSync(join(dir, 'dist'));
    const mark = join(tree, '.running', String(process.pid));
    mkdirSync(join(tree, '.running'), { recursive: true });
    writeFileSync(mark, '');
    const v = treeVersion(tree);
    rmSync(mark);
    seen.set(v, (seen.get(v) ?? 0) + 1);
    reads++;
    await new Promise((r) => setImmediate(r));
  }
  const logs = await builds;
  sampler.stdin!.end('stop');
  await samplerDone;
  assert.equal(logs.length, versions.length, logs.join('\n'));
  for (const l of logs) assert.match(l, /^v\d: exit 0 /, l);
  const { samples, missing } = JSON.parse(sampled) as { samples: number; missing: string[] };
  assert.ok(samples > 1000, `the sampler looked ${samples} times`);
  assert.deepEqual(missing, [], `dist/ was missing ${missing.length} times in ${samples} samples`);

  assert.ok(reads > versions.length, `the tree was read ${reads} times while it was rebuilt`);
  assert.deepEqual([...seen.keys()].filter((v) => !/^\d$/.test(v)), [], `a reader saw ${[...seen.entries()].map(([v, n]) => `${v} (${n}×)`).join(', ')}`);
  assert.equal(distVersion(dir), '6');
  assert.ok(!existsSync(join(dir, 'dist', 'src', 'gone.js')), 'the output of a deleted source is gone');
  // Each build swapped the link once: one new generation per build, none rewritten in place.
  const last = target(dir);
  if (targets.at(-1) !== last) targets.push(last);
  assert.equal(new Set(targets).size, targets.length, `dist/ went through ${targets.join(' → ')}`);
  // Kept: the generation the waiting process runs from, the one the last build replaced, the
  // current one. The two in between had nobody on them and are gone.
  const kept = generations(dir);
  assert.equal(kept.length, 3, kept.join(', '));
  assert.ok(kept.includes(first) && kept.includes(last), kept.join(', '));
  assert.deepEqual(leftovers(dir), []);
});

test('npm pack runs prepack, prepare and postpack: no rebuild of a built tree, real files in the tarball, the link back afterwards', async () => {
  // The waiting process ends: its generation may go now.
  user!.kill('SIGKILL');
  await new Promise((r) => user!.once('exit', r));
  const before = target(dir);
  const r = spawnSync('npm', ['pack', '--json', '--foreground-scripts', '--pack-destination', work], {
    cwd: dir,
    encoding: 'utf8',
    env: childEnv({ npm_config_offline: 'true', npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }),
    timeout: await patience(60_000),
  });
  assert.equal(r.status, 0, r.stderr);
  // --foreground-scripts: the scripts' stderr is npm's.
  assert.match(r.stderr, /dist\/ is up to date/, 'prepare ran, and skipped the build');
  assert.doesNotMatch(r.stderr, /built dist\//);
  assert.match(r.stderr, /real directory for npm pack/, 'prepack ran');
  assert.match(r.stderr, /is a link to dist\.\d+-\d+\/ again/, 'postpack ran');
  const packed = (JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[])[0]!;
  const files = packed.files.map((f) => f.path);
  for (let i = 0; i < N; i++) assert.ok(files.includes(`dist/src/m${i}.js`), files.join(', '));
  assert.ok(!files.some((f) => f.includes('.build-inputs') || f.includes('.running') || f.includes('packed-from')), 'no build bookkeeping is packed');
  // In the tarball itself: regular files (tar's "-"), not a link named dist.
  const listing = spawnSync('tar', ['-tvzf', join(work, packed.filename)], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes('package/dist'));
  assert.equal(listing.length, N, listing.join('\n'));
  assert.deepEqual(listing.filter((l) => !l.startsWith('-')), [], 'every dist entry is a regular file');
  const unpacked = join(work, 'unpacked');
  mkdirSync(unpacked);
  spawnSync('tar', ['-xzf', join(work, packed.filename), '-C', unpacked]);
  assert.equal(treeVersion(join(unpacked, 'package', 'dist')), '6');

  // Back to a link, to a generation with the same files (and still up to date).
  assert.match(target(dir), /^dist\.\d+-\d+$/);
  assert.notEqual(target(dir), before);
  assert.equal(distVersion(dir), '6');
  assert.equal((await build(dir, '--check')).code, 0);
  assert.deepEqual(leftovers(dir), []);
  // Kept: the generation packed from (the one just replaced) and the current one; the one
  // the ended process ran from is gone.
  assert.deepEqual(generations(dir), [before, target(dir)].sort());
  assert.ok(!existsSync(join(dir, first)));
});

test('the first build over a plain dist/ (written by a hand-run tsc) makes it a link', async () => {
  const d = project(8);
  const tsc = spawnSync(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: d, encoding: 'utf8', timeout: await patience(60_000) });
  assert.equal(tsc.status, 0, tsc.stdout);
  assert.equal(target(d), 'a directory');
  assert.equal((await build(d, '--check')).code, 1, 'no stamp: stale');
  const r = await build(d);
  assert.equal(r.code, 0, r.stderr);
  assert.match(target(d), /^dist\.\d+-\d+$/);
  assert.equal(distVersion(d), '8');
  // The plain tree is kept as the generation just replaced.
  assert.equal(generations(d).length, 2, generations(d).join(', '));
  assert.deepEqual(leftovers(d), []);
});

test("this package's build, prepare, pack and test scripts go through scripts/build.mjs, and the link is not committed", () => {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  for (const s of ['build', 'prepare', 'prepack', 'postpack', 'test', 'vectors', 'bench', 'test:long', 'test:stress']) {
    assert.match(pkg.scripts[s] ?? '', /^node scripts\/build\.mjs(?: |$)/, `npm run ${s}: ${pkg.scripts[s]}`);
    assert.doesNotMatch(pkg.scripts[s]!, /\btsc\b/, `npm run ${s} does not run tsc into dist/ in place`);
  }
  assert.equal(pkg.scripts.prepack, 'node scripts/build.mjs --pack');
  assert.equal(pkg.scripts.postpack, 'node scripts/build.mjs --unpack');
  const ignored = spawnSync('git', ['check-ignore', '--no-index', 'dist', 'dist.1796662972016-14806', 'dist.swap-1', 'dist.tmp-1'], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.deepEqual(ignored.stdout.trim().split('\n'), ['dist', 'dist.1796662972016-14806', 'dist.swap-1', 'dist.tmp-1'], 'git ignores the link and every generation');
});
