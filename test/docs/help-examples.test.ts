/**
 * The help of every command group (`ockam-enroll service --help`, `service enrollee --help`,
 * …) ends with an "Examples" block: a typical session, one command a line. Each line is
 * checked against the command tree: it names a real leaf command, every flag is one that
 * command takes (with its value when it needs one), and it has as many arguments as the
 * command accepts. Placeholders such as `<id>` stand for one argument.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main.js';
import { run, show } from '../helpers/cli.js';

const HEADING = 'Examples (a typical session):';

/** Splits a command line into words the way sh would for these simple lines (quotes, no expansion). */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** Checks one example line against the tree; returns the leaf's path, or throws saying what is wrong. */
function check(program: Command, line: string): string[] {
  const cmdText = line.split('  # ')[0]!.split(/ [<>] /)[0]!.trim();
  const argv = words(cmdText);
  assert.equal(argv.shift(), 'ockam-enroll', `"${line}" starts with ockam-enroll`);
  let cmd = program;
  const path: string[] = [];
  while (argv.length > 0) {
    const sub = cmd.commands.find((c) => c.name() === argv[0]);
    if (!sub) break;
    cmd = sub;
    path.push(argv.shift()!);
  }
  assert.ok(cmd.commands.length === 0 && path.length > 0, `"${line}": "${path.join(' ')}" is not a command (next word: ${argv[0]})`);
  const positionals: string[] = [];
  while (argv.length > 0) {
    const w = argv.shift()!;
    if (!w.startsWith('-')) {
      positionals.push(w);
      continue;
    }
    const opt = cmd.options.find((o) => o.long === w || o.short === w);
    assert.ok(opt, `"${line}": ockam-enroll ${path.join(' ')} has no option ${w}`);
    if (opt.required) assert.ok(argv.shift() !== undefined, `"${line}": ${w} needs a value`);
  }
  const args = cmd.registeredArguments;
  const needed = args.filter((a) => a.required).length;
  const most = args.some((a) => a.variadic) ? Infinity : args.length;
  assert.ok(positionals.length >= needed && positionals.length <= most, `"${line}": ockam-enroll ${path.join(' ')} takes ${needed}..${most} arguments, the example gives ${positionals.length}`);
  return path;
}

test('every command group shows a typical session in its --help, and every line of it is a valid command', async () => {
  const program = await buildProgram();
  const groups: string[][] = [];
  const walk = (cmd: Command, prefix: string[]) => {
    for (const sub of cmd.commands) {
      if (sub.name() === 'help') continue;
      const p = [...prefix, sub.name()];
      if (sub.commands.length > 0) groups.push(p);
      walk(sub, p);
    }
  };
  walk(program, []);
  const leaves = (g: string[]): number => {
    let cmd = program;
    for (const w of g) cmd = cmd.commands.find((c) => c.name() === w)!;
    const count = (c: Command): number => (c.commands.length === 0 ? 1 : c.commands.filter((s) => s.name() !== 'help').reduce((n, s) => n + count(s), 0));
    return count(cmd);
  };
  for (const must of ['service', 'enroller', 'enrollee', 'credential', 'service enroller', 'service enrollee', 'service audit', 'enroller bundle']) {
    assert.ok(groups.some((g) => g.join(' ') === must), `${must} is a group`);
  }
  const bad: string[] = [];
  await Promise.all(
    groups.map(async (g) => {
      const r = await run([...g, '--help']);
      const name = `ockam-enroll ${g.join(' ')} --help`;
      if (r.code !== 0) return void bad.push(`${name}: ${show(r)}`);
      const lines = r.stdout.split('\n');
      const at = lines.indexOf(HEADING);
      if (at < 0) return void bad.push(`${name}: no "${HEADING}" block`);
      const block: string[] = [];
      for (const l of lines.slice(at + 1)) {
        if (!l.startsWith('  ')) break;
        block.push(l.trim());
      }
      if (block.length < 2) return void bad.push(`${name}: the session has ${block.length} line(s); show at least two commands`);
      let inGroup = 0;
      for (const l of block) {
        try {
          const path = check(program, l);
          if (g.every((w, i) => path[i] === w)) inGroup++;
        } catch (e) {
          bad.push(`${name}: ${(e as Error).message}`);
        }
      }
      // At least two lines use the group's own commands (one, for a group of one command).
      const own = Math.min(2, leaves(g));
      if (inGroup < own) bad.push(`${name}: fewer than ${own} of its lines use the group's own commands`);
    }),
  );
  assert.deepEqual(bad, [], bad.join('\n'));
});

test('the top-level help shows one onboarding in the order it runs, `service enroller allow` included, every line a valid command', async () => {
  const { TOP_EXAMPLE, TOP_EXAMPLE_HEADING } = await import('../../src/cli/main.js');
  const program = await buildProgram();
  const r = await run(['--help']);
  assert.equal(r.code, 0, show(r));
  const lines = r.stdout.split('\n');
  const at = lines.indexOf(TOP_EXAMPLE_HEADING);
  assert.ok(at >= 0, r.stdout);
  const shown = lines.slice(at + 1).filter((l) => l.startsWith('  ')).map((l) => l.trim());
  assert.deepEqual(shown, TOP_EXAMPLE);
  const paths = shown.map((l) => check(program, l.replace(/^[a-z]+\$\s+/, '')).join(' '));
  assert.deepEqual(paths, ['service init', 'service start', 'enroller init', 'service enroller allow', 'enroller bundle fetch', 'enroller onboard', 'enrollee init', 'enrollee join']);
  // No step is left as a comment for the reader to work out.
  assert.ok(shown.every((l) => !l.includes('#')), shown.join('\n'));
  // docs/cli.md runs these very lines, in order (test/docs/docs.test.ts runs its blocks).
  const { blocks } = await import('./markdown.js');
  const { join } = await import('node:path');
  const { REPO_ROOT } = await import('../helpers/paths.js');
  const ran = blocks(join(REPO_ROOT, 'docs', 'cli.md')).filter((b) => b.mark?.kind === 'run' && b.mark.attrs.session === 'help-example');
  assert.equal(ran.length, 1, 'docs/cli.md has one help-example block');
  assert.deepEqual(ran[0]!.lines.filter((l) => l.trim() !== ''), TOP_EXAMPLE);
});
