/**
 * `ockam-enroll completion bash|zsh|fish`: a completion script generated from the command
 * tree (tree.ts), so every command and flag the CLI has is completed, and nothing it lacks
 * (#22 finding 7).
 *
 * Every script holds the same tables, as shell functions keyed by the command path
 * (`''`, `service`, `service enroller`, …): the subcommands, the flags, the flags that take
 * a value, what a flag's value completes to (listed words, @file, @dir), and the words a
 * positional argument may be. One small function per shell walks the words typed so far
 * (skipping flags and their values) to the deepest command path, then offers that path's
 * flags (after `-`), the values of the flag just typed, its subcommands, or its arguments.
 * The scripts run nothing: completing costs no node start-up.
 */
import { Argument, type Command } from 'commander';
import { EnrollError } from '../errors.js';
import { allNodes, commandTree, rootOf, type CommandNode } from './tree.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

interface Tables {
  subs: [string, string[]][];
  opts: [string, string[]][];
  valued: [string, string[]][];
  /** [path, flag, value words or @file/@dir] */
  values: [string, string, string[]][];
  args: [string, string[]][];
}

function tables(root: CommandNode): Tables {
  const t: Tables = { subs: [], opts: [], valued: [], values: [], args: [] };
  for (const n of allNodes(root)) {
    const key = n.path.join(' ');
    if (n.subcommands.length) t.subs.push([key, n.subcommands.map((s) => s.path.at(-1)!)]);
    t.opts.push([key, n.options.flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined))]);
    const valued = n.options.filter((o) => o.takesValue);
    if (valued.length) t.valued.push([key, valued.flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined))]);
    for (const o of valued) {
      const words = o.values.kind === 'words' ? o.values.words : o.values.kind === 'file' ? ['@file'] : o.values.kind === 'dir' ? ['@dir'] : [];
      if (words.length) for (const f of [o.long, o.short]) if (f) t.values.push([key, f, words]);
    }
    const choices = n.args.flatMap((a) => a.choices ?? []);
    if (choices.length) t.args.push([key, choices]);
  }
  return t;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** A `case` function for bash and zsh: prints the words for its argument(s). */
function shCase(name: string, rows: [string, string[]][], arity: 1 | 2 = 1): string {
  const subject = arity === 1 ? '"$1"' : '"$1|$2"';
  return [`${name}() {`, `  case ${subject} in`, ...rows.map(([k, words]) => `    (${q(k)}) echo ${q(words.join(' '))} ;;`), '  esac', '}'].join('\n');
}

function fishSwitch(name: string, rows: [string, string[]][], arity: 1 | 2 = 1): string {
  const subject = arity === 1 ? '"$argv[1]"' : '"$argv[1]|$argv[2]"';
  return [`function ${name}`, `  switch ${subject}`, ...rows.map(([k, words]) => `    case ${q(k)}\n      printf '%s\\n' ${words.map(q).join(' ')}`), '  end', 'end'].join('\n');
}

const HEADER = (shell: Shell) => `# ockam-enroll completion for ${shell}, generated from its command tree by \`ockam-enroll completion ${shell}\`.`;

/**
 * The tree as five lookup functions of the shell (a `case` for bash and zsh, a `switch` for
 * fish) on the command path: subcommands, flags, flags that take a value, their values, and
 * argument choices.
 */
function lookups(t: Tables, lookup: (name: string, rows: [string, string[]][], arity?: 1 | 2) => string, prefix: string): string {
  const values = t.values.map(([k, f, w]): [string, string[]] => [`${k}|${f}`, w]);
  return [
    lookup(`${prefix}_subs`, t.subs),
    lookup(`${prefix}_opts`, t.opts),
    lookup(`${prefix}_valued`, t.valued),
    lookup(`${prefix}_values`, values, 2),
    lookup(`${prefix}_args`, t.args),
  ].join('\n');
}

function bash(t: Tables): string {
  return `${HEADER('bash')}
# Load it with: source <(ockam-enroll completion bash)   (or save it in ~/.local/share/bash-completion/completions/ockam-enroll)
${lookups(t, shCase, '_ockam_enroll')}
_ockam_enroll() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if [[ $w == -* ]]; then
      if [[ $w != *=* && " $(_ockam_enroll_valued "$path") " == *" $w "* ]]; then ((i++)); fi
    elif [[ " $(_ockam_enroll_subs "$path") " == *" $w "* ]]; then
      path="\${path:+$path }$w"
    fi
  done
  local prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if ((COMP_CWORD > 1)) && [[ $prev == -* && " $(_ockam_enroll_valued "$path") " == *" $prev "* ]]; then
    local v
    v="$(_ockam_enroll_values "$path" "$prev")"
    case "$v" in
      (@file) COMPREPLY=($(compgen -f -- "$cur")) ;;
      (@dir) COMPREPLY=($(compgen -d -- "$cur")) ;;
      (*) COMPREPLY=($(compgen -W "$v" -- "$cur")) ;;
    esac
    return 0
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_ockam_enroll_opts "$path")" -- "$cur"))
  else
    local subs
    subs="$(_ockam_enroll_subs "$path")"
    if [[ -n $subs ]]; then
      COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$(_ockam_enroll_args "$path")" -- "$cur"))
    fi
  fi
  return 0
}
complete -F _ockam_enroll ockam-enroll
`;
}

function zsh(t: Tables): string {
  return `#compdef ockam-enroll
${HEADER('zsh')}
# Load it with: source <(ockam-enroll completion zsh)   (after compinit), or save it as _ockam-enroll in a directory of $fpath
${lookups(t, shCase, '_ockam_enroll')}
_ockam_enroll() {
  local cur="\${words[CURRENT]}" path="" i w
  for ((i = 2; i < CURRENT; i++)); do
    w="\${words[i]}"
    if [[ $w == -* ]]; then
      if [[ $w != *=* && " $(_ockam_enroll_valued "$path") " == *" $w "* ]]; then ((i++)); fi
    elif [[ " $(_ockam_enroll_subs "$path") " == *" $w "* ]]; then
      path="\${path:+$path }$w"
    fi
  done
  local prev="\${words[CURRENT-1]}"
  if ((CURRENT > 2)) && [[ $prev == -* && " $(_ockam_enroll_valued "$path") " == *" $prev "* ]]; then
    local v="$(_ockam_enroll_values "$path" "$prev")"
    case "$v" in
      (@file) _files ;;
      (@dir) _files -/ ;;
      (*) compadd -- \${=v} ;;
    esac
    return
  fi
  if [[ $cur == -* ]]; then
    compadd -- \${=$(_ockam_enroll_opts "$path")}
  else
    local subs="$(_ockam_enroll_subs "$path")"
    if [[ -n $subs ]]; then
      compadd -- \${=subs}
    else
      compadd -- \${=$(_ockam_enroll_args "$path")}
    fi
  fi
}
# Autoloaded from $fpath, this file is the body of _ockam-enroll, run on every completion
# (zsh_eval_context says loadautofunc only on the first); sourced, it binds the function.
if [[ \${funcstack[1]} == _ockam-enroll ]]; then
  _ockam_enroll "$@"
else
  compdef _ockam_enroll ockam-enroll
fi
`;
}

function fish(t: Tables): string {
  return `${HEADER('fish')}
# Load it with: ockam-enroll completion fish | source   (or save it as ~/.config/fish/completions/ockam-enroll.fish)
${lookups(t, fishSwitch, '__ockam_enroll')}
function __ockam_enroll_complete
  set -l toks (commandline -opc)
  set -l cur (commandline -ct)
  set -l path ''
  set -l skip 0
  for w in $toks[2..-1]
    if test $skip = 1
      set skip 0
    else if string match -q -- '-*' $w
      if not string match -q -- '*=*' $w; and contains -- $w (__ockam_enroll_valued "$path")
        set skip 1
      end
    else if contains -- $w (__ockam_enroll_subs "$path")
      set path (string trim -- "$path $w")
    end
  end
  if test $skip = 1
    set -l v (__ockam_enroll_values "$path" $toks[-1])
    switch "$v"
      case @file
        __fish_complete_path $cur
      case @dir
        __fish_complete_directories $cur
      case '*'
        printf '%s\\n' $v
    end
    return
  end
  if string match -q -- '-*' $cur
    __ockam_enroll_opts "$path"
    return
  end
  set -l subs (__ockam_enroll_subs "$path")
  if test (count $subs) -gt 0
    printf '%s\\n' $subs
  else
    __ockam_enroll_args "$path"
  end
end
complete -c ockam-enroll -f -a '(__ockam_enroll_complete)'
`;
}

export function completionScript(program: Command, shell: Shell): string {
  const t = tables(commandTree(program));
  return shell === 'bash' ? bash(t) : shell === 'zsh' ? zsh(t) : fish(t);
}

export function register(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script (bash, zsh or fish), generated from the command tree')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(SHELLS))
    .addHelpText(
      'after',
      '\nExamples:\n  source <(ockam-enroll completion bash)      # in ~/.bashrc\n  source <(ockam-enroll completion zsh)       # in ~/.zshrc, after compinit\n  ockam-enroll completion fish | source       # in ~/.config/fish/config.fish\n',
    )
    .action((shell: string, _opts: unknown, cmd: Command) => {
      if (!(SHELLS as readonly string[]).includes(shell)) throw new EnrollError('ERR_USAGE', `no completion for ${shell}: choose bash, zsh or fish`);
      process.stdout.write(completionScript(rootOf(cmd), shell as Shell));
    });
}
