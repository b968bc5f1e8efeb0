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

function compare(results: string[], label: string, cs = cases(), offered = false): void {
  assert.equal(results.length, cs.length, `${label}: one answer per case`);
  const bad: string[] = [];
  cs.forEach((c, i) => {
    // bash's compgen and fish's complete -C are asked for candidates (filtered here by the
    // typed prefix); `offered`: results are what the shell listed, after its own filtering.
    const got = results[i]!.split(/\s+/).filter((w) => w !== '' && (offered || w.startsWith(c.cur))).map((w) => w.replace(/\/$/, '')).sort();
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

  // zsh: the real completion system (compinit, the zsh/complist listing) in a real interactive
  // shell on a pseudo-terminal (the zsh/zpty module), asked as a user asks, by a key: each
  // case's line is typed and TAB (bound to list-choices) lists what would be offered. The
  // listing's colour codes are set to markers (list-colors no=/fi=/di=…, ec=), so each match
  // the real compadd and _files kept is read back as <M>match</M>. Loaded both ways the
  // script's header names: sourced after compinit, and autoloaded as _ockam-enroll from $fpath.
  for (const how of ['source', 'fpath'] as const) {
    test(`zsh: compinit and a pty shell complete every command and flag of the tree (${how === 'source' ? 'source <(ockam-enroll completion zsh)' : '_ockam-enroll in $fpath'})`, { skip: has('zsh') ? false : 'zsh is not installed (apt-get install zsh)' }, async () => {
      const script = (await ok(['completion', 'zsh'])).stdout;
      assert.match(script, /^#compdef ockam-enroll$/m);
      mkdirSync(join(dir, 'zfunc'), { recursive: true });
      writeFileSync(join(dir, 'c.zsh'), script);
      writeFileSync(join(dir, 'zfunc', '_ockam-enroll'), script);
      const setup = [
        "PS1='<PROMPT>'; RPS1=''; PS2=''; LISTMAX=100000",
        ...(how === 'fpath' ? [`fpath=(${shq(join(dir, 'zfunc'))} $fpath)`] : []),
        `autoload -Uz compinit && compinit -u -d ${shq(join(dir, `.zcompdump-${how}`))} && zmodload zsh/complist`,
        ...(how === 'source' ? ['source ./c.zsh'] : []),
        "zstyle ':completion:*' list-colors 'no=<M>' 'fi=<M>' 'di=<M>' 'ln=<M>' 'ex=<M>' 'lc=' 'rc=' 'ec=</M>'",
        // TAB lists the choices, then marks the end of the listing (the marker split as below).
        "_list_then_mark() { zle list-choices; print -rn -- '<LIST''ED>'; }; zle -N _list_then_mark; bindkey '^I' _list_then_mark",
        // Which function compinit bound to the command (the marker is split so its echo does not match).
        "print -r -- \"<COMP>${_comps[ockam-enroll]}</CO\"'MP>'",
      ];
      const lines = [
        "zmodload zsh/zpty || { print -u2 'the zsh/zpty module is missing'; exit 3 }",
        'zpty z zsh -f -i',
        ...setup.map((l) => `zpty -w z ${shq(l)}`),
        "zpty -r z out '*</COMP>*' || exit 4",
        'print -rn -- "$out<CASE>"',
      ];
      // Sourced: every case. From $fpath (the same script, loaded another way): the top level,
      // one command's flags, and the value cases.
      const all = cases();
      const asked = how === 'source' ? all : all.filter((_c, i) => i < 2 || i >= all.length - 7);
      for (const c of asked) {
        const typed = ['ockam-enroll', ...c.words, c.cur].join(' ');
        // Type the line and TAB; once the listing is out, Ctrl-U (clear the line) and a command
        // whose output ends the case. (Keys sent before the listing is drawn would be typeahead,
        // and zle does not draw a listing while keys are waiting.)
        lines.push(
          `zpty -w -n z ${shq(typed)}$'\\t'`,
          "zpty -r z out '*<LISTED>*' || exit 5",
          'print -rn -- "$out"',
          `zpty -w -n z $'\\C-u'"print '<DO''NE>'"$'\\n'`,
          "zpty -r z out '*<DONE>*' || exit 6",
          'print -rn -- "$out<CASE>"',
        );
      }
      lines.push('zpty -d z');
      const r = spawnSync('zsh', ['-f', '-c', lines.join('\n')], { cwd: dir, encoding: 'utf8', env: childEnv({ HOME: dir, TERM: 'xterm' }), timeout: await patience(30_000) });
      assert.equal(r.status, 0, `zsh: exit ${r.status ?? r.signal}\n${r.stderr}\n${r.stdout.slice(-2000)}`);
      const [first, ...answers] = r.stdout.split('<CASE>').slice(0, -1);
      // Sourced, the script's compdef binds its function; from $fpath, compinit binds the file's.
      const bound = how === 'source' ? '_ockam_enroll' : '_ockam-enroll';
      assert.ok(first!.includes(`<COMP>${bound}</COMP>`), `compinit bound ${bound} to ockam-enroll: ${JSON.stringify(first!.slice(-300))}`);
      compare(answers.map((a) => [...a.matchAll(/<M>([^<]*)<\/M>/g)].map((m) => m[1]!).join(' ')), `zsh (${how})`, asked, true);
    });
  }

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
