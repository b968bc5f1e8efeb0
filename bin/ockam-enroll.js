#!/usr/bin/env node
// ockam-enroll: see README.md. The compiled CLI lives in dist/; `npm install` builds it.
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
// `--version` answers without loading the command tree: scripts call it often.
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.version}\n`);
} else {
  let cli;
  try {
    cli = await import('../dist/src/cli/main.js');
  } catch (err) {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/src/cli/main.js')) {
      process.stderr.write('ockam-enroll: error: the CLI is not built\nockam-enroll: hint: run `npm install` (or `npm run build`) in the ockam-enroll directory\n');
      process.exit(1);
    }
    throw err;
  }
  await cli.main(process.argv);
}
