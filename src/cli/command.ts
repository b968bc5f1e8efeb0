/**
 * Shared wiring for commands: the common flags every command takes, and the action wrapper
 * that turns an EnrollError into `ockam-enroll: error: …` + `hint: …` and its exit status.
 */
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { EnrollError } from '../errors.js';
import { makeOutput, reportError, type Output } from './output.js';
import { resolveHome, type CommonOptions } from './options.js';
import { EXIT } from './exit-codes.js';

export interface Ctx {
  out: Output;
  home: string;
  opts: CommonOptions & Record<string, unknown>;
  /** The command itself (e.g. to tell a flag given from its default: getOptionValueSource). */
  cmd: Command;
}

/** Adds the flags every command takes, and an example to its --help. */
export function leaf(parent: Command, nameAndArgs: string, description: string, example: string): Command {
  return parent
    .command(nameAndArgs)
    .description(description)
    .option('--home <dir>', 'home directory (default: $OCKAM_ENROLL_HOME, else "home" in ~/.config/ockam-enroll/config.json, else ~/.ockam-enroll)')
    .option('--json', 'write machine-readable JSON to stdout')
    .option('-q, --quiet', 'no progress lines on stderr')
    .addOption(new Option('--passphrase-file <file>', 'read the key passphrase from FILE (mode 0600)'))
    .addOption(new Option('--passphrase-env <name>', 'read the key passphrase from env variable NAME (default OCKAM_ENROLL_PASSPHRASE when set)'))
    .addOption(new Option('--passphrase-prompt', 'prompt for the key passphrase on the terminal'))
    .addHelpText('after', `\nExample:\n  ${example.split('\n').join('\n  ')}\n`);
}

/**
 * The help text of a command group: a typical session with the group's commands, in the
 * order a person runs them, one complete command a line (`# …` says what it is for).
 * test/docs/help-examples.test.ts checks every line against the command tree.
 */
export function groupExamples(lines: readonly string[]): string {
  // Comments line up, except behind the odd long command, which would push them off the screen.
  const width = Math.max(...lines.map((l) => l.split('  # ')[0]!.length).filter((n) => n <= 64));
  const text = lines.map((l) => {
    const [cmd, comment] = l.split('  # ');
    return comment === undefined ? `  ${cmd}` : `  ${cmd!.padEnd(width)}  # ${comment}`;
  });
  return `\nExamples (a typical session):\n${text.join('\n')}\n`;
}

/** Wraps a command's action: builds the context, runs it, maps errors to exit statuses. */
export function action(fn: (ctx: Ctx, ...args: any[]) => Promise<void | number>) {
  return async (...args: any[]): Promise<void> => {
    const cmd = args[args.length - 1] as Command;
    const opts = cmd.opts() as CommonOptions & Record<string, unknown>;
    const out = makeOutput({ json: opts.json === true, quiet: opts.quiet === true });
    try {
      const home = await resolveHome(opts.home);
      const code = await fn({ out, home, opts, cmd }, ...args.slice(0, -2));
      process.exitCode = typeof code === 'number' ? code : EXIT.OK;
    } catch (err) {
      process.exitCode = reportError(err);
    }
  };
}

/** Most bytes a text argument may have (a bundle's text form is < 1300 characters). */
const MAX_TEXT_ARG = 64 * 1024;

/**
 * Reads all of standard input, asynchronously: a pipe whose writer is still starting up
 * has no data yet, and a synchronous read of a non-blocking stdin would fail with EAGAIN.
 */
async function readStdin(what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of process.stdin) {
      n += (chunk as Buffer).length;
      if (n > MAX_TEXT_ARG) throw new EnrollError('ERR_USAGE', `standard input is too large to hold a ${what}`);
      chunks.push(chunk as Buffer);
    }
  } catch (cause) {
    if (cause instanceof EnrollError) throw cause;
    throw new EnrollError('ERR_USAGE', `cannot read the ${what} from standard input: ${(cause as Error).message}`, { cause });
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads TEXT, @FILE or - (stdin) into a string. */
export async function readTextArg(value: string, what: string): Promise<string> {
  if (value === '-') return readStdin(what);
  if (value.startsWith('@')) {
    const path = value.slice(1);
    try {
      const text = readFileSync(path, 'utf8');
      if (text.length > MAX_TEXT_ARG) throw new EnrollError('ERR_USAGE', `${path} is too large to hold a ${what}`);
      return text;
    } catch (cause) {
      if (cause instanceof EnrollError) throw cause;
      throw new EnrollError('ERR_USAGE', `cannot read the ${what} from ${path}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`);
    }
  }
  return value;
}

/** Prints `text` as a QR code on stdout (refusing --json, where it makes no sense). */
export async function printQr(out: Output, text: string): Promise<void> {
  const qr = (await import('qrcode-terminal')).default;
  await new Promise<void>((resolve) => {
    qr.generate(text, { small: true }, (code: string) => {
      out.raw(code);
      resolve();
    });
  });
}

export function isoTime(seconds: number | null | undefined): string | null {
  return seconds == null ? null : new Date(seconds * 1000).toISOString();
}

/**
 * The trust-on-first-use warning, printed the one time a service key is pinned: when the
 * first successful exchange with that service pins it (roles/enroller/service-client.ts).
 */
export function warnTrusted(out: Output): (address: string, key: Uint8Array) => void {
  return (address, key) =>
    out.warn(`trusted the service key ${Buffer.from(key).toString('hex')} for ${address} on first use, and pinned it; compare it with the key \`service init\` printed`);
}
