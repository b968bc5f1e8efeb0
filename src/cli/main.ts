/**
 * The `ockam-enroll` command tree. Every leaf command lives in its own file and registers
 * itself here; this file only builds the tree and maps commander's usage errors to exit 2.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { EXIT } from './exit-codes.js';
import { groupExamples } from './command.js';
import { failureObject, PROG } from './output.js';
type Registrar = { register(parent: Command): void };
type Loader = () => Promise<Registrar>;
/** A leaf's (or subgroup's) name in its group, and the file that registers it. */
type Entry = readonly [name: string, load: Loader];

/**
 * Each group's command files, loaded only when that group is invoked (or for top-level
 * help): start-up cost is dominated by module loading, and a device running
 * `enrollee card` should not pay for the service's HTTPS stack.
 */
const GROUPS: Record<'service' | 'enroller' | 'enrollee' | 'credential', { description: string; examples: string[]; commands: Entry[] }> = {
  service: {
    description: 'the enrollment service: bundles, approvals, enrollments',
    examples: [
      'ockam-enroll service init --address tcp://enroll.example.com:4100  # prints the service key, for enrollers to pin',
      'ockam-enroll service start  # serves until Ctrl-C; one line per decision on stderr',
      'ockam-enroll service enroller allow <enroller-key> --name "line 3 terminal"  # beside the running service',
      'ockam-enroll service enrollee list',
      'ockam-enroll service enrollee show <id>',
      'ockam-enroll service audit verify',
      'ockam-enroll service status  # the service at a glance',
      'ockam-enroll service backup --to store-backup.db  # while it runs',
    ],
    commands: [
      ['init', () => import('./service-init.js')],
      ['start', () => import('./service-start.js')],
      ['enroller', () => import('./service-enroller.js')],
      ['enrollee', () => import('./service-enrollee.js')],
      ['revocations', () => import('./service-revocations.js')],
      ['prekey', () => import('./service-prekey.js')],
      ['address', () => import('./service-address.js')],
      ['audit', () => import('./service-audit.js')],
      ['status', () => import('./service-status.js')],
      ['backup', () => import('./service-backup.js')],
      ['restore', () => import('./service-restore.js')],
      ['outlet', () => import('./service-outlet.js')],
    ],
  },
  enroller: {
    description: 'the terminal or phone next to the device',
    examples: [
      'ockam-enroll enroller init  # prints the key the service allows',
      'ockam-enroll enroller bundle fetch --service tcp://enroll.example.com:4100 --count 5 --service-key <service-key>',
      'ockam-enroll enroller onboard --listen 10.0.0.5:4200 --name "Robot Axiom"  # asks to compare the strings; the device joins with --enroller tcp://10.0.0.5:4200',
      'ockam-enroll enroller approve @card.txt > bundle.txt  # or offline: approve a card, hand over the bundle',
      'ockam-enroll enroller bundle list  # which bundle went to which device',
    ],
    commands: [
      ['init', () => import('./enroller-init.js')],
      ['bundle', () => import('./enroller-bundle.js')],
      ['approve', () => import('./enroller-approve.js')],
      ['onboard', () => import('./enroller-onboard.js')],
      ['token', () => import('./enroller-token.js')],
    ],
  },
  enrollee: {
    description: 'the device being onboarded',
    examples: [
      'ockam-enroll enrollee init --name "Robot Axiom"  # prints the card',
      'ockam-enroll enrollee join --enroller tcp://10.0.0.5:4200  # or --bundle @bundle.txt, --stdio, --token @sensor-12.jwt',
      'ockam-enroll enrollee status  # over a channel authenticated by both long-term keys',
      'ockam-enroll enrollee rotate  # a new identity key, proved with the old one',
    ],
    commands: [
      ['init', () => import('./enrollee-init.js')],
      ['card', () => import('./enrollee-card.js')],
      ['join', () => import('./enrollee-join.js')],
      ['status', () => import('./enrollee-status.js')],
      ['renew', () => import('./enrollee-renew.js')],
      ['rotate', () => import('./enrollee-rotate.js')],
      ['inlet', () => import('./enrollee-inlet.js')],
      ['outlet', () => import('./enrollee-outlet.js')],
    ],
  },
  credential: {
    description: 'check an enrollee\'s credential offline, with the service key',
    examples: [
      'ockam-enroll credential verify @credential.txt --service-key <service-key>  # a credential copied from the device',
      'ockam-enroll credential verify @credential.txt  # on an enrolled device: checked against its own service key',
    ],
    commands: [['verify', () => import('./credential-verify.js')]],
  },
};

/**
 * The top-level help's example: one onboarding, in the order the commands must run, each
 * line in the terminal its prompt names. On one machine, in one directory, it can be pasted
 * as it is (the keys pass through files); README.md's "Three-terminal walkthrough" is the
 * same session with its output, and docs/cli.md runs these very lines (test/docs).
 */
export const TOP_EXAMPLE_HEADING = 'Example (three terminals, in one directory; `service start` and `enroller onboard` keep running):';
export const TOP_EXAMPLE = [
  'service$  ockam-enroll service init --address tcp://127.0.0.1:4100 > service.key',
  'service$  ockam-enroll service start',
  'enroller$ ockam-enroll enroller init > enroller.key',
  'service$  ockam-enroll service enroller allow "$(cat enroller.key)" --name "line 3 terminal"',
  'enroller$ ockam-enroll enroller bundle fetch --service tcp://127.0.0.1:4100 --count 5 --service-key "$(cat service.key)"',
  'enroller$ ockam-enroll enroller onboard --listen 127.0.0.1:4200 --name "Robot Axiom"',
  'device$   ockam-enroll enrollee init --name "Robot Axiom"',
  'device$   ockam-enroll enrollee join --enroller tcp://127.0.0.1:4200',
];

/**
 * `--store` on every command that opens the service's store (every `service` leaf): the
 * SQLite file of the home (default) or a PostgreSQL database shared by replicas.
 */
function addStoreOption(cmd: Command): void {
  if (cmd.commands.length === 0) {
    cmd.option('--store <url>', 'the store: "sqlite" (store.db in the home) or postgres://USER@HOST:PORT/DB (default: $OCKAM_ENROLL_STORE, else the home\'s store setting, else sqlite)');
    return;
  }
  cmd.commands.forEach(addStoreOption);
}

/** The first two words that are not options: the group and the command the user asked for, if any. */
function invokedWords(argv: readonly string[]): [string | undefined, string | undefined] {
  const words = argv.slice(2).filter((a) => !a.startsWith('-'));
  return [words[0], words[1]];
}

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Builds the command tree; with `argv`, only the part the invocation needs. */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const program = new Command(PROG)
    .description('secure device onboarding: an enrollment service, enrollers, and enrollees')
    .version(version(), '-V, --version')
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ outputError: (str, write) => write(`${PROG}: ${str}`) })
    .addHelpText(
      'after',
      `
Exit codes: 0 ok, 1 failure, 2 usage, 3 rejected by the service, 4 cannot reach, 5 peer authentication failed.

${TOP_EXAMPLE_HEADING}
${TOP_EXAMPLE.map((l) => `  ${l}`).join('\n')}`,
    );

  // Register only the invoked command (or the invoked group's commands when no known command
  // of it is named: its help, a typo that needs the list); everything when no known group is
  // named (top-level help, a typo). Each command file loads what it needs, and a spawn of
  // `service enrollee list` should not load the server, the pool and the HTTPS stack.
  const [wanted, wantedLeaf] = invokedWords(argv);
  const all = wanted === undefined || !(wanted in GROUPS || wanted === 'demo');
  for (const [name, group] of Object.entries(GROUPS)) {
    const cmd = program.command(name).description(group.description).addHelpText('after', groupExamples(group.examples));
    if (all || wanted === name) {
      const one = all ? undefined : group.commands.find(([leaf]) => leaf === wantedLeaf);
      const chosen = one ? [one] : group.commands;
      for (const mod of await Promise.all(chosen.map(([, load]) => load()))) mod.register(cmd);
    }
    if (name === 'service') addStoreOption(cmd);
  }
  if (all || wanted === 'demo') (await import('./demo.js')).register(program);
  // Generated from the whole tree, which `all` has loaded when either is invoked.
  if (all) {
    (await import('./completion.js')).register(program);
    (await import('./man.js')).register(program, version());
  }

  // One way to print defaults in every --help (#22 finding 9): `(default: 1h)`, as the
  // descriptions that name a default in words do, not commander's JSON `(default: "1h")`.
  const plainDefaults = (cmd: Command) => {
    for (const o of cmd.options) {
      if (o.defaultValueDescription === undefined && (typeof o.defaultValue === 'string' || typeof o.defaultValue === 'number')) o.defaultValueDescription = String(o.defaultValue);
    }
    cmd.commands.forEach(plainDefaults);
  };
  plainDefaults(program);

  // Usage errors exit 2 wherever they occur in the tree.
  const exitOverride = (cmd: Command) => {
    cmd.exitOverride();
    cmd.commands.forEach(exitOverride);
  };
  exitOverride(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  // A reader that goes away (`… | head`) ends our output, not with a stack trace. In
  // --stdio mode stdout is the channel and its own errors are the connection's to report.
  if (!argv.includes('--stdio')) {
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(process.exitCode ?? 0);
    });
  }
  const program = await buildProgram(argv);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version "fail" with exit code 0.
      process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      // A usage error of a `--json` invocation still gives the script an object to parse.
      if (err.exitCode !== 0 && argv.includes('--json') && !argv.includes('--stdio')) {
        process.stdout.write(`${JSON.stringify(failureObject('ERR_USAGE', err.message.replace(/^error: /, ''), 'add --help for usage'))}\n`);
      }
      return;
    }
    throw err;
  }
}
