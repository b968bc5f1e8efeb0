/**
 * Where tests find things. Compiled tests live in dist/test/…, so the repo root is found by
 * walking up to the directory that holds package.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'tsconfig.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no repo root above ${start}`);
    dir = up;
  }
}

export const REPO_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
/** `../shared/vectors` beside the repo, as CI lays it out. */
export const SHARED_VECTORS = resolve(REPO_ROOT, '..', 'shared', 'vectors');
export const BIN = join(REPO_ROOT, 'bin', 'ockam-enroll.js');

export function readVectorJson<T = any>(...parts: string[]): T {
  return JSON.parse(readFileSync(join(SHARED_VECTORS, ...parts), 'utf8')) as T;
}
