/**
 * The package as a user gets it: `npm pack`, installed into an empty directory with its
 * runtime dependencies only, then `npx ockam-enroll --version` and `npx ockam-enroll demo
 * --json` from there.
 *
 * How the install is made, and why. `npm install --omit=dev <tarball>` would fetch every
 * dependency from the registry and compile better-sqlite3 from source (minutes, and a test
 * must not need the network). Instead the tarball is unpacked as
 * node_modules/ockam-enroll, and exactly the packages `npm ls --omit=dev` lists as the
 * runtime closure are linked beside it from this checkout's node_modules (the top-level
 * ones; their own nested node_modules come with them). What a user's install would lack is
 * lacking here too: a file left out of package.json's `files`, an import of a devDependency
 * (fast-check, typescript, @noble/hashes when nothing at runtime pulls it in) or of a package
 * missing from `dependencies` fails to resolve, because node resolves the packed code from
 * the temporary directory, not from this checkout. `npm pack --ignore-scripts` packs the
 * dist/ already built (the `prepare` script would rebuild dist/ under the other tests' feet).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { execa } from 'execa';
import { childEnv } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/paths.js';

const work = realpathSync(mkdtempSync(join(tmpdir(), 'ockam-enroll-pack-')));
after(() => rmSync(work, { recursive: true, force: true }));

// npm and the demo on a loaded machine: generous.
const TIMEOUT_MS = 180_000;

/**
 * Runs npm offline and returns its stdout. `npm ls` exits 1 for problems elsewhere in the tree
 * (an extraneous package, a peer warning) while still listing it: its stdout is what counts.
 */
function npm(args: string[], cwd: string): string {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', env: { ...childEnv(), npm_config_offline: 'true', npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: TIMEOUT_MS });
  assert.ok(r.stdout && (r.status === 0 || args[0] === 'ls'), `npm ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

test('npm pack: the tarball, installed without devDependencies, runs --version and the demo', async () => {
  // 1. Pack.
  const packed = JSON.parse(npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], REPO_ROOT)) as { filename: string; files: { path: string }[] }[];
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
  const stray = files.filter((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.startsWith('test/') || f.startsWith('src/') || f.includes('node_modules/'));
  assert.deepEqual(stray, [], 'the tarball holds no tests, benchmarks, sources or dependencies');

  // 2. An empty project with the tarball unpacked as its dependency.
  const app = join(work, 'app');
  const pkgDir = join(app, 'node_modules', 'ockam-enroll');
  mkdirSync(pkgDir, { recursive: true });
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, dependencies: { 'ockam-enroll': `file:${packed[0]!.filename}` } }));
  execFileSync('tar', ['-xzf', join(work, packed[0]!.filename), '-C', pkgDir, '--strip-components=1']);

  // 3. The runtime closure, linked in: the top-level entries `npm ls --omit=dev` lists.
  const nm = join(REPO_ROOT, 'node_modules');
  const closure = npm(['ls', '--omit=dev', '--all', '--parseable'], REPO_ROOT)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(nm + sep))
    .map((l) => relative(nm, l))
    .filter((rel) => !rel.split(sep).includes('node_modules'));
  for (const d of ['commander', 'better-sqlite3', '@noble/curves']) assert.ok(closure.includes(d), `the runtime closure holds ${d}`);
  for (const d of ['typescript', 'fast-check', '@types/node']) assert.ok(!closure.includes(d), `the runtime closure leaves out the devDependency ${d}`);
  for (const rel of closure) {
    const to = join(app, 'node_modules', rel);
    mkdirSync(dirname(to), { recursive: true });
    if (!existsSync(to)) symlinkSync(realpathSync(join(nm, rel)), to, 'dir');
  }
  mkdirSync(join(app, 'node_modules', '.bin'), { recursive: true });
  symlinkSync(join('..', 'ockam-enroll', 'bin', 'ockam-enroll.js'), join(app, 'node_modules', '.bin', 'ockam-enroll'));

  // 4. Run it as a user would, from the project directory (npm offline: a missing bin must
  // fail here, not be fetched from the registry).
  const env = { ...childEnv({ npm_config_offline: 'true', npm_config_update_notifier: 'false' }), HOME: join(work, 'home'), XDG_CONFIG_HOME: join(work, 'home', '.config') };
  mkdirSync(env.HOME, { recursive: true });
  const version = await execa('npx', ['ockam-enroll', '--version'], { cwd: app, env, extendEnv: false, reject: false, timeout: TIMEOUT_MS });
  assert.equal(version.exitCode, 0, `npx ockam-enroll --version: ${version.stderr}`);
  assert.equal(version.stdout.trim(), (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version);

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
