/**
 * The command tree as data, read from commander's own objects: what `completion` and `man`
 * generate from, so neither can drift from the commands (#22 finding 7).
 */
import type { Command } from 'commander';

export interface OptionNode {
  /** As written: `-q, --quiet`, `--home <dir>`. */
  flags: string;
  long: string | undefined;
  short: string | undefined;
  /** The option takes a value (`<dir>` or `[dir]`). */
  takesValue: boolean;
  /** The value's placeholder without brackets: `dir`, `v1|v2`. */
  placeholder: string | undefined;
  description: string;
  /** What completes its value: listed words, a file, a directory, or nothing. */
  values: { kind: 'words'; words: string[] } | { kind: 'file' } | { kind: 'dir' } | { kind: 'none' };
}

export interface CommandNode {
  /** Words after `ockam-enroll`; [] for the program itself. */
  path: string[];
  description: string;
  usage: string;
  args: { name: string; required: boolean; variadic: boolean; choices: string[] | undefined }[];
  options: OptionNode[];
  subcommands: CommandNode[];
}

const HELP_OPTION: OptionNode = { flags: '-h, --help', long: '--help', short: '-h', takesValue: false, placeholder: undefined, description: 'display help for command', values: { kind: 'none' } };

/** What completes an option's value, from its choices or its placeholder. */
function valuesOf(choices: readonly string[] | undefined, placeholder: string | undefined): OptionNode['values'] {
  if (choices && choices.length > 0) return { kind: 'words', words: [...choices] };
  if (placeholder === undefined) return { kind: 'none' };
  // `<v1|v2>`: a choice of literal words; `<HOST:PORT|PORT>` is a shape, not words.
  if (/^[a-z0-9]+(?:\|[a-z0-9]+)+$/.test(placeholder)) return { kind: 'words', words: placeholder.split('|') };
  if (/^(?:file|FILE)$/.test(placeholder)) return { kind: 'file' };
  if (/^(?:dir|home)$/.test(placeholder)) return { kind: 'dir' };
  return { kind: 'none' };
}

export function commandTree(cmd: Command, path: string[] = []): CommandNode {
  // The description as --help shows it, with its default: `(default: 1h)`.
  const help = cmd.createHelp();
  const options: OptionNode[] = cmd.options
    .filter((o) => !o.hidden)
    .map((o) => {
      const placeholder = /[<[]([^>\]]+)[>\]]/.exec(o.flags)?.[1];
      return {
        flags: o.flags,
        long: o.long,
        short: o.short,
        takesValue: o.required || o.optional,
        placeholder,
        description: help.optionDescription(o),
        values: valuesOf(o.argChoices, placeholder),
      };
    });
  return {
    path,
    description: cmd.description(),
    usage: cmd.usage(),
    args: cmd.registeredArguments.map((a) => ({ name: a.name(), required: a.required, variadic: a.variadic, choices: a.argChoices ? [...a.argChoices] : undefined })),
    options: [...options, HELP_OPTION],
    subcommands: cmd.commands.filter((c) => c.name() !== 'help' && !(c as Command & { _hidden?: boolean })._hidden).map((c) => commandTree(c, [...path, c.name()])),
  };
}

/** Every node, parents before children. */
export function allNodes(root: CommandNode): CommandNode[] {
  return [root, ...root.subcommands.flatMap(allNodes)];
}

/** The program: the root of the tree the command `cmd` hangs in. */
export function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}
