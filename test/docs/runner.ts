/**
 * Runs the marked blocks of the documentation as a person would type them, and checks what
 * they print against what the documentation shows.
 *
 * - A session (the blocks of one file that share `session=NAME`, else one block) gets a fresh
 *   directory: the working directory of all its terminals (files such as card.txt pass
 *   between "machines" through it), and one HOME per terminal (`service$`, `enroller$`,
 *   `device$`, `$`, …), as if each terminal were its own machine.
 * - Each command runs through sh (pipes, redirections and `~` work), with `ockam-enroll` on
 *   PATH as the built binary. The ports the documentation uses (4100, 4200, 4443, …) are
 *   replaced by free loopback ports in commands, and mapped back in the output.
 * - Output is compared line by line, stdout and stderr each in order (their interleaving is
 *   not the documentation's to fix). Volatile parts are masked: keys, ids and fingerprints
 *   (hex), cards, bundles and credentials (`OEC1:`/`OEB1:`/`OEB2:`/`OECR1:`), tokens, times,
 *   short authentication strings, ephemeral ports, QR codes. A masked value seen once is
 *   bound: the same value later in the documentation must be the same value in the output,
 *   and a command that uses it (`service enroller allow <key>`, `service enrollee show
 *   093efc42`) gets the real one. `…` on a line of its own skips lines; within a line it
 *   matches anything.
 * - A command listed in `background="…"` (`service start`, `enroller onboard`, a
 *   `join --wait`) keeps running: the harness waits until the output shown for it has
 *   appeared (or, when none is shown, its first line), then goes on. Its later output is
 *   checked where the documentation shows it: an `output terminal=T` block, or a line
 *   `T$` with no command (`device$   # …and the waiting join finishes:`). Excerpts of a
 *   running process's output may leave lines out.
 * - `typed="CMD=ANSWER|CMD=ANSWER"`: a command that contains CMD gets ANSWER (lines separated
 *   by commas) on its stdin, as a person would type it at its questions (`[y/N]`).
 * - A command that fails must show its error (`ockam-enroll: error: …`) or be followed by
 *   `echo $?` in its terminal, which prints its real exit status.
 *
 * No fixed sleeps: every wait is for a process's exit or for a line, bounded by a timeout
 * derived from the measured start-up time of the binary.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { childEnv, freePort } from '../helpers/cli.js';
import { BIN } from '../helpers/paths.js';
import { PROMPT, type Block } from './markdown.js';

/** One thing to do: a command in a terminal, or more output from a terminal's running command. */
interface Entry {
  kind: 'cmd' | 'more';
  terminal: string;
  cmd: string;
  /** The output the documentation shows for it. */
  output: string[];
  /** The block line of the prompt (1-based within the file), for messages. */
  line: number;
  /** Shown output is an excerpt: lines may be left out anywhere. */
  excerpt: boolean;
}

export class DocError extends Error {}

/** Splits a run block into entries. */
export function entries(block: Block): Entry[] {
  const attrs = block.mark!.attrs;
  if (block.mark!.kind === 'output') {
    return [{ kind: 'more', terminal: attrs.terminal!, cmd: '', output: trimBlank(block.lines), line: block.line + 1, excerpt: true }];
  }
  if (attrs.command) {
    return [{ kind: 'cmd', terminal: attrs.terminal ?? '$', cmd: attrs.command, output: trimBlank(block.lines), line: block.line, excerpt: attrs.excerpt === 'true' }];
  }
  const out: Entry[] = [];
  let cur: Entry | undefined;
  const terminals = new Set<string>();
  block.lines.forEach((raw, i) => {
    const line = block.line + 1 + i;
    const p = PROMPT.exec(raw);
    const more = /^([a-z][\w-]*):$/.exec(raw);
    if (p) {
      const terminal = p[1] ?? '$';
      terminals.add(terminal);
      const cmd = (p[2] ?? '').replace(/\s+#(?:\s.*)?$/, '').replace(/^#.*$/, '').trim();
      cur = { kind: cmd === '' ? 'more' : 'cmd', terminal, cmd, output: [], line, excerpt: cmd === '' || attrs.excerpt === 'true' };
      out.push(cur);
    } else if (more && terminals.has(more[1]!)) {
      cur = { kind: 'more', terminal: more[1]!, cmd: '', output: [], line, excerpt: true };
      out.push(cur);
    } else if (raw.trim() === '') {
      cur = undefined;
    } else {
      if (!cur) throw new DocError(`line ${line}: output "${raw}" follows no command`);
      cur.output.push(raw);
    }
  });
  return out;
}

function trimBlank(lines: string[]): string[] {
  const l = [...lines];
  while (l.length && l[0]!.trim() === '') l.shift();
  while (l.length && l[l.length - 1]!.trim() === '') l.pop();
  return l;
}

// ---------------------------------------------------------------------------------------
// Matching shown output against real output.

type Bindings = ReadonlyMap<string, string>;

const TOKEN = new RegExp(
  [
    String.raw`(?<abbr>\b[0-9a-f]{8}…[0-9a-f]{4}\b)`,
    String.raw`(?<time>\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?Z)`,
    String.raw`(?<text>\bOE(?:CR1|C1|B1|B2):[A-Z2-7]+…?)`,
    String.raw`(?<jwt>\beyJ[\w-]*\.[\w-]*\.[\w-]*)`,
    String.raw`(?<addr>(?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):\d{2,5}\b)`,
    String.raw`(?<hex>\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b…?)`,
    String.raw`(?<sas>\b\d{4}-\d{4}\b)`,
    String.raw`(?<qr>^[▄▀█ ]+$)`,
    String.raw`(?<ell>…)`,
  ].join('|'),
  'gu',
);

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A regex for one shown line, and the documentation's values its capture groups bind. */
function lineRegex(shown: string, bound: Bindings, docPorts: ReadonlySet<string>): { re: RegExp; binds: string[] } {
  let src = '';
  const binds: string[] = [];
  let last = 0;
  const capture = (doc: string, pattern: string) => {
    const known = bound.get(doc);
    if (known !== undefined) return esc(known);
    binds.push(doc);
    return `(${pattern})`;
  };
  for (const m of shown.matchAll(TOKEN)) {
    src += esc(shown.slice(last, m.index));
    last = m.index! + m[0].length;
    const g = m.groups!;
    const t = m[0];
    if (g.abbr) {
      const full = [...bound.keys()].find((k) => k.length === 64 && k.startsWith(t.slice(0, 8)) && k.endsWith(t.slice(-4)));
      if (full) {
        const a = bound.get(full)!;
        src += esc(`${a.slice(0, 8)}…${a.slice(-4)}`);
      } else src += capture(t, '[0-9a-f]{8}…[0-9a-f]{4}');
    } else if (g.time) src += String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?Z`;
    else if (g.text) src += t.endsWith('…') ? `${esc(t.slice(0, 5))}[A-Z2-7]*.*?` : capture(t, `${esc(t.slice(0, t.indexOf(':') + 1))}[A-Z2-7]+`);
    else if (g.jwt) src += capture(t, String.raw`eyJ[\w-]*\.[\w-]*\.[\w-]*`);
    else if (g.addr) {
      const i = t.lastIndexOf(':');
      src += esc(t.slice(0, i + 1)) + (docPorts.has(t.slice(i + 1)) ? esc(t.slice(i + 1)) : String.raw`\d+`);
    } else if (g.hex) {
      // A shortened id (`service enrollee list` shows 16 digits) is the start of the full one.
      const full = [...bound.keys()].find((k) => k.length > t.length && k.startsWith(t) && /^[0-9a-f]+$/.test(k));
      if (t.endsWith('…')) src += `[0-9a-f]{${t.length - 1}}[0-9a-f]*.*?`;
      else if (full && !bound.has(t)) src += esc(bound.get(full)!.slice(0, t.length));
      else src += capture(t, `[0-9a-f]{${t.length}}`);
    }
    else if (g.sas) src += capture(t, String.raw`\d{4}-\d{4}`);
    else if (g.qr) src += '[▄▀█ ]+';
    else src += '.*?';
  }
  src += esc(shown.slice(last));
  return { re: new RegExp(`^${src}$`, 'u'), binds };
}

interface MatchResult {
  ok: boolean;
  /** New read positions in stdout and stderr. */
  a: number;
  b: number;
  bound: Bindings;
  /** When not ok: the first shown line no arrangement could match. */
  failedAt: number;
}

/**
 * Matches shown lines against stdout and stderr lines from positions a and b. `…` lines skip
 * lines; `excerpt` lets any line be skipped. Unless `excerpt` or `open` (a running process),
 * every real line must be shown.
 */
export function match(shown: string[], out: string[], err: string[], start: { a: number; b: number }, bound: Bindings, docPorts: ReadonlySet<string>, opts: { excerpt: boolean; open: boolean }): MatchResult {
  const memo = new Set<string>();
  let deepest = 0;
  const go = (i: number, a: number, b: number, bd: Bindings, skipping: boolean): MatchResult | undefined => {
    deepest = Math.max(deepest, i);
    const key = `${i},${a},${b},${skipping}`;
    if (memo.has(key)) return undefined;
    memo.add(key);
    if (i === shown.length) {
      if (skipping || opts.excerpt || opts.open || (a === out.length && b === err.length)) return { ok: true, a, b, bound: bd, failedAt: -1 };
      return undefined;
    }
    const s = shown[i]!.trimEnd();
    if (s.trim() === '…') return go(i + 1, a, b, bd, true);
    const { re, binds } = lineRegex(s, bd, docPorts);
    for (const [lines, pos, which] of [[err, b, 'err'], [out, a, 'out']] as const) {
      if (pos >= lines.length) continue;
      const m = re.exec(lines[pos]!);
      // A value the documentation shows as different must be different: a new documented
      // value may not bind to a real one already bound to another documented value.
      if (m && binds.every((doc, k) => ![...bd].some(([d, real]) => d !== doc && real === m[k + 1]))) {
        const nb = new Map(bd);
        binds.forEach((doc, k) => nb.set(doc, m[k + 1]!));
        const r = go(i + 1, which === 'out' ? a + 1 : a, which === 'err' ? b + 1 : b, nb, false);
        if (r) return r;
      }
    }
    if (skipping || opts.excerpt) {
      if (a < out.length) {
        const r = go(i, a + 1, b, bd, skipping);
        if (r) return r;
      }
      if (b < err.length) {
        const r = go(i, a, b + 1, bd, skipping);
        if (r) return r;
      }
    }
    return undefined;
  };
  return go(0, start.a, start.b, bound, false) ?? { ok: false, a: start.a, b: start.b, bound, failedAt: deepest };
}

// ---------------------------------------------------------------------------------------
// Processes.

interface Proc {
  cmd: string;
  child: ChildProcess;
  out: string[];
  err: string[];
  /** Partial last lines. */
  partial: { out: string; err: string };
  a: number;
  b: number;
  code: number | undefined;
  exited: Promise<number>;
  /** Called on every output chunk and on exit. */
  onChange: () => void;
  /** The exit status was looked at (`echo $?`) or is an expected failure. */
  observed: boolean;
  /** Started as a background command. */
  background: boolean;
}

let baselineMs: number | undefined;

/**
 * How long one command or one awaited line may take: 300 times the binary's measured
 * start-up (`--version`, the slowest of three), at least 30 s and at most 240 s. A loaded
 * machine slows both alike.
 */
export async function timeoutMs(): Promise<number> {
  if (baselineMs === undefined) {
    let worst = 0;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        const c = spawn(process.execPath, [BIN, '--version'], { stdio: 'ignore' });
        c.once('error', reject);
        c.once('exit', () => resolve());
      });
      worst = Math.max(worst, performance.now() - t0);
    }
    baselineMs = worst;
  }
  return Math.min(240_000, Math.max(30_000, 300 * baselineMs));
}

export class Session {
  readonly dir: string;
  private readonly binDir: string;
  private readonly homes = new Map<string, string>();
  /** Documentation port → real port. */
  private readonly ports = new Map<string, string>();
  private bound: Bindings = new Map();
  /** The processes each terminal started, in order. */
  private readonly procs = new Map<string, Proc[]>();
  private readonly all: Proc[] = [];
  private freshCount = 0;

  constructor(label: string) {
    this.dir = realpathSync(mkdtempSync(join(tmpdir(), `ockam-enroll-doc-${label.replace(/[^\w-]/g, '_')}-`)));
    this.binDir = join(this.dir, '.bin');
    mkdirSync(this.binDir);
    const wrapper = join(this.binDir, 'ockam-enroll');
    writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"\n`);
    chmodSync(wrapper, 0o755);
    mkdirSync(join(this.dir, 'work'));
  }

  /** Gives a terminal a new, empty HOME from now on: another machine under the same prompt. */
  fresh(terminal: string): void {
    const h = join(this.dir, 'homes', `${terminal === '$' ? 'user' : terminal}-${++this.freshCount}`);
    mkdirSync(h, { recursive: true, mode: 0o700 });
    this.homes.set(terminal, h);
  }

  /** Gives a terminal back the HOME it had first (the machine from before `fresh`). */
  back(terminal: string): void {
    this.homes.set(terminal, join(this.dir, 'homes', terminal === '$' ? 'user' : terminal));
  }

  private home(terminal: string): string {
    let h = this.homes.get(terminal);
    if (!h) {
      h = join(this.dir, 'homes', terminal === '$' ? 'user' : terminal);
      mkdirSync(h, { recursive: true, mode: 0o700 });
      this.homes.set(terminal, h);
    }
    return h;
  }

  private env(terminal: string): Record<string, string> {
    const env = childEnv({ HOME: this.home(terminal), PATH: `${this.binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`, XDG_CONFIG_HOME: join(this.home(terminal), '.config') });
    for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];
    return env;
  }

  private get docPorts(): ReadonlySet<string> {
    return new Set(this.ports.keys());
  }

  /** The command with documentation ports and values replaced by this session's. */
  private async substitute(cmd: string): Promise<string> {
    for (const m of cmd.matchAll(/(?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):(\d{2,5})\b/g)) {
      if (!this.ports.has(m[1]!)) this.ports.set(m[1]!, String(await freePort()));
    }
    let c = cmd.replace(/((?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):)(\d{2,5})\b/g, (_, host: string, p: string) => host + this.ports.get(p)!);
    c = c.replace(/\bOE(?:CR1|C1|B1|B2):[A-Z2-7]+|\beyJ[\w-]*\.[\w-]*\.[\w-]*/g, (t) => this.bound.get(t) ?? t);
    // Hex with a digit and a letter: ids and keys, never a port or a count.
    c = c.replace(/\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{4,}\b/g, (t) => {
      const exact = this.bound.get(t);
      if (exact !== undefined) return exact;
      const full = [...this.bound.keys()].find((k) => /^[0-9a-f]+$/.test(k) && k.length > t.length && k.startsWith(t));
      return full ? this.bound.get(full)!.slice(0, t.length) : t;
    });
    return c;
  }

  /** Real output → documentation form: real ports back to the documentation's, HOME to `~`. */
  private normalise(line: string, terminal: string): string {
    // Trailing blanks are invisible in a terminal, and so in the documentation.
    let l = line.trimEnd().split(this.home(terminal)).join('~');
    for (const [doc, real] of this.ports) l = l.replace(new RegExp(`((?:127\\.0\\.0\\.1|localhost|0\\.0\\.0\\.0|\\[::1\\]|::1):)${real}\\b`, 'g'), `$1${doc}`);
    return l;
  }

  private start(terminal: string, cmd: string, typed?: string): Proc {
    const child = spawn('/bin/sh', ['-c', cmd], { cwd: join(this.dir, 'work'), env: this.env(terminal), stdio: [typed === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], detached: true });
    // What the person types at the command's questions (`typed="CMD=ANSWER"`), one line each.
    if (typed !== undefined) child.stdin!.end(`${typed.split(',').join('\n')}\n`);
    const p: Proc = {
      cmd,
      child,
      out: [],
      err: [],
      partial: { out: '', err: '' },
      a: 0,
      b: 0,
      code: undefined,
      exited: undefined as unknown as Promise<number>,
      onChange: () => {},
      observed: false,
      background: false,
    };
    const feed = (which: 'out' | 'err') => (chunk: Buffer) => {
      const parts = (p.partial[which] + chunk.toString('utf8')).split('\n');
      p.partial[which] = parts.pop()!;
      p[which].push(...parts.map((l) => this.normalise(l, terminal)));
      p.onChange();
    };
    child.stdout!.on('data', feed('out'));
    child.stderr!.on('data', feed('err'));
    p.exited = new Promise<number>((resolve) => {
      child.once('close', (code, signal) => {
        for (const which of ['out', 'err'] as const) if (p.partial[which] !== '') p[which].push(this.normalise(p.partial[which], terminal));
        p.code = code ?? (signal ? 128 : 1);
        resolve(p.code);
        p.onChange();
      });
    });
    if (!this.procs.has(terminal)) this.procs.set(terminal, []);
    this.procs.get(terminal)!.push(p);
    this.all.push(p);
    return p;
  }

  /** Waits until `check` holds, re-checking on each output chunk and on exit; false on timeout. */
  private async until(p: Proc, check: () => boolean): Promise<boolean> {
    if (check()) return true;
    const limit = await timeoutMs();
    // The process may have printed or exited during the await above: look again first.
    if (check() || p.code !== undefined) return check();
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => {
        p.onChange = () => {};
        resolve(false);
      }, limit);
      p.onChange = () => {
        if (check()) {
          clearTimeout(t);
          p.onChange = () => {};
          resolve(true);
        } else if (p.code !== undefined) {
          clearTimeout(t);
          p.onChange = () => {};
          resolve(check());
        }
      };
    });
  }

  private fail(where: string, e: Entry, what: string, p?: Proc, from?: { a: number; b: number }): never {
    const real = p
      ? `\n--- stdout ---\n${p.out.slice(from?.a ?? 0).join('\n')}\n--- stderr ---\n${p.err.slice(from?.b ?? 0).join('\n')}${p.code !== undefined ? `\n--- exit ${p.code}` : '\n--- (still running)'}`
      : '';
    throw new DocError(`${where}:${e.line}: ${e.terminal === '$' ? '' : e.terminal}$ ${e.cmd || '(output)'}: ${what}${real}`);
  }

  /** Runs one entry; `next` is the rest of the block's entries (to see an `echo $?` coming). */
  async run(where: string, e: Entry, rest: Entry[], background: string[], typed: Record<string, string> = {}): Promise<void> {
    const expectError = e.output.some((l) => /\berror: /.test(l)) || rest.some((r) => r.terminal === e.terminal && r.cmd === 'echo $?');
    if (e.kind === 'more') {
      const p = this.procs.get(e.terminal)?.filter((q) => q.background).at(-1);
      if (!p) this.fail(where, e, 'no background command was started in this terminal');
      const from = { a: p.a, b: p.b };
      let res: MatchResult | undefined;
      const ok = await this.until(p, () => (res = match(e.output, p.out, p.err, from, this.bound, this.docPorts, { excerpt: true, open: true })).ok);
      if (!ok) this.fail(where, e, `the output shown (from line ${e.output[res?.failedAt ?? 0] ?? ''}) did not appear`, p, from);
      this.accept(p, res!);
      if (expectError) p.observed = true;
      return;
    }
    if (e.cmd === 'echo $?') {
      const p = this.procs.get(e.terminal)?.at(-1);
      if (!p) this.fail(where, e, 'no earlier command in this terminal');
      const ok = await this.until(p, () => p.code !== undefined);
      if (!ok) this.fail(where, e, 'the previous command did not exit', p);
      p.observed = true;
      const shown = e.output.join('\n').trim();
      if (shown !== String(p.code)) this.fail(where, e, `the documentation shows ${shown}, the previous command exited ${p.code}`, p);
      return;
    }
    const cmd = await this.substitute(e.cmd);
    const p = this.start(e.terminal, cmd, Object.entries(typed).find(([c]) => e.cmd.includes(c))?.[1]);
    // A running process's output is shown as an excerpt: a service may warn first (say, that
    // the default HTTPS port is taken by another service on this machine).
    const bg = background.some((b) => e.cmd.includes(b));
    let res: MatchResult | undefined;
    p.background = bg;
    if (bg) {
      const ok = await this.until(p, () => (e.output.length === 0 ? p.out.length + p.err.length > 0 : (res = match(e.output, p.out, p.err, { a: 0, b: 0 }, this.bound, this.docPorts, { excerpt: true, open: true })).ok));
      if (!ok) this.fail(where, e, p.code !== undefined ? 'it exited, but it should keep running until the output shown' : 'the output shown did not appear in time', p);
      if (p.code !== undefined && p.code !== 0 && !expectError) this.fail(where, e, `exit ${p.code}`, p);
      if (res) this.accept(p, res);
      else {
        p.a = p.out.length;
        p.b = p.err.length;
      }
      return;
    }
    const ok = await this.until(p, () => p.code !== undefined);
    if (!ok) {
      this.kill(p);
      this.fail(where, e, 'timed out (add it to background="…" if it keeps running on purpose)', p);
    }
    if (p.code !== 0 && !expectError) this.fail(where, e, `exit ${p.code}, and the documentation shows no error`, p);
    if (expectError) p.observed = true;
    res = match(e.output, p.out, p.err, { a: 0, b: 0 }, this.bound, this.docPorts, { excerpt: e.excerpt, open: false });
    if (!res.ok) this.fail(where, e, `its output differs from the documentation's, from the shown line "${e.output[res.failedAt] ?? '(end: it printed more)'}"`, p);
    this.accept(p, res);
  }

  private accept(p: Proc, r: MatchResult): void {
    p.a = r.a;
    p.b = r.b;
    this.bound = r.bound;
  }

  /**
   * Runs a mark's hidden setup="…": commands separated by ` ;; `, each in the terminal its
   * `T$ ` prefix names (else `terminal`), each to completion and successfully. For what the
   * prose describes but shows no block for ("an allowed enroller, as above").
   */
  async setup(where: string, terminal: string, script: string): Promise<void> {
    for (const item of script.split(' ;; ')) {
      const m = PROMPT.exec(item.trim());
      const t = m ? (m[1] ?? '$') : terminal;
      const cmd = m ? (m[2] ?? '') : item.trim();
      const p = this.start(t, await this.substitute(cmd));
      const ok = await this.until(p, () => p.code !== undefined);
      if (!ok || p.code !== 0) throw new DocError(`${where}: setup "${cmd}" failed (exit ${p.code})\n${p.err.join('\n')}`);
      p.observed = true;
    }
  }

  private kill(p: Proc): void {
    if (p.code === undefined && p.child.pid !== undefined) {
      try {
        process.kill(-p.child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
  }

  /** Stops what still runs (SIGTERM to the process groups this session started), checks exits, removes the directory. */
  async close(where: string): Promise<void> {
    const problems: string[] = [];
    for (const p of this.all) this.kill(p);
    const limit = await timeoutMs();
    for (const p of this.all) {
      const t = setTimeout(() => {
        if (p.child.pid !== undefined) {
          try {
            process.kill(-p.child.pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }, limit);
      await p.exited;
      clearTimeout(t);
    }
    for (const p of this.all) {
      // Killed background processes end with SIGTERM's status (143) or 0 after a clean stop.
      if (p.code !== 0 && p.code !== 143 && p.code !== 128 && !p.observed) problems.push(`${p.cmd}: exit ${p.code}\n${p.err.join('\n')}`);
    }
    rmSync(this.dir, { recursive: true, force: true });
    if (problems.length) throw new DocError(`${where}: commands that failed unseen:\n${problems.join('\n')}`);
  }
}
