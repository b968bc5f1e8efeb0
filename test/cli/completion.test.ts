/**
 * Shell completion and the manual page (#22 finding 7), both generated from the command
 * tree: the scripts `ockam-enroll completion bash|zsh|fish` prints are loaded into the real
 * shells and asked to complete, for every command of the tree, its subcommands and every
 * flag; the man page renders without a warning and names every command and flag, and the
 * copy the package ships (docs/ockam-enroll.1) is the one the CLI generates today.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildProgram } from '../../src/cli/main.js';
import { allNodes, commandTree, type CommandNode } from '../../src/cli/tree.js';
import { childEnv, ok, removeTempHomes, run, show, tempHome } from '../helpers/cli.js';
import { patience } from '../helpers/pace.js';
import { REPO_ROOT } from '../helpers/paths.js';

after(() => removeTempHomes());

let nodes: CommandNode[];
const dir = tempHome('completion');
before(async () => {
  nodes = allNodes(commandTree(await buildProgram()));
  // For value completion: a directory and a file to offer.
  mkdirSync(join(dir, 'homes'));
  writeFileSync(join(dir, 'card.txt'), 'OEC1:\n');
});

const flagsOf = (n: CommandNode) => n.options.flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined)).sort();
const subsOf = (n: CommandNode) => n.subcommands.map((s) => s.path.at(-1)!).sort();

/** Runs a shell script in dir; its stdout. */
async function shell(cmd: string, args: string[], input?: string): Promise<string> {
  const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', env: childEnv({ HOME: dir }), input, timeout: await patience(30_000) });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * The cases every shell is asked, as [words before the cursor, the word being typed], and
 * what each must offer (sorted).
 */
function cases(): { words: string[]; cur: string; expect: string[] }[] {
  const out: { words: string[]; cur: string; expect: string[] }[] = [];
  for (const n of nodes) {
    if (n.subcommands.length > 0) out.push({ words: n.path, cur: '', expect: subsOf(n) });
    out.push({ words: n.path, cur: '-', expect: flagsOf(n) });
  }
  // Values: listed words, a directory, a file; arguments with choices; a flag's value skipped.
  out.push({ words: ['enroller', 'onboard', '--eka'], cur: '', expect: ['v1', 'v2'] });
  out.push({ words: ['completion'], cur: '', expect: ['bash', 'fish', 'zsh'] });
  out.push({ words: ['enroller', 'approve', '--home'], cur: 'ho', expect: ['homes'] });
  out.push({ words: ['enroller', 'token', 'create', '--out'], cur: 'car', expect: ['card.txt'] });
  out.push({ words: ['enroller', '--help', 'bundle'], cur: 'f', expect: ['fetch'] });
  out.push({ words: ['enroller', 'bundle', 'fetch', '--count', '5'], cur: '--serv', expect: ['--service', '--service-key'] });
  out.push({ words: ['service'], cur: 'en', expect: ['enrollee', 'enroller'] });
  return out;
}

function compare(results: string[], label: string): void {
  const cs = cases();
  assert.equal(results.length, cs.length, `${label}: one answer per case`);
  const bad: string[] = [];
  cs.forEach((c, i) => {
    // zsh's compadd and bash's compgen filter by the typed prefix; the stubbed compadd does not.
    const got = results[i]!.split(/\s+/).filter((w) => w !== '' && w.startsWith(c.cur)).map((w) => w.replace(/\/$/, '')).sort();
    const want = c.expect.filter((w) => w.startsWith(c.cur)).sort();
    if (got.join(' ') !== want.join(' ')) bad.push(`ockam-enroll ${[...c.words, c.cur].join(' ')}<TAB>: got [${got.join(' ')}], want [${want.join(' ')}]`);
  });
  assert.deepEqual(bad, [], `${label}:\n${bad.join('\n')}`);
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

describe('ockam-enroll completion', () => {
  test('bash: the script completes every command and flag of the tree', async () => {
    const script = (await ok(['completion', 'bash'])).stdout;
    writeFileSync(join(dir, 'c.bash'), script);
    const lines = ['source ./c.bash'];
    for (const c of cases()) {
      const words = ['ockam-enroll', ...c.words, c.cur];
      lines.push(`COMP_WORDS=(${words.map(shq).join(' ')}); COMP_CWORD=${words.length - 1}; COMPREPLY=(); _ockam_enroll; echo "\${COMPREPLY[*]}"`);
    }
    const out = await shell('bash', ['--norc', '--noprofile', '-c', lines.join('\n')]);
    compare(out.split('\n').slice(0, -1), 'bash');
    // Loading it registers the function for the command.
    assert.match(await shell('bash', ['--norc', '-c', 'source ./c.bash; complete -p ockam-enroll']), /complete -F _ockam_enroll ockam-enroll/);
  });

  test('zsh: the script completes every command and flag of the tree (compadd and _files recorded, not drawn)', { skip: has('zsh') ? false : 'zsh is not installed (apt-get install zsh)' }, async () => {
    const script = (await ok(['completion', 'zsh'])).stdout;
    assert.match(script, /^#compdef ockam-enroll$/m);
    writeFileSync(join(dir, 'c.zsh'), script);
    // Outside an interactive completion, zsh's compadd cannot run: it is replaced by a
    // function that prints what it would add (and compdef by one that records the binding).
    const lines = ['compdef() { print -r -- "compdef $*" >&2; }', 'compadd() { [[ $1 == -- ]] && shift; print -rn -- "$* "; }', '_files() { local f; for f in ${PREFIX}*(N${1:+/}); do print -rn -- "$f "; done; }', 'source ./c.zsh'];
    for (const c of cases()) {
      const words = ['ockam-enroll', ...c.words, c.cur];
      lines.push(`words=(${words.map(shq).join(' ')}); CURRENT=${words.length}; PREFIX=${shq(c.cur)}; _ockam_enroll; print`);
    }
    const r = spawnSync('zsh', ['-f', '-c', lines.join('\n')], { cwd: dir, encoding: 'utf8', env: childEnv({ HOME: dir }), timeout: await patience(30_000) });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /compdef _ockam_enroll ockam-enroll/);
    compare(r.stdout.split('\n').slice(0, -1), 'zsh');
  });

  test('fish: complete -C completes every command and flag of the tree', { skip: has('fish') ? false : 'fish is not installed (apt-get install fish)' }, async () => {
    const script = (await ok(['completion', 'fish'])).stdout;
    writeFileSync(join(dir, 'c.fish'), script);
    const lines = ['source ./c.fish'];
    for (const c of cases()) lines.push(`echo (complete -C${shq(['ockam-enroll', ...c.words, c.cur].join(' '))} | string replace -r '\\t.*' '')`);
    const out = await shell('fish', ['--no-config', '-c', lines.join('\n')]);
    compare(out.split('\n').slice(0, -1), 'fish');
  });

  test('an unknown shell is a usage error', async () => {
    const r = await run(['completion', 'tcsh']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /bash, zsh, fish/);
  });
});

describe('ockam-enroll man', () => {
  test('docs/ockam-enroll.1, which the package ships, is what `ockam-enroll man` prints today', async () => {
    const generated = (await ok(['man'])).stdout;
    const shipped = readFileSync(join(REPO_ROOT, 'docs', 'ockam-enroll.1'), 'utf8');
    assert.ok(generated === shipped, 'docs/ockam-enroll.1 is out of date: run `npm run man`');
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { man: string; files: string[]; scripts: Record<string, string> };
    assert.equal(pkg.man, './docs/ockam-enroll.1');
    assert.ok(pkg.files.includes('docs'));
    assert.match(pkg.scripts.man ?? '', /ockam-enroll\.js man > docs\/ockam-enroll\.1/);
  });

  test('it renders without a warning, and names every command and flag', async () => {
    const page = join(REPO_ROOT, 'docs', 'ockam-enroll.1');
    if (has('groff')) {
      const g = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', page], { encoding: 'utf8', timeout: await patience(30_000) });
      assert.equal(g.status, 0, g.stderr);
      assert.equal(g.stderr, '', 'groff -ww warns about nothing');
    }
    const renderer = has('man') ? ['man', ['-l', page]] as const : has('mandoc') ? ['mandoc', ['-T', 'utf8', page]] as const : undefined;
    assert.ok(renderer, 'man or mandoc is installed');
    const r = spawnSync(renderer[0], [...renderer[1]], { encoding: 'utf8', env: childEnv({ MANWIDTH: '200', MAN_KEEP_FORMATTING: '0', MANPAGER: 'cat', PAGER: 'cat' }), timeout: await patience(30_000) });
    assert.equal(r.status, 0, r.stderr);
    // Rendered text: no bold/underline overstrikes, hyphens as typed.
    const text = r.stdout.replace(/.\x08/g, '').replace(/‐\n\s*/g, '').replace(/[‐−]/g, '-');
    assert.match(text, /^NAME\n\s+ockam-enroll - /m);
    const missing: string[] = [];
    for (const n of nodes.slice(1)) {
      const name = ['ockam-enroll', ...n.path].join(' ');
      if (!text.includes(name)) missing.push(name);
      if (n.subcommands.length > 0) continue;
      for (const o of n.options) if (!new RegExp(`^\\s+${o.flags.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?:\\s|$)`, 'm').test(text)) missing.push(`${name} ${o.flags}`);
    }
    assert.deepEqual(missing, [], 'every command and flag is in the page');
    for (const s of ['EXIT STATUS', 'ENVIRONMENT', 'OCKAM_ENROLL_HOME', 'SEE ALSO']) assert.ok(text.includes(s), s);
  });
});
