/**
 * Where tests find things. Compiled tests live in dist/test/…, so the repo root is found by
 * walking up to the directory that holds package.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
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
/**
 * Public vectors vendored into the repo, one folder per source, each with a README.md (source,
 * revision, licence) and a SHA256SUMS that test/vectors/third-party.test.ts checks.
 */
export const THIRD_PARTY_VECTORS = join(REPO_ROOT, 'test', 'vectors', 'third-party');
export const BIN = join(REPO_ROOT, 'bin', 'ockam-enroll.js');

/** Parses `test/vectors/third-party/<folder>/<file>`. */
export function readVectorJson<T = any>(folder: string, ...parts: string[]): T {
  return JSON.parse(readFileSync(join(THIRD_PARTY_VECTORS, folder, ...parts), 'utf8')) as T;
}
