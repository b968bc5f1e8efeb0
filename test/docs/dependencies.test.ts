/**
 * package.json's dependency lists against the code: a runtime dependency that nothing under
 * src/ imports is weight (and attack surface) every user installs for nothing, and a bare
 * import in the shipped code (dist/src, bin) that is not a runtime dependency breaks the
 * package for anyone who installs it without devDependencies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from '../helpers/paths.js';

interface Pkg {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as Pkg;

function files(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p, ext));
    else if (ext.test(name)) out.push(p);
  }
  return out;
}

/** The package a bare specifier names (`@scope/name/sub.js` → `@scope/name`), or undefined for relative and node: imports. */
function packageOf(spec: string): string | undefined {
  if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) return undefined;
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** Module specifiers of static imports, re-exports and dynamic import() calls (string literals). */
function specifiers(source: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const m of source.matchAll(re)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

/** Package name → the files that import it. */
function importsUnder(paths: string[]): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  for (const f of paths) {
    const src = readFileSync(f, 'utf8');
    // `import type` is erased at compile time: it costs no runtime dependency.
    for (const spec of specifiers(src.replace(/^\s*(?:import|export)\s+type\s[^;]*;/gm, ''))) {
      const name = packageOf(spec);
      if (name === undefined) continue;
      seen.set(name, [...(seen.get(name) ?? []), relative(REPO_ROOT, f)]);
    }
  }
  return seen;
}

test('every runtime dependency is imported by src/', () => {
  const used = importsUnder(files(join(REPO_ROOT, 'src'), /\.ts$/));
  const unused = Object.keys(pkg.dependencies).filter((d) => !used.has(d));
  assert.deepEqual(unused, [], `runtime dependencies nothing under src/ imports: ${unused.join(', ')}; move them to devDependencies (or drop them)`);
});

test('every package the shipped code imports is a runtime dependency', () => {
  const shipped = [...files(join(REPO_ROOT, 'dist', 'src'), /\.js$/), ...files(join(REPO_ROOT, 'bin'), /\.js$/)];
  assert.ok(shipped.length > 50, `dist/src holds the build (${shipped.length} files); run tsc first`);
  const used = importsUnder(shipped);
  // The scan must see what it is meant to see: the CLI's and the store's imports.
  for (const must of ['commander', 'better-sqlite3']) assert.ok(used.has(must), `the import scan finds ${must}`);
  const missing = [...used].filter(([name]) => !(name in pkg.dependencies)).map(([name, by]) => `${name} (imported by ${by.join(', ')})`);
  assert.deepEqual(missing, [], `the shipped code imports packages that are not runtime dependencies: ${missing.join('; ')}`);
});

test('no package is both a runtime and a dev dependency', () => {
  const both = Object.keys(pkg.dependencies).filter((d) => d in pkg.devDependencies);
  assert.deepEqual(both, []);
});
