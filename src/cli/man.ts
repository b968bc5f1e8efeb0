/**
 * `ockam-enroll man`: the manual page, in roff (man(7) macros), generated from the command
 * tree (tree.ts) like the completion scripts (#22 finding 7). The package ships it as
 * docs/ockam-enroll.1 (package.json "man"), which `npm run man` writes and
 * test/cli/completion.test.ts keeps current; `man ockam-enroll` reads it after `npm i -g`.
 */
import type { Command } from 'commander';
import { allNodes, commandTree, rootOf, type CommandNode } from './tree.js';

/** roff-escapes text: backslashes, a leading dot or quote, hyphens, and anything not ASCII. */
function esc(text: string): string {
  const t = text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    // roff input is ASCII: other characters (…, ↔, —) as groff/mandoc Unicode escapes.
    .replace(/[^\x00-\x7f]/gu, (c) => `\\[u${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}]`);
  return t.replace(/^([.'])/gm, '\\&$1');
}

function optionLines(n: CommandNode): string[] {
  const out: string[] = [];
  for (const o of n.options) {
    out.push('.TP', `.B ${esc(o.flags)}`, esc(o.description));
  }
  return out;
}

/** The environment variables the CLI reads (README, "Common flags"). */
const ENVIRONMENT: [string, string][] = [
  ['OCKAM_ENROLL_HOME', 'the home directory, when --home is not given'],
  ['OCKAM_ENROLL_PASSPHRASE', 'the key passphrase, when no other passphrase source is given'],
  ['OCKAM_ENROLL_STORE', 'the service store: sqlite, or a postgres:// URL'],
  ['OCKAM_ENROLL_WORKERS', 'how many threads service start uses to check enrollment messages'],
  ['OCKAM_ENROLL_DEBUG', 'set to 1: print the error code and stack of a failure'],
  ['NO_COLOR', 'no colour in diagnostics'],
];

export function manPage(program: Command, version: string): string {
  const root = commandTree(program);
  const lines: string[] = [
    `.\\" Generated from the command tree by \`ockam-enroll man\`; do not edit (npm run man).`,
    `.TH OCKAM\\-ENROLL 1 "" "ockam\\-enroll ${esc(version)}" "User Commands"`,
    '.SH NAME',
    `ockam\\-enroll \\- ${esc(root.description)}`,
    '.SH SYNOPSIS',
    '.B ockam\\-enroll',
    '.I command',
    '.RI [ options ]',
    '.SH DESCRIPTION',
    esc(
      'An enrollment service, the enrollers it allows, and the enrollees (devices) they onboard: a device gets its own long-term identity, pinned to the service key, through an X3DH-based key agreement, or an X.509 client certificate through a one-time token. Stdout carries data only (results, --json objects); diagnostics go to stderr as "ockam-enroll: error: ..." with a "hint: ..." line.',
    ),
    '.SH COMMANDS',
  ];
  for (const n of allNodes(root).slice(1)) {
    const name = ['ockam-enroll', ...n.path].join(' ');
    if (n.subcommands.length > 0) {
      lines.push(`.SS ${esc(name)}`, esc(n.description), '.PP', `Commands: ${n.subcommands.map((s) => `\\fB${esc(s.path.at(-1)!)}\\fR`).join(', ')}.`);
      continue;
    }
    lines.push(`.SS ${esc(name)}`, `.B ${esc(name)}`, esc(n.usage), '.br', esc(n.description));
    if (n.args.length > 0) {
      lines.push('.PP', 'Arguments:');
      for (const a of n.args) lines.push('.TP', `.I ${esc(a.name)}${a.variadic ? '...' : ''}`, esc(`${a.required ? 'required' : 'optional'}${a.choices ? `: one of ${a.choices.join(', ')}` : ''}`));
    }
    lines.push('.PP', 'Options:', ...optionLines(n));
  }
  lines.push('.SH GLOBAL OPTIONS', ...optionLines(root));
  lines.push(
    '.SH EXIT STATUS',
    '.TP', '.B 0', 'success',
    '.TP', '.B 1', 'failure (a local error: a missing home, a bad file, a refused key)',
    '.TP', '.B 2', 'usage (a bad flag, a malformed card, bundle or key)',
    '.TP', '.B 3', 'rejected by the service',
    '.TP', '.B 4', 'cannot reach the service or the peer',
    '.TP', '.B 5', 'peer authentication failed (a wrong service key, a forged bundle)',
    '.SH ENVIRONMENT',
  );
  for (const [k, v] of ENVIRONMENT) lines.push('.TP', `.B ${esc(k)}`, esc(v));
  lines.push(
    '.SH FILES',
    '.TP', '.I ~/.ockam\\-enroll/', esc('the default home: service/, enroller/ and enrollee/ subdirectories, one per role'),
    '.TP', '.I ~/.config/ockam\\-enroll/config.json', esc('{"home": "/path"}: the home when neither --home nor OCKAM_ENROLL_HOME is given'),
    '.SH SEE ALSO',
    esc('The README of the package (its command reference lists every command and its output) and its docs/: docs/walkthrough.md, docs/cli.md, docs/protocol.md, docs/threat-model.md, docs/operations.md. Shell completion: ockam-enroll completion bash|zsh|fish.'),
    '',
  );
  return lines.join('\n');
}

export function register(program: Command, version: string): void {
  program
    .command('man')
    .description('print the manual page (roff), generated from the command tree')
    .addHelpText('after', '\nExample:\n  ockam-enroll man | man -l -      # read it; an installed package has it as `man ockam-enroll`\n')
    .action((_opts: unknown, cmd: Command) => {
      process.stdout.write(manPage(rootOf(cmd), version));
    });
}
