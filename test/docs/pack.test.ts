/**
 * The package as a user gets it: `npm pack` (with its scripts: prepack, prepare, postpack),
 * installed into an empty directory with its runtime dependencies only, then
 * `npx ockam-enroll --version` and `npx ockam-enroll demo --json` from there.
 *
 * The pack step runs every script, as `npm pack` and `npm publish` do: prepare skips the
 * build, because dist/ is already built for these inputs (the test runs after a build and
 * checks that first), and prepack/postpack turn the dist link into a real directory of hard
 * links for npm to read and back (scripts/build.mjs).
 *
 * The install step, and why. The empty project gets a package-lock.json made from this
 * checkout's: the tarball, and every package of the lock that is not a devDependency, at the
 * same version, path and integrity. `npm ci --offline` installs exactly that, through npm's
 * own installer, from npm's cache (which the `npm ci` that made this checkout's node_modules
 * filled; no network). It runs with --ignore-scripts: the only install script of the runtime
 * closure is better-sqlite3's (prebuild-install, else a node-gyp build of about 80 s), so
 * the binary that build produced for this checkout is copied in instead: same package
 * version, same node. What a user's install would lack is lacking here too: a file left out
 * of package.json's `files`, an import of a devDependency or of a package missing from
 * `dependencies` fails to resolve, because node resolves the packed code from the temporary
 * directory, not from this checkout.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { childEnv } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/paths.js';

const work = realpathSync(mkdtempSync(join(tmpdir(), 'ockam-enroll-pack-')));
after(() => rmSync(work, { recursive: true, force: true }));

// npm and the demo on a loaded machine: generous.
const TIMEOUT_MS = 180_000;

/** Runs npm offline; its stdout and stderr. */
function npm(args: string[], cwd: string): { stdout: string; stderr: string } {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', env: { ...childEnv(), npm_config_offline: 'true', npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: TIMEOUT_MS });
  assert.equal(r.status, 0, `npm ${args.join(' ')}: exit ${r.status ?? r.signal}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

test('npm pack (with its scripts): the tarball, installed without devDependencies, runs --version and the demo', async () => {
  // 0. This checkout's dist/ is up to date: packing must not rebuild it.
  const check = spawnSync(process.execPath, ['scripts/build.mjs', '--check'], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.equal(check.status, 0, `dist/ is stale (run node scripts/build.mjs first): ${check.stderr}`);
  const linkBefore = lstatSync(join(REPO_ROOT, 'dist')).isSymbolicLink();

  // 1. Pack, scripts and all (npm shows their output on its stderr; the JSON is its stdout).
  const packedOut = npm(['pack', '--json', '--pack-destination', work], REPO_ROOT);
  const packed = JSON.parse(packedOut.stdout) as { filename: string; files: { path: string }[] }[];
  assert.match(packedOut.stderr, /> node scripts\/build\.mjs --pack/, 'prepack ran');
  assert.match(packedOut.stderr, /> node scripts\/build\.mjs\n/, 'prepare ran');
  assert.match(packedOut.stderr, /dist\/ is up to date/, 'prepare skipped the build');
  assert.doesNotMatch(packedOut.stderr, /build: built dist\//, 'nothing was rebuilt');
  assert.match(packedOut.stderr, /> node scripts\/build\.mjs --unpack/, 'postpack ran');
  assert.equal(lstatSync(join(REPO_ROOT, 'dist')).isSymbolicLink(), linkBefore, 'dist/ is a link again, as before');
  const files = packed[0]!.files.map((f) => f.path);
  for (const must of ['package.json', 'README.md', 'bin/ockam-enroll.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js', 'dist/src/cli/demo.js']) {
    assert.ok(files.includes(must), `the tarball holds ${must}`);
  }
  // Issue #22 finding 8: the licence and notice ship, the examples the README links ship,
  // and each source map carries its sources (the .ts files are not shipped).
  for (const must of ['LICENSE', 'NOTICE', 'examples/qr-flow.sh', 'examples/three-terminals/README.md', 'docs/ockam-enroll.1']) {
    assert.ok(files.includes(must), `the tarball holds ${must}`);
  }
  const maps = files.filter((f) => f.endsWith('.js.map'));
  assert.ok(maps.length > 0, 'the tarball holds source maps');
  for (const m of maps) {
    const map = JSON.parse(readFileSync(join(REPO_ROOT, m), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
    assert.ok(map.sourcesContent?.length === map.sources.length && map.sourcesContent.every((c) => typeof c === 'string' && c.length > 0), `${m} carries its sources inline`);
  }
  const stray = files.filter((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.startsWith('test/') || f.startsWith('src/') || f.includes('node_modules/') || f.includes('.build-inputs') || f.includes('.running'));
  assert.deepEqual(stray, [], 'the tarball holds no tests, benchmarks, sources, dependencies or build bookkeeping');

  // 2. An empty project whose lock names the tarball and the runtime closure of this checkout's lock.
  const app = join(work, 'app');
  mkdirSync(app);
  const tgz = `file:../${packed[0]!.filename}`;
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as Record<string, unknown> & { version: string };
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; link?: boolean }> };
  const integrity = `sha512-${createHash('sha512').update(readFileSync(join(work, packed[0]!.filename))).digest('base64')}`;
  const packages: Record<string, unknown> = {
    '': { name: 'app', version: '1.0.0', dependencies: { 'ockam-enroll': tgz } },
    'node_modules/ockam-enroll': { version: pkg.version, resolved: tgz, integrity, license: pkg.license, dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines },
  };
  for (const [path, entry] of Object.entries(lock.packages)) if (path !== '' && !entry.dev && !entry.link) packages[path] = entry;
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, dependencies: { 'ockam-enroll': tgz } }));
  writeFileSync(join(app, 'package-lock.json'), JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }));

  // 3. Install it: npm ci, offline, from npm's cache; better-sqlite3's binary copied in (see above).
  npm(['ci', '--offline', '--ignore-scripts'], app);
  const pkgDir = join(app, 'node_modules', 'ockam-enroll');
  assert.ok(lstatSync(pkgDir).isDirectory() && lstatSync(join(pkgDir, 'dist')).isDirectory(), 'the package is installed as real directories');
  for (const d of ['commander', 'better-sqlite3', '@noble/curves']) assert.ok(existsSync(join(app, 'node_modules', d, 'package.json')), `the runtime closure holds ${d}`);
  for (const d of ['typescript', 'fast-check', '@types/node']) assert.ok(!existsSync(join(app, 'node_modules', d)), `the install leaves out the devDependency ${d}`);
  const release = join('node_modules', 'better-sqlite3', 'build', 'Release');
  mkdirSync(join(app, release), { recursive: true });
  copyFileSync(join(REPO_ROOT, release, 'better_sqlite3.node'), join(app, release, 'better_sqlite3.node'));

  // 4. Run it as a user would, from the project directory (npm offline: a missing bin must
  // fail here, not be fetched from the registry).
  const env = { ...childEnv({ npm_config_offline: 'true', npm_config_update_notifier: 'false' }), HOME: join(work, 'home'), XDG_CONFIG_HOME: join(work, 'home', '.config') };
  mkdirSync(env.HOME, { recursive: true });
  const version = await execa('npx', ['ockam-enroll', '--version'], { cwd: app, env, extendEnv: false, reject: false, timeout: TIMEOUT_MS });
  assert.equal(version.exitCode, 0, `npx ockam-enroll --version: ${version.stderr}`);
  assert.equal(version.stdout.trim(), pkg.version);

  const demo = await execa('npx', ['ockam-enroll', 'demo', '--json'], { cwd: app, env, extendEnv: false, reject: false, timeout: TIMEOUT_MS });
  assert.equal(demo.exitCode, 0, `npx ockam-enroll demo --json:\n${demo.stdout}\n${demo.stderr}`);
  const j = JSON.parse(demo.stdout) as { ok: boolean; enrollees: { state: string; name: string }[] };
  assert.equal(j.ok, true);
  assert.deepEqual(j.enrollees.map((e) => [e.state, e.name]), [['enrolled', 'Robot Axiom']]);
  // The demo works in temporary homes: it leaves nothing in the user's (no empty ~/.config/ockam-enroll).
  assert.ok(!existsSync(join(env.XDG_CONFIG_HOME, 'ockam-enroll')), `the demo left ${join(env.XDG_CONFIG_HOME, 'ockam-enroll')} behind`);

  // The library entry point resolves from the installed package too.
  const lib = await execa(process.execPath, ['--input-type=module', '-e', "const m = await import('ockam-enroll'); console.log(typeof m.initiate, typeof m.accept, import.meta.resolve('ockam-enroll'))"], { cwd: app, env, extendEnv: false, reject: false, timeout: TIMEOUT_MS });
  assert.equal(lib.exitCode, 0, lib.stderr);
  const [initiate, accept, url] = lib.stdout.trim().split(' ');
  assert.deepEqual([initiate, accept], ['function', 'function']);
  assert.ok(url!.startsWith(`file://${pkgDir}/`), `ockam-enroll resolves to the installed copy: ${url}`);
});
