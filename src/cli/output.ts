/**
 * The CLI's output discipline (STYLE: age's rules):
 * - stdout carries data only: results, `--json` objects, QR codes;
 * - diagnostics go to stderr as `ockam-enroll: …`, errors as `ockam-enroll: error: …`
 *   followed by `hint: …` where one helps; lowercase, no final period;
 * - colour only on a terminal, and never when NO_COLOR is set (chalk honours both).
 */
import { Chalk } from 'chalk';
import { EnrollError } from '../errors.js';
import { EXIT, exitCodeFor } from './exit-codes.js';

export const PROG = 'ockam-enroll';

// chalk's own detection looks at stdout; diagnostics go to stderr, so decide for stderr.
const errChalk = new Chalk({ level: process.stderr.isTTY && !('NO_COLOR' in process.env) ? 1 : 0 });

export interface Output {
  readonly json: boolean;
  /** Writes a result: `human` as text, or `data` as one JSON object with --json. */
  result(data: Record<string, unknown>, human: string | (() => string)): void;
  /** A narration or progress line on stderr (suppressed by --quiet). */
  info(line: string): void;
  /** A warning on stderr, always shown. */
  warn(line: string): void;
  /** Raw data to stdout (QR codes, text forms). */
  raw(text: string): void;
}

export function makeOutput(opts: { json?: boolean; quiet?: boolean; resultsToStderr?: boolean }): Output {
  const json = opts.json === true;
  // In --stdio mode stdout is the protocol channel: the result must go to stderr.
  const results = opts.resultsToStderr ? process.stderr : process.stdout;
  return {
    json,
    result(data, human) {
      if (json) results.write(`${JSON.stringify(data)}\n`);
      else {
        const text = typeof human === 'function' ? human() : human;
        if (text) results.write(text.endsWith('\n') ? text : `${text}\n`);
      }
    },
    info(line) {
      if (!opts.quiet) process.stderr.write(`${errChalk.dim(`${PROG}:`)} ${line}\n`);
    },
    warn(line) {
      process.stderr.write(`${PROG}: ${errChalk.yellow('warning:')} ${line}\n`);
    },
    raw(text) {
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    },
  };
}

/**
 * The `--json` form of a failure (README §"Exit codes"): one object, so a script that asked
 * for JSON always has one to parse. The human message still goes to stderr.
 */
export function failureObject(code: string, message: string, hint: string | undefined): { ok: false; error: { code: string; message: string; hint: string | null } } {
  return { ok: false, error: { code, message, hint: hint ?? null } };
}

/**
 * Prints an error the CLI way and returns the exit status to use. With `json`, the failure
 * object is also written to `json` (stdout, or stderr where stdout is a protocol channel).
 */
export function reportError(err: unknown, debug = process.env.OCKAM_ENROLL_DEBUG === '1', json?: NodeJS.WritableStream): number {
  if (json) {
    const obj =
      err instanceof EnrollError
        ? failureObject(err.code, err.message, err.hint)
        : failureObject('ERR_INTERNAL', `internal error: ${(err as Error)?.message ?? String(err)}`, 'this is a bug; rerun with OCKAM_ENROLL_DEBUG=1 and report it');
    json.write(`${JSON.stringify(obj)}\n`);
  }
  if (err instanceof EnrollError) {
    process.stderr.write(`${PROG}: ${errChalk.red('error:')} ${err.message}\n`);
    if (err.hint) process.stderr.write(`${PROG}: ${errChalk.cyan('hint:')} ${err.hint}\n`);
    if (debug) process.stderr.write(`${PROG}: code: ${err.code}\n${err.stack ?? ''}\n`);
    return exitCodeFor(err.code);
  }
  const e = err as Error;
  process.stderr.write(`${PROG}: ${errChalk.red('error:')} internal error: ${e?.message ?? String(err)}\n`);
  process.stderr.write(`${PROG}: ${errChalk.cyan('hint:')} this is a bug; rerun with OCKAM_ENROLL_DEBUG=1 and report it\n`);
  if (debug && e?.stack) process.stderr.write(`${e.stack}\n`);
  return EXIT.FAILURE;
}

/**
 * A text table: a header row, then one row per item; each column as wide as its widest cell
 * (and at least `min[i]`), two spaces apart, no trailing blanks. Widths follow the cells, so
 * a longer state (`pending (expired)`) moves the next column for every row alike.
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], min: readonly number[] = []): string {
  const widths = header.map((h, i) => Math.max(min[i] ?? 0, h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
