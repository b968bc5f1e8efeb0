/**
 * The short authentication string's comparison, as a step of the flow (docs/protocol.md
 * "Short authentication string", docs/threat-model.md §3.1): the person at each end is asked
 * whether the other end shows the same string, and nothing is approved or sent before a yes,
 * as in Bluetooth numeric comparison (Core v5.3 Vol 3 Part H §2.3.5.6.2) and Matter's
 * commissioning. Without such a step a SAS only helps someone who happens to look.
 *
 * Where the answer comes from, in order:
 * 1. stdin, when it is a terminal (and not the channel: `--stdio`);
 * 2. stdin, when it is a pipe or a file (and not the channel): answers typed by a wrapper
 *    (`printf 'y\n' | …`), one line per question; they are echoed to stderr, so a log shows
 *    what was answered;
 * 3. the controlling terminal (/dev/tty), as ssh and sudo do, when stdin is not usable;
 * 4. none: the command refuses to start (ERR_USAGE) rather than approve or hang.
 * Every question is bounded by the command's --timeout: an unanswered one is a no.
 */
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { isatty, ReadStream } from 'node:tty';
import type { Readable } from 'node:stream';
import { EnrollError } from '../errors.js';
import { PROG } from './output.js';

/** Longest answer line read; anything longer is a no (and is not kept). */
const MAX_ANSWER = 64;

export type AnswerSource = { kind: 'stdin-tty' } | { kind: 'stdin-pipe' } | { kind: 'tty' };

/**
 * Where answers would come from (see the module comment), or undefined when there is no
 * way to ask. `stdinIsChannel`: stdin carries the protocol (`--stdio`).
 */
export function answerSource(stdinIsChannel: boolean): AnswerSource | undefined {
  if (!stdinIsChannel) {
    if (process.stdin.isTTY === true) return { kind: 'stdin-tty' };
    try {
      const st = fstatSync(0);
      if (st.isFIFO() || st.isFile() || st.isSocket()) return { kind: 'stdin-pipe' };
    } catch {
      // stdin closed: fall through to the terminal
    }
  }
  try {
    const fd = openSync('/dev/tty', 'r+');
    const ok = isatty(fd);
    closeSync(fd);
    if (ok) return { kind: 'tty' };
  } catch {
    // no controlling terminal (daemon, CI, setsid)
  }
  return undefined;
}

/** Lines of stdin, shared by every question of this process (a pipe may hold several answers). */
class LineQueue {
  readonly #lines: string[] = [];
  readonly #waiters: ((line: string | undefined) => void)[] = [];
  #buf = '';
  #ended = false;
  #started = false;

  constructor(private readonly input: Readable) {}

  /** The next line (undefined at end of input); `cancel` gives the wait up without losing a line. */
  next(): { line: Promise<string | undefined>; cancel: () => void } {
    if (!this.#started) {
      this.#started = true;
      this.input.setEncoding('utf8');
      this.input.on('data', (chunk: string) => {
        this.#buf += chunk;
        for (let i = this.#buf.indexOf('\n'); i >= 0; i = this.#buf.indexOf('\n')) {
          this.#push(this.#buf.slice(0, i).replace(/\r$/, ''));
          this.#buf = this.#buf.slice(i + 1);
        }
        // An endless line is not an answer: cut it, so it cannot grow without bound.
        if (this.#buf.length > MAX_ANSWER) {
          this.#push(this.#buf);
          this.#buf = '';
        }
      });
      const end = (): void => {
        if (this.#ended) return;
        if (this.#buf.length > 0) this.#push(this.#buf);
        this.#buf = '';
        this.#ended = true;
        for (const w of this.#waiters.splice(0)) w(undefined);
      };
      this.input.on('end', end);
      this.input.on('close', end);
      this.input.on('error', end);
    }
    const none = { cancel: () => undefined };
    const line = this.#lines.shift();
    if (line !== undefined) return { line: Promise.resolve(line), ...none };
    if (this.#ended) return { line: Promise.resolve(undefined), ...none };
    this.#hold(true);
    let waiter!: (line: string | undefined) => void;
    const p = new Promise<string | undefined>((resolve) => (waiter = resolve));
    this.#waiters.push(waiter);
    return {
      line: p,
      // A question given up: its waiter goes, and the stream pauses so the process can exit.
      cancel: () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        if (this.#waiters.length === 0) this.#hold(false);
      },
    };
  }

  /**
   * Reads while a question waits; between questions the stream is paused and its handle
   * unreferenced, so an open pipe on stdin does not keep the process alive once it is done.
   */
  #hold(on: boolean): void {
    const handle = this.input as Readable & { ref?: () => void; unref?: () => void };
    if (on) {
      handle.ref?.();
      this.input.resume();
    } else {
      this.input.pause();
      handle.unref?.();
    }
  }

  #push(line: string): void {
    const w = this.#waiters.shift();
    if (w) {
      w(line);
      if (this.#waiters.length === 0) this.#hold(false);
    } else this.#lines.push(line);
  }
}

let stdinLines: LineQueue | undefined;

function isYes(line: string | undefined): boolean {
  return line !== undefined && /^\s*(y|yes)\s*$/i.test(line.slice(0, MAX_ANSWER));
}

export interface AskOptions {
  source: AnswerSource;
  /** A question unanswered this long is a no (ERR_TIMEOUT). */
  timeoutMs: number;
  /** Gives the question up (e.g. the peer went away): resolves to false. */
  signal?: AbortSignal;
}

/**
 * Asks `question` (`… [y/N] `) and resolves to true only for `y` or `yes`. Anything else,
 * end of input or an abort is a no; no answer within `timeoutMs` rejects with ERR_TIMEOUT.
 */
export async function askYesNo(question: string, opts: AskOptions): Promise<boolean> {
  const prompt = `${PROG}: ${question} [y/N] `;
  let ttyFd: number | undefined;
  let input: Readable;
  let queue: LineQueue;
  let write: (s: string) => void = (s) => void process.stderr.write(s);
  if (opts.source.kind === 'tty') {
    ttyFd = openSync('/dev/tty', 'r+');
    const fd = ttyFd;
    if (!process.stderr.isTTY) write = (s) => void writeSync(fd, s);
    input = new ReadStream(ttyFd);
    queue = new LineQueue(input);
  } else {
    input = process.stdin;
    queue = stdinLines ??= new LineQueue(process.stdin);
  }
  write(prompt);
  let pending: { cancel: () => void } | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const answer = await new Promise<string | undefined>((resolve, reject) => {
      if (opts.signal?.aborted) return resolve(undefined);
      opts.signal?.addEventListener('abort', () => resolve(undefined), { once: true });
      timer = setTimeout(
        () => reject(new EnrollError('ERR_TIMEOUT', `no answer within ${Math.round(opts.timeoutMs / 1000)} s; taken as no`, { hint: 'answer y or n; --timeout sets how long the question waits' })),
        opts.timeoutMs,
      );
      const next = queue.next();
      pending = next;
      next.line.then(resolve, () => resolve(undefined));
    });
    // A piped answer is not echoed by a terminal: echo it, so the log shows what was answered.
    if (opts.source.kind === 'stdin-pipe') write(`${answer === undefined ? '' : answer.slice(0, MAX_ANSWER)}\n`);
    else if (answer === undefined) write('\n');
    return isYes(answer);
  } catch (err) {
    write('\n');
    throw err;
  } finally {
    clearTimeout(timer);
    pending?.cancel();
    if (ttyFd !== undefined) input.destroy(); // closes ttyFd
  }
}

/** The refusal when nobody can be asked (answerSource() found nothing). */
export function noTerminalError(what: string, hint: string): EnrollError {
  return new EnrollError('ERR_USAGE', `cannot ask to compare the short authentication string: ${what}`, { hint });
}
