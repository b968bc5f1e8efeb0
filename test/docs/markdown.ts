/**
 * Finds the fenced blocks of a Markdown file and the doc-test mark in front of each.
 *
 * The convention (README.md, "Development"): the line before a fence (blank lines between
 * are allowed) may be an HTML comment, invisible on GitHub,
 *
 *   <!-- doc: run [session=NAME] [background="CMD|CMD"] [typed="CMD=ANSWER|…"] [fresh=TERMINAL,…] [excerpt] [setup="SH"] [command="CMD"] -->
 *   <!-- doc: output session=NAME terminal=NAME -->
 *   <!-- doc: skip REASON -->
 *
 * and every block a user is told to type (a shell block, see isShellBlock) must carry
 * `run` or `skip`.
 */
import { readFileSync } from 'node:fs';

export interface Mark {
  kind: 'run' | 'output' | 'skip';
  attrs: Record<string, string>;
  /** `skip`'s reason. */
  reason: string;
}

export interface Block {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  info: string;
  lines: string[];
  mark: Mark | undefined;
  /** A malformed mark: what is wrong with it. */
  markError: string | undefined;
}

const MARK = /^<!--\s*doc:\s*(.*?)\s*-->$/;

export function parseMark(text: string): Mark | string {
  const m = /^(run|output|skip)\b\s*(.*)$/.exec(text);
  if (!m) return `unknown doc mark "${text}" (expected run, output or skip)`;
  const kind = m[1] as Mark['kind'];
  const rest = m[2]!;
  if (kind === 'skip') {
    const reason = rest.replace(/^[:—-]\s*/, '').trim();
    if (reason.length < 8) return 'a skip mark needs a reason (why the block cannot run here)';
    return { kind, attrs: {}, reason };
  }
  const attrs: Record<string, string> = {};
  for (const a of rest.matchAll(/([\w-]+)(?:=(?:"([^"]*)"|(\S+)))?/g)) attrs[a[1]!] = a[2] ?? a[3] ?? 'true';
  if (kind === 'output' && (!attrs.session || !attrs.terminal)) return 'an output mark needs session= and terminal=';
  return { kind, attrs, reason: '' };
}

export function blocks(file: string, text = readFileSync(file, 'utf8')): Block[] {
  const lines = text.split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[2]!;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j]!;
      if (l.trim().startsWith(fence[0]!.repeat(fence.length)) && l.trim().replace(/[`~]/g, '') === '') break;
      body.push(l.slice(Math.min(open[1]!.length, l.length - l.trimStart().length)));
    }
    let k = i - 1;
    while (k >= 0 && lines[k]!.trim() === '') k--;
    const m = k >= 0 ? MARK.exec(lines[k]!.trim()) : null;
    const parsed = m ? parseMark(m[1]!) : undefined;
    out.push({
      file,
      line: i + 1,
      info: open[3]!.trim(),
      lines: body,
      mark: typeof parsed === 'object' ? parsed : undefined,
      markError: typeof parsed === 'string' ? parsed : undefined,
    });
    i = j;
  }
  return out;
}

/** A prompt line: `$ cmd`, or `ROLE$ cmd` (service$, enroller$, device$, …). */
export const PROMPT = /^([A-Za-z][\w-]*)?\$(?: (.*))?$/;

/**
 * A block a user is told to type: a shell info string, or no info string and a line that is a
 * command (a prompt, or a line starting with npm, npx, node or ockam-enroll, optionally after
 * VAR=value assignments).
 */
export function isShellBlock(b: Block): boolean {
  const info = b.info.split(/\s+/)[0] ?? '';
  if (['sh', 'shell', 'bash', 'console', 'zsh', 'shell-session'].includes(info)) return true;
  if (info !== '') return false;
  return b.lines.some((l) => {
    const t = l.trim();
    return PROMPT.test(t) || /^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:npm|npx|node|ockam-enroll)\s/.test(t);
  });
}

/** Where a block is, for messages: `README.md:123`. */
export function where(b: Block, root: string): string {
  return `${b.file.startsWith(root) ? b.file.slice(root.length + 1) : b.file}:${b.line}`;
}
