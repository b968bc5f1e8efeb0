// A node:test reporter for scripts/test-stress.mjs: one JSON line per finished test or suite
// (name, nesting, file, whether it failed and why) and per summary diagnostic ("pass 12"), so
// that the stress script can count a run and name its failing tests without parsing the spec
// reporter's human-oriented output.
export default async function* stressReporter(source) {
  for await (const event of source) {
    if (event.type === 'test:pass' || event.type === 'test:fail') {
      const d = event.data;
      const error = d.details?.error;
      const cause = error?.cause;
      const message = cause instanceof Error || (cause && typeof cause.message === 'string') ? cause.message : error?.message;
      yield `${JSON.stringify({
        kind: 'test',
        failed: event.type === 'test:fail',
        name: d.name,
        nesting: d.nesting,
        file: d.file ?? null,
        suite: d.details?.type === 'suite',
        skip: d.skip !== undefined && d.skip !== false,
        todo: d.todo !== undefined && d.todo !== false,
        error: event.type === 'test:fail' && typeof message === 'string' ? message.split('\n').slice(0, 3).join('\n').slice(0, 400) : undefined,
      })}\n`;
    } else if (event.type === 'test:diagnostic') {
      yield `${JSON.stringify({ kind: 'diagnostic', message: String(event.data.message) })}\n`;
    }
  }
}
