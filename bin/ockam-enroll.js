#!/usr/bin/env node
// ockam-enroll: see README.md. The compiled CLI lives in dist/; `npm install` builds it.
import { readdirSync, readFileSync, statSync } from 'node:fs';

const args = process.argv.slice(2);
// `--version` answers without loading the command tree: scripts call it often.
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.version}\n`);
} else {
  let cli;
  // scripts/build.mjs never rewrites dist/ in place: it swaps in a new directory. If that
  // happened while this process was loading its modules, some may come from each tree;
  // then run again, from the new tree alone.
  const dist = new URL('../dist/', import.meta.url);
  const before = inode(dist);
  for (let attempt = 0; ; attempt++) {
    try {
      cli = await import('../dist/src/cli/main.js');
      break;
    } catch (err) {
      const missing = err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/src/cli/main.js');
      // scripts/build.mjs swaps a new dist/ in with two renames; a start that falls between
      // them sees no dist/ for a moment, next to dist.old-PID. Look again, briefly.
      if (missing && attempt < 20 && swapping()) {
        await new Promise((r) => setTimeout(r, 25));
        continue;
      }
      if (missing) {
        process.stderr.write('ockam-enroll: error: the CLI is not built\nockam-enroll: hint: run `npm install` (or `npm run build`) in the ockam-enroll directory\n');
        process.exit(1);
      }
      throw err;
    }
  }
  if (before !== undefined && inode(dist) !== before) {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, process.argv.slice(1), { stdio: 'inherit' });
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
    child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
  } else {
    await cli.main(process.argv);
  }
}

function inode(url) {
  try {
    return statSync(url).ino;
  } catch {
    return undefined;
  }
}

function swapping() {
  try {
    return readdirSync(new URL('..', import.meta.url)).some((n) => /^dist\.old-\d+$/.test(n));
  } catch {
    return false;
  }
}
