/**
 * Executed documentation: every block of README.md and docs/*.md that a user is told to type
 * is either run here, with its shown output checked against what the commands print, or
 * marked as not runnable with a reason. The convention is in docs/development.md, "The documentation is executed"; the
 * harness in runner.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/paths.js';
import { blocks, isShellBlock, where, type Block } from './markdown.js';
import { entries, Session } from './runner.js';

const FILES = [join(REPO_ROOT, 'README.md'), ...readdirSync(join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => join(REPO_ROOT, 'docs', f))];
const ALL = FILES.flatMap((f) => blocks(f));

test('every shell block in README.md and docs/*.md is run or marked as not runnable', () => {
  const bad: string[] = [];
  for (const b of ALL) {
    if (b.markError) bad.push(`${where(b, REPO_ROOT)}: ${b.markError}`);
    else if (isShellBlock(b) && !b.mark) {
      bad.push(`${where(b, REPO_ROOT)}: a shell block (starting "${b.lines.find((l) => l.trim() !== '')?.trim().slice(0, 60)}") has no doc mark: put <!-- doc: run session=NAME --> or <!-- doc: skip REASON --> on the line before its fence (docs/development.md, "The documentation is executed")`);
    } else if (b.mark?.kind === 'output' && !ALL.some((o) => o.file === b.file && o.mark?.kind === 'run' && o.mark.attrs.session === b.mark!.attrs.session)) {
      bad.push(`${where(b, REPO_ROOT)}: an output block for session ${b.mark.attrs.session}, which no run block starts`);
    }
  }
  assert.deepEqual(bad, [], `\n${bad.join('\n')}\n`);
});

test('the harness sees the blocks it should (the walkthrough is run, the spec diagrams are not shell blocks)', () => {
  const readme = ALL.filter((b) => b.file.endsWith('README.md'));
  assert.ok(readme.filter((b) => b.mark?.kind === 'run').length >= 10, 'README.md has run blocks');
  const protocol = ALL.filter((b) => b.file.endsWith('protocol.md'));
  assert.ok(protocol.length >= 15 && protocol.every((b) => !isShellBlock(b)), 'docs/protocol.md has no shell blocks');
});

/** Blocks to run, by session: `file#name`, or `file:line` for a block of its own. */
const sessions = new Map<string, Block[]>();
for (const b of ALL) {
  if (b.mark?.kind !== 'run' && b.mark?.kind !== 'output') continue;
  const key = b.mark.attrs.session ? `${where(b, REPO_ROOT).split(':')[0]}#${b.mark.attrs.session}` : where(b, REPO_ROOT);
  if (!sessions.has(key)) sessions.set(key, []);
  sessions.get(key)!.push(b);
}

/**
 * The sessions run two at a time, longest first: in file order the longest one
 * (docs/walkthrough.md, about a third of this file's time) started last and ran alone at the
 * end (issue 24). A session's length is taken as the commands it shows (`$ ` lines, the
 * demo's narrated ones included); equal ones keep file order.
 */
const commandsShown = (list: Block[]) => list.reduce((n, b) => n + b.lines.filter((l) => /^\s*(?:[A-Za-z][\w-]*)?\$ \S/.test(l)).length, 0);
const longestFirst = [...sessions].map(([name, list], i) => ({ name, list, i, n: commandsShown(list) })).sort((a, b) => b.n - a.n || a.i - b.i);

describe('documented sessions, run', { concurrency: 2 }, () => {
  for (const { name, list } of longestFirst) {
    test(name, async () => {
      const s = new Session(name);
      let failed = false;
      try {
        for (const b of list) {
          const at = where(b, REPO_ROOT).split(':')[0]!;
          const es = entries(b);
          const background = (b.mark!.attrs.background ?? '').split('|').filter((x) => x !== '');
          for (const t of (b.mark!.attrs.fresh ?? '').split(',').filter((x) => x !== '')) s.fresh(t);
          for (const t of (b.mark!.attrs.back ?? '').split(',').filter((x) => x !== '')) s.back(t);
          if (b.mark!.attrs.setup) await s.setup(where(b, REPO_ROOT), es[0]?.terminal ?? '$', b.mark!.attrs.setup);
          const typed = Object.fromEntries((b.mark!.attrs.typed ?? '').split('|').filter((x) => x.includes('=')).map((x) => [x.slice(0, x.indexOf('=')), x.slice(x.indexOf('=') + 1)]));
          for (const [i, e] of es.entries()) await s.run(at, e, es.slice(i + 1), background, typed);
        }
      } catch (e) {
        failed = true;
        throw e;
      } finally {
        // A failure to stop cleanly matters only when the session itself passed.
        await s.close(name).catch((e: unknown) => {
          if (!failed) throw e;
        });
      }
    });
  }
});
