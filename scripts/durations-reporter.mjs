// A node:test reporter that prints where a run's time went: per test file, the sum of its
// top-level tests' and suites' durations, slowest first, with the slowest test in it. For
// finding what to make cheaper (issue 24); the runner runs two files at a time, so on a busy
// machine read the figures relative to each other.
//
//   node scripts/test.mjs --test-reporter=./scripts/durations-reporter.mjs [FILTER…]
//   node scripts/test.mjs --test-reporter=spec --test-reporter-destination=stdout \
//     --test-reporter=./scripts/durations-reporter.mjs --test-reporter-destination=/tmp/durations.txt
//
// A file's own before()/after() hooks at its top level run outside every top-level test, so
// their time is not in the sum (a world set up once per file shows as a quicker file).
import { relative } from 'node:path';

export default async function* durationsReporter(source) {
  const files = new Map(); // file -> { ms, tests, failed, slowest: { name, ms } }
  const start = Date.now();
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const d = event.data;
    const ms = d.details?.duration_ms ?? 0;
    const file = d.file ? relative(process.cwd(), d.file) : '?';
    if (!files.has(file)) files.set(file, { ms: 0, tests: 0, failed: 0, slowest: { name: '', ms: -1 } });
    const f = files.get(file);
    if (d.details?.type !== 'suite') {
      f.tests += 1;
      if (event.type === 'test:fail') f.failed += 1;
      if (ms > f.slowest.ms) f.slowest = { name: d.name, ms };
    }
    if (d.nesting === 0) f.ms += ms;
  }
  const rows = [...files].sort((a, b) => b[1].ms - a[1].ms);
  const total = rows.reduce((s, [, f]) => s + f.ms, 0);
  yield `durations: ${rows.length} file(s), ${(total / 1000).toFixed(1)} s of top-level tests, ${((Date.now() - start) / 1000).toFixed(1)} s of wall time\n`;
  for (const [file, f] of rows) {
    const failed = f.failed ? `  FAILED ${f.failed}` : '';
    yield `${(f.ms / 1000).toFixed(1).padStart(7)} s  ${String(f.tests).padStart(4)} tests  ${file}${failed}  (slowest ${(f.slowest.ms / 1000).toFixed(1)} s: ${f.slowest.name.slice(0, 80)})\n`;
  }
}
