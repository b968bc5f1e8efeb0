/**
 * scripts/build.mjs (#22 finding 5): a build never leaves a half-written dist/ for a running
 * CLI to load, a failed build leaves the old one, and `npm pack` (which runs `prepare`) does
 * not rebuild a tree that is already built.
 *
 * Each test builds a small project of its own in a temporary directory (tsconfig.json like
 * this repository's, TypeScript from this checkout's node_modules), with the real script and
 * the real tsc: building the repository itself would take a minute and swap dist/ under the
 * other tests' feet.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childEnv } from '../helpers/cli.js';
import { patience } from '../helpers/pace.js';
import { REPO_ROOT } from '../helpers/paths.js';

const SCRIPT = join(REPO_ROOT, 'scripts', 'build.mjs');
const work = realpathSync(mkdtempSync(join(tmpdir(), 'ockam-enroll-build-')));
after(() => rmSync(work, { recursive: true, force: true }));

/** Modules per project: enough that tsc takes a while to write them all. */
const N = 40;

let count = 0;
function project(version: number): string {
  const dir = join(work, `p${++count}`);
  mkdirSync(join(dir, 'src'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `p${count}`, version: '1.0.0', type: 'module', files: ['dist/src'], scripts: { prepare: `node ${JSON.stringify(SCRIPT)}` } }));
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

/** The version every module of dist/ says it is, or a description of a mixed or missing tree. */
function distVersion(dir: string): string {
  const seen = new Set<string>();
  for (let i = 0; i < N; i++) {
    let text: string;
    try {
      text = readFileSync(join(dir, 'dist', 'src', `m${i}.js`), 'utf8');
    } catch {
      return 'missing';
    }
    seen.add(/VERSION = (\d+)/.exec(text)?.[1] ?? 'partial');
  }
  return [...seen].sort().join('+');
}

function ino(dir: string): number | undefined {
  try {
    return statSync(join(dir, 'dist')).ino;
  } catch {
    return undefined;
  }
}

const leftovers = (dir: string) => readdirSync(dir).filter((n) => /^dist\.(?:tmp|old)-/.test(n));

let dir = '';

test('the first build writes dist/ and its input stamp; a second one with the same inputs is skipped', async () => {
  dir = project(1);
  writeFileSync(join(dir, 'src', 'gone.ts'), 'export const GONE = 1;\n');
  const first = await build(dir);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /built dist\//);
  assert.equal(distVersion(dir), '1');
  assert.ok(existsSync(join(dir, 'dist', 'src', 'gone.js')));
  assert.match(readFileSync(join(dir, 'dist', '.build-inputs'), 'utf8'), /^[0-9a-f]{64}\n$/);
  assert.deepEqual(leftovers(dir), []);

  const before = ino(dir);
  const again = await build(dir);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /dist\/ is up to date/);
  assert.equal(ino(dir), before, 'dist/ was left alone');
  assert.equal((await build(dir, '--check')).code, 0);
});

test('npm pack runs prepare, which does not rebuild a tree that is already built', async () => {
  const before = ino(dir);
  const r = spawnSync('npm', ['pack', '--json', '--pack-destination', work], {
    cwd: dir,
    encoding: 'utf8',
    env: childEnv({ npm_config_offline: 'true', npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }),
    timeout: await patience(60_000),
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /dist\/ is up to date/, 'prepare ran, and skipped the build');
  assert.equal(ino(dir), before);
  const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  assert.ok(files.includes('dist/src/m0.js'), files.join(', '));
  assert.ok(!files.some((f) => f.includes('.build-inputs')), 'the stamp is not packed');
});

test('a changed source, or a dist/ file written after the stamp (tsc run by hand), makes the tree stale', async () => {
  const later = new Date(statSync(join(dir, 'dist', '.build-inputs')).mtimeMs + 5_000);
  utimesSync(join(dir, 'dist', 'src', 'm3.js'), later, later);
  const byHand = await build(dir, '--check');
  assert.equal(byHand.code, 1, byHand.stderr);
  assert.match(byHand.stderr, /dist\/ is stale/);
  writeFileSync(join(dir, 'src', 'm0.ts'), readFileSync(join(dir, 'src', 'm0.ts'), 'utf8') + '\n');
  assert.equal((await build(dir, '--check')).code, 1);
});

test('a failed build leaves dist/ exactly as it was and removes its own output', async () => {
  const before = readFileSync(join(dir, 'dist', 'src', 'm0.js'), 'utf8');
  const dirIno = ino(dir);
  writeSources(dir, 2);
  writeFileSync(join(dir, 'src', 'bad.ts'), 'export const BAD: number = "not a number";\n');
  const r = await build(dir);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /tsc failed .*dist\/ is unchanged/);
  assert.equal(ino(dir), dirIno);
  assert.equal(readFileSync(join(dir, 'dist', 'src', 'm0.js'), 'utf8'), before);
  assert.equal(distVersion(dir), '1');
  assert.deepEqual(leftovers(dir), []);
  rmSync(join(dir, 'src', 'bad.ts'));
});

test('a rebuild swaps in a new tree: a reader never sees a mixed or missing dist/, and a deleted source leaves no output behind', async () => {
  const dirIno = ino(dir);
  rmSync(join(dir, 'src', 'gone.ts'));
  writeSources(dir, 3);

  // Read the whole tree over and over while the build runs.
  const seen = new Set<string>();
  const child = spawn(process.execPath, [SCRIPT], { cwd: dir, env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  let done = false;
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => ((done = true), resolve(code))));
  let reads = 0;
  // The states dist/ went through, each once in a row: its inode, or missing.
  const states: string[] = [String(dirIno)];
  const note = (at: number | undefined) => {
    const st = at === undefined ? 'missing' : String(at);
    if (states.at(-1) !== st) states.push(st);
  };
  while (!done) {
    // As bin/ockam-enroll.js does: a load during which dist/ became another directory is
    // done again; one that saw the same directory throughout must see one version.
    const at = ino(dir);
    note(at);
    const v = distVersion(dir);
    const after = ino(dir);
    note(after);
    if (at !== undefined && at === after) {
      seen.add(v);
      reads++;
    }
    await new Promise((r) => setImmediate(r));
  }
  note(ino(dir));
  assert.equal(await exited, 0, stderr);
  seen.add(distVersion(dir));
  assert.ok(reads > 1, 'the tree was read while the build ran');
  // However long the moment between the two renames lasts on a busy machine: the old tree,
  // perhaps no tree for that moment, then the new one — one swap, not a rewrite file by file.
  assert.ok(states.length === 2 || (states.length === 3 && states[1] === 'missing'), `dist/ went through ${states.join(' → ')}: it was swapped once`);
  assert.deepEqual([...seen].filter((v) => v !== '1' && v !== '3'), [], `a reader saw dist/ as ${[...seen].join(', ')}`);
  assert.equal(distVersion(dir), '3');
  assert.notEqual(ino(dir), dirIno, 'dist/ is a new directory, not rewritten in place');
  assert.ok(!existsSync(join(dir, 'dist', 'src', 'gone.js')), 'the output of a deleted source is gone');
  assert.deepEqual(leftovers(dir), []);
});

test("this package's build, prepare and test scripts go through scripts/build.mjs", () => {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  for (const s of ['build', 'prepare', 'test', 'vectors', 'bench', 'test:long', 'test:stress']) {
    assert.match(pkg.scripts[s] ?? '', /^node scripts\/build\.mjs(?: |$)/, `npm run ${s}: ${pkg.scripts[s]}`);
    assert.doesNotMatch(pkg.scripts[s]!, /\btsc\b/, `npm run ${s} does not run tsc into dist/ in place`);
  }
});
