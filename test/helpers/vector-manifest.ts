/**
 * The manifest rule for vendored public vectors (test/vectors/third-party/<source>/): each
 * folder has a README.md (source, revision, licence) and a SHA256SUMS in `sha256sum` format
 * that lists every other file of the folder, and each file's SHA-256 matches. A changed,
 * added or removed vector file is reported by name, so it cannot go unnoticed.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';

export const MANIFEST = 'SHA256SUMS';
export const README = 'README.md';

export type ManifestProblemCode =
  | 'no-readme' // README.md missing
  | 'readme-no-licence' // README.md does not name a licence
  | 'no-manifest' // SHA256SUMS missing
  | 'bad-line' // a SHA256SUMS line that is not `<64 lowercase hex>  <relative path>`
  | 'duplicate' // a file listed twice
  | 'missing' // listed, but no such file
  | 'unlisted' // a file in the folder that SHA256SUMS does not list
  | 'not-a-file' // a symlink or other non-regular entry
  | 'mismatch'; // the file's SHA-256 differs from the listed one

export interface ManifestProblem {
  code: ManifestProblemCode;
  /** Folder-relative path (posix), or README.md / SHA256SUMS. */
  file: string;
  message: string;
}

// `sha256sum` writes `<hex>  <name>` (text mode) or `<hex> *<name>` (binary mode). Names it
// had to escape (backslash, newline) start the line with `\`; we accept none of those.
const LINE_RE = /^([0-9a-f]{64}) [ *](.+)$/;

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Every entry below `dir` other than the folder's own README.md and SHA256SUMS, as posix paths. */
function walk(dir: string, rel: string, out: { files: string[]; odd: string[] }): void {
  for (const name of readdirSync(dir).sort()) {
    const r = rel === '' ? name : `${rel}/${name}`;
    if (rel === '' && (name === README || name === MANIFEST)) continue;
    const st = lstatSync(join(dir, name));
    if (st.isDirectory()) walk(join(dir, name), r, out);
    else if (st.isFile()) out.files.push(r);
    else out.odd.push(r);
  }
}

/** Checks one vendored folder; returns its problems (empty when it is intact). */
export function checkVectorFolder(dir: string): ManifestProblem[] {
  const problems: ManifestProblem[] = [];
  const add = (code: ManifestProblemCode, file: string, message: string) => problems.push({ code, file, message });

  if (!isRegularFile(join(dir, README))) add('no-readme', README, `${README} is missing (it names source, revision and licence)`);
  else if (!/licen[cs]e/i.test(readFileSync(join(dir, README), 'utf8'))) add('readme-no-licence', README, `${README} does not name a licence`);

  const found = { files: [] as string[], odd: [] as string[] };
  walk(dir, '', found);
  for (const r of found.odd) add('not-a-file', r, `${r} is not a regular file`);

  if (!isRegularFile(join(dir, MANIFEST))) {
    add('no-manifest', MANIFEST, `${MANIFEST} is missing`);
    return problems;
  }
  const text = readFileSync(join(dir, MANIFEST), 'utf8');
  const lines = text.split('\n');
  if (lines.at(-1) !== '') add('bad-line', MANIFEST, `${MANIFEST} does not end with a newline`);
  else lines.pop();

  const listed = new Map<string, string>();
  lines.forEach((line, i) => {
    const m = LINE_RE.exec(line);
    const name = m?.[2];
    if (!m || name === undefined) {
      add('bad-line', MANIFEST, `${MANIFEST} line ${i + 1} is not "<sha-256 hex>  <file>": ${JSON.stringify(line.slice(0, 80))}`);
      return;
    }
    if (posix.normalize(name) !== name || name.startsWith('/') || name.startsWith('../') || name === README || name === MANIFEST) {
      add('bad-line', MANIFEST, `${MANIFEST} line ${i + 1} names ${JSON.stringify(name)}, not a file of this folder`);
      return;
    }
    if (listed.has(name)) add('duplicate', name, `${name} is listed twice`);
    listed.set(name, m[1]!);
  });

  const present = new Set(found.files);
  for (const [name, want] of listed) {
    if (!present.has(name)) {
      add('missing', name, `${name} is listed in ${MANIFEST} but does not exist`);
      continue;
    }
    const got = sha256(join(dir, ...name.split('/')));
    if (got !== want) add('mismatch', name, `${name}: SHA-256 ${got}, ${MANIFEST} says ${want}`);
  }
  for (const name of found.files) if (!listed.has(name)) add('unlisted', name, `${name} is not listed in ${MANIFEST}`);
  return problems;
}

/** The vendored folders under `root` (every directory), and entries that are not directories. */
export function vectorFolders(root: string): { folders: string[]; strays: string[] } {
  const folders: string[] = [];
  const strays: string[] = [];
  for (const name of readdirSync(root).sort()) {
    if (lstatSync(join(root, name)).isDirectory()) folders.push(name);
    else strays.push(name);
  }
  return { folders, strays };
}

function isRegularFile(path: string): boolean {
  try {
    return lstatSync(path).isFile();
  } catch {
    return false;
  }
}
