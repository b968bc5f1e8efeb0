#!/usr/bin/env node
// ockam-enroll: see README.md. The compiled CLI lives in dist/; `npm install` builds it.
import { lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';

const args = process.argv.slice(2);
// `--version` answers without loading the command tree: scripts call it often.
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.version}\n`);
} else {
  const dist = fileURLToPath(new URL('../dist', import.meta.url));
  let cli;
  let tree;
  let before;
  for (let attempt = 0; ; attempt++) {
    // In a checkout, dist is a link to one complete build (scripts/build.mjs swaps the link in
    // one rename). The CLI is loaded from the tree it names now, by its real path, so every
    // module, lazy import and worker of this process comes from that one tree; this PID is
    // noted in it so that a later build does not remove it while this process runs. An
    // installed package's dist/ is a plain directory, never swapped.
    tree = generation(dist);
    if (tree === undefined) {
      // Packing (npm pack's prepack/postpack) turns the link into a directory and back: dist
      // is absent for the moment between two renames, marked by dist.swap-PID. Look again.
      if (attempt < 40 && swapping()) {
        await new Promise((r) => setTimeout(r, 25));
        continue;
      }
      notBuilt();
    }
    if (tree.linked) note(tree.path);
    before = inode(tree.path);
    try {
      cli = await import(pathToFileURL(join(tree.path, 'src', 'cli', 'main.js')).href);
      break;
    } catch (err) {
      const missing = err && err.code === 'ERR_MODULE_NOT_FOUND';
      // The tree was removed while this process was loading it (two builds finished between
      // reading the link and noting the PID): load the one dist names now, by its new paths.
      const now = generation(dist);
      if (missing && attempt < 40 && (now === undefined ? swapping() : now.path !== tree.path)) continue;
      if (missing && String(err.message).includes(join('src', 'cli', 'main.js'))) notBuilt();
      throw err;
    }
  }
  if (!tree.linked && before !== undefined && inode(tree.path) !== before) {
    // A plain dist/ (written by a hand-run tsc, or packed) was swapped for a build while this
    // process was loading: its modules may come from both trees. Run again, from the new one.
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, process.argv.slice(1), { stdio: 'inherit' });
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
    child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
  } else {
    await cli.main(process.argv);
  }
}

/** The tree dist names: its real path, and whether dist is a link (a checkout's build). */
function generation(dist) {
  try {
    const linked = lstatSync(dist).isSymbolicLink();
    return { path: linked ? realpathSync(dist) : dist, linked };
  } catch {
    return undefined;
  }
}

/** Notes this PID in <tree>/.running/ until it exits (scripts/build.mjs keeps the tree meanwhile). */
function note(path) {
  try {
    const dir = join(path, '.running');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, String(process.pid));
    writeFileSync(file, '');
    process.on('exit', () => {
      try {
        unlinkSync(file);
      } catch {
        // already removed with its tree
      }
    });
  } catch {
    // A read-only checkout: the generation just replaced is kept anyway.
  }
}

function notBuilt() {
  process.stderr.write('ockam-enroll: error: the CLI is not built\nockam-enroll: hint: run `npm install` (or `npm run build`) in the ockam-enroll directory\n');
  process.exit(1);
}

function inode(path) {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

function swapping() {
  try {
    return readdirSync(new URL('..', import.meta.url)).some((n) => /^dist\.swap-\d+$/.test(n));
  } catch {
    return false;
  }
}
