/**
 * Where a key file passphrase comes from. The CLI picks the source from its flags; the
 * keystore asks it only when a file is actually encrypted (or about to be).
 *
 * - `env`: an environment variable, OCKAM_ENROLL_PASSPHRASE unless named otherwise;
 * - `file`: a file read like a private key (0600, owned by the user; a symlink is followed
 *   so that mounted secrets work), with one trailing newline removed;
 * - `prompt`: the terminal, with echo off. Only when explicitly asked: a tool that blocks on
 *   a hidden prompt in a script is worse than one that fails with a hint;
 * - `none`: no passphrase; an encrypted key then fails with ERR_PASSPHRASE.
 *
 * The passphrase is never logged and never part of an error message.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { isatty, ReadStream } from 'node:tty';
import { EnrollError } from '../errors.js';
import { readPrivateFile } from './files.js';

/** The environment variable read by `{ kind: 'env' }` when no name is given. */
export const PASSPHRASE_ENV = 'OCKAM_ENROLL_PASSPHRASE';
/** Longest passphrase accepted from any source, in UTF-16 code units. */
export const MAX_PASSPHRASE_LENGTH = 1024;
const MAX_PASSPHRASE_FILE_BYTES = 64 * 1024;

export type PassphraseSource =
  | { kind: 'env'; name?: string }
  | { kind: 'file'; path: string }
  | { kind: 'prompt' }
  | { kind: 'none' };

const SOURCE_HINT = `set ${PASSPHRASE_ENV} or use --passphrase-file`;

export interface ResolvePassphraseOptions {
  /** Prompt text, written to the terminal. Default "passphrase: ". */
  prompt?: string;
  /** Prompt twice and require both to match (when choosing a new passphrase). */
  confirm?: boolean;
  /** Environment to read `env` sources from. Default process.env. */
  env?: Readonly<Record<string, string | undefined>>;
}

function checked(passphrase: string, where: string): string {
  if (passphrase.length === 0) {
    throw new EnrollError('ERR_PASSPHRASE', `the passphrase from ${where} is empty`, { hint: SOURCE_HINT });
  }
  if (passphrase.length > MAX_PASSPHRASE_LENGTH) {
    throw new EnrollError(
      'ERR_PASSPHRASE',
      `the passphrase from ${where} is longer than ${MAX_PASSPHRASE_LENGTH} characters`,
    );
  }
  return passphrase;
}

/**
 * Resolves `source` to a passphrase, or undefined for `{ kind: 'none' }`. A source that is
 * selected but yields nothing (unset variable, missing file, no terminal, empty input) is
 * ERR_PASSPHRASE with a hint, never a silent undefined.
 */
export async function resolvePassphrase(
  source: PassphraseSource,
  options: ResolvePassphraseOptions = {},
): Promise<string | undefined> {
  switch (source.kind) {
    case 'none':
      return undefined;
    case 'env': {
      const name = source.name ?? PASSPHRASE_ENV;
      const value = (options.env ?? process.env)[name];
      if (value === undefined) {
        throw new EnrollError('ERR_PASSPHRASE', `environment variable ${name} is not set`, { hint: SOURCE_HINT });
      }
      return checked(value, `environment variable ${name}`);
    }
    case 'file':
      return checked(readPassphraseFile(source.path), `file ${source.path}`);
    case 'prompt': {
      const prompt = options.prompt ?? 'passphrase: ';
      const first = checked(await promptHidden(prompt), 'the terminal');
      if (options.confirm) {
        const second = await promptHidden('repeat to confirm: ');
        if (second !== first) throw new EnrollError('ERR_PASSPHRASE', 'the two passphrases do not match');
      }
      return first;
    }
    default: {
      const never: never = source;
      throw new EnrollError('ERR_INVALID_ARG', `unknown passphrase source ${JSON.stringify(never)}`);
    }
  }
}

function readPassphraseFile(path: string): string {
  let bytes: Uint8Array;
  try {
    bytes = readPrivateFile(path, { followSymlinks: true, maxBytes: MAX_PASSPHRASE_FILE_BYTES });
  } catch (e) {
    if (e instanceof EnrollError && e.code === 'ERR_KEY_MISSING') {
      throw new EnrollError('ERR_PASSPHRASE', `passphrase file ${path} does not exist`, {
        cause: e,
        hint: 'check the path given to --passphrase-file',
      });
    }
    if (e instanceof EnrollError && e.code === 'ERR_KEYSTORE_CORRUPT') {
      throw new EnrollError('ERR_PASSPHRASE', `passphrase file ${path} is too large`, { cause: e });
    }
    throw e; // ERR_KEY_PERMISSIONS with its chmod hint, or ERR_KEYSTORE_IO
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (cause) {
    throw new EnrollError('ERR_PASSPHRASE', `passphrase file ${path} is not valid UTF-8`, { cause });
  } finally {
    bytes.fill(0);
  }
  // Exactly one trailing newline, as `echo` or an editor leaves it; other whitespace counts.
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}

/** The readable side of a terminal (or any stream, for tests). */
export interface HiddenLineInput {
  setEncoding(encoding: BufferEncoding): unknown;
  on(event: 'data', listener: (chunk: string) => void): unknown;
  on(event: 'end' | 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  removeListener(event: string, listener: (...args: any[]) => void): unknown;
  resume(): unknown;
  pause(): unknown;
  setRawMode?(mode: boolean): unknown;
  isTTY?: boolean;
}

/**
 * Reads one line from `input` without echo: the terminal is put in raw mode, so every key
 * arrives here and nothing is printed. Enter ends the line; Backspace/DEL erases one
 * character; Ctrl-U erases the line; Ctrl-C, or Ctrl-D on an empty line, cancels
 * (ERR_PASSPHRASE); escape sequences (arrow keys) and other control characters are ignored.
 * Raw mode is restored on every path.
 */
export function readHiddenLine(input: HiddenLineInput, write: (s: string) => void, prompt: string): Promise<string> {
  return new Promise<string>((resolvePromise, reject) => {
    const chars: string[] = [];
    let state: 'text' | 'esc' | 'csi' = 'text';
    const raw = input.isTTY === true && typeof input.setRawMode === 'function';

    const finish = (err: EnrollError | undefined): void => {
      input.removeListener('data', onData);
      input.removeListener('end', onEnd);
      input.removeListener('close', onEnd);
      input.removeListener('error', onError);
      input.pause();
      if (raw) input.setRawMode!(false);
      write('\n');
      if (err) {
        chars.fill('');
        reject(err);
      } else {
        const line = chars.join('');
        chars.fill('');
        resolvePromise(line);
      }
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (state === 'esc') {
          state = ch === '[' || ch === 'O' ? 'csi' : 'text';
          continue;
        }
        if (state === 'csi') {
          const c = ch.charCodeAt(0);
          if (c >= 0x40 && c <= 0x7e) state = 'text';
          continue;
        }
        switch (ch) {
          case '\r':
          case '\n':
            finish(undefined);
            return;
          case '\u0003': // Ctrl-C
            finish(new EnrollError('ERR_PASSPHRASE', 'passphrase entry cancelled'));
            return;
          case '\u0004': // Ctrl-D
            if (chars.length === 0) {
              finish(new EnrollError('ERR_PASSPHRASE', 'passphrase entry cancelled'));
              return;
            }
            break;
          case '\u007f': // DEL, what most terminals send for Backspace
          case '\b':
            chars.pop();
            break;
          case '\u0015': // Ctrl-U
            chars.length = 0;
            break;
          case '\u001b':
            state = 'esc';
            break;
          default:
            if (ch.charCodeAt(0) >= 0x20 && chars.length < MAX_PASSPHRASE_LENGTH) chars.push(ch);
        }
      }
    };
    const onEnd = (): void => finish(new EnrollError('ERR_PASSPHRASE', 'passphrase entry ended before Enter'));
    const onError = (cause: Error): void =>
      finish(new EnrollError('ERR_PASSPHRASE', 'cannot read the passphrase from the terminal', { cause }));

    // Raw mode before the prompt: keys typed as soon as it shows must not echo.
    if (raw) input.setRawMode!(true);
    write(prompt);
    input.setEncoding('utf8');
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('close', onEnd);
    input.on('error', onError);
    input.resume();
  });
}

/**
 * Prompts on the controlling terminal (/dev/tty), so that it works even when stdin and
 * stdout are pipes; falls back to stdin when that is a terminal. The prompt goes to stderr
 * when it is a terminal, else straight to the tty.
 */
async function promptHidden(prompt: string): Promise<string> {
  let fd: number | undefined;
  try {
    fd = openSync('/dev/tty', 'r+');
    if (!isatty(fd)) {
      closeSync(fd);
      fd = undefined;
    }
  } catch {
    fd = undefined; // no controlling terminal (daemon, CI, setsid) or no /dev/tty
  }
  if (fd !== undefined) {
    const ttyFd = fd;
    const write = process.stderr.isTTY
      ? (s: string) => void process.stderr.write(s)
      : (s: string) => void writeSync(ttyFd, s);
    const input = new ReadStream(ttyFd);
    try {
      return await readHiddenLine(input, write, prompt);
    } finally {
      input.destroy(); // closes ttyFd
    }
  }
  if (process.stdin.isTTY) {
    return readHiddenLine(process.stdin, (s) => void process.stderr.write(s), prompt);
  }
  throw new EnrollError('ERR_PASSPHRASE', 'cannot prompt for a passphrase: there is no terminal', {
    hint: SOURCE_HINT,
  });
}
