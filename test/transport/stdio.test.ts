/**
 * spawnConnection and stdioConnection over real child processes and pipes.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { spawnConnection } from '../../src/transport/stdio.js';
import { MAX_FRAME_LEN } from '../../src/transport/frame.js';

function code(c: ErrorCode) {
  return (e: unknown): boolean => {
    assert.ok(isEnrollError(e, c), `expected ${c}, got ${String(e)}`);
    return true;
  };
}

const dir = mkdtempSync(join(tmpdir(), 'ockam-enroll-stdio-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a child script and returns the shell command that runs it with this node. */
function script(name: string, source: string): string {
  const file = join(dir, name);
  writeFileSync(file, source);
  return `"${process.execPath}" "${file}"`;
}

/**
 * A frame-echo child with its own tiny decoder (it does not import the code under test):
 * each frame read on stdin is written back on stdout; exits 0 at end of input.
 */
const ECHO = script(
  'echo.mjs',
  `let buf = Buffer.alloc(0);
process.stdin.on('data', (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  while (buf.length >= 2) {
    const len = buf.readUInt16BE(0);
    if (buf.length < 2 + len) break;
    process.stdout.write(buf.subarray(0, 2 + len));
    buf = buf.subarray(2 + len);
  }
});
process.stdin.on('end', () => process.exit(buf.length === 0 ? 0 : 9));
`,
);

test('spawnConnection: frames echo through a child process, small and large', async () => {
  const { conn, exited } = spawnConnection(ECHO, { readTimeoutMs: 10_000 });
  const frames = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(MAX_FRAME_LEN).fill(0xab)];
  for (let i = 0; i < 30; i++) frames.push(new Uint8Array(40_000 + i).fill(i));
  const writes = frames.map((f) => conn.writeFrame(f));
  for (const f of frames) assert.deepEqual(await conn.readFrame(), f);
  await Promise.all(writes);
  await conn.end();
  // The child sees end of input, exits 0, and its stdout then ends.
  await assert.rejects(conn.readFrame(), (e: unknown) => isEnrollError(e, 'ERR_CONNECTION_CLOSED') && /code 0/.test(e.message));
  assert.deepEqual(await exited, { exitCode: 0 });
  await conn.closed;
});

test('spawnConnection: a child that exits early makes readFrame reject with its exit code', async () => {
  const { conn, exited } = spawnConnection(script('exit3.mjs', 'process.exit(3);\n'), { readTimeoutMs: 10_000 });
  await assert.rejects(conn.readFrame(), (e: unknown) => {
    assert.ok(isEnrollError(e, 'ERR_CONNECTION_CLOSED'), String(e));
    assert.match(e.message, /exited with code 3/);
    return true;
  });
  assert.deepEqual(await exited, { exitCode: 3 });
  // Writing to the dead child fails cleanly, never as an unhandled EPIPE.
  await assert.rejects(
    (async () => {
      for (let i = 0; i < 100; i++) await conn.writeFrame(new Uint8Array(60_000));
    })(),
    code('ERR_CONNECTION_CLOSED'),
  );
  conn.destroy();
  await conn.closed;
});

test('spawnConnection: a child that dies mid-frame is reported as such', async () => {
  const { conn, exited } = spawnConnection(
    script('half.mjs', 'process.stdout.write(Buffer.from([0, 100, 1, 2]), () => process.exit(0));\n'),
    { readTimeoutMs: 10_000 },
  );
  await assert.rejects(conn.readFrame(), (e: unknown) => {
    assert.ok(isEnrollError(e, 'ERR_CONNECTION_CLOSED'), String(e));
    assert.match(e.message, /exited with code 0 mid-frame/);
    return true;
  });
  assert.equal((await exited).exitCode, 0);
});

test('spawnConnection: a child killed by a signal is reported with the signal', async () => {
  const { conn, child, exited } = spawnConnection(ECHO, { readTimeoutMs: 10_000 });
  const pending = conn.readFrame();
  child.kill('SIGKILL');
  await assert.rejects(pending, (e: unknown) => isEnrollError(e, 'ERR_CONNECTION_CLOSED') && /SIGKILL/.test(e.message));
  assert.equal((await exited).signal, 'SIGKILL');
  conn.destroy();
});

test('spawnConnection: a command the shell cannot find is exit code 127 with a hint', async () => {
  const { conn, exited } = spawnConnection('ockam-enroll-no-such-command-xyz', { readTimeoutMs: 10_000 });
  await assert.rejects(conn.readFrame(), (e: unknown) => {
    assert.ok(isEnrollError(e, 'ERR_CONNECTION_CLOSED'), String(e));
    assert.match(e.message, /code 127/);
    assert.match(e.hint ?? '', /did not find the command/);
    return true;
  });
  assert.equal((await exited).exitCode, 127);
});

test('spawnConnection: env reaches the child; read timeouts work on pipes too', async () => {
  const { conn, child, exited } = spawnConnection(
    script(
      'env.mjs',
      `const v = Buffer.from(process.env.OCKAM_ENROLL_TEST_VALUE ?? 'unset');
const h = Buffer.alloc(2); h.writeUInt16BE(v.length);
process.stdout.write(Buffer.concat([h, v]));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
`,
    ),
    { env: { OCKAM_ENROLL_TEST_VALUE: 'hello child' }, readTimeoutMs: 10_000 },
  );
  assert.equal(Buffer.from(await conn.readFrame()).toString(), 'hello child');
  await assert.rejects(conn.readFrame(50), code('ERR_TIMEOUT'));
  await conn.end();
  assert.deepEqual(await exited, { exitCode: 0 });
  assert.equal(child.exitCode, 0);
});

test('spawnConnection validates its arguments before spawning anything', () => {
  assert.throws(() => spawnConnection(''), code('ERR_INVALID_ARG'));
  assert.throws(() => spawnConnection(ECHO, { maxFrameLen: -1 }), code('ERR_INVALID_ARG'));
  assert.throws(() => spawnConnection(ECHO, { env: { A: 1 as unknown as string } }), code('ERR_INVALID_ARG'));
});

test('stdioConnection: a child serving frames over its own stdin/stdout exits by itself at end of input', async () => {
  const stdioModule = new URL('../../src/transport/stdio.js', import.meta.url).href;
  const child = script(
    'stdio-echo.mjs',
    `import { stdioConnection } from ${JSON.stringify(stdioModule)};
const conn = stdioConnection({ readTimeoutMs: 10000 });
for (;;) {
  let f;
  try {
    f = await conn.readFrame();
  } catch (e) {
    if (e.code !== 'ERR_CONNECTION_CLOSED') process.exitCode = 5;
    break;
  }
  // Answer with the frame reversed, to show it was decoded as a frame.
  await conn.writeFrame(f.slice().reverse());
}
await conn.end();
`,
  );
  const { conn, exited } = spawnConnection(child, { readTimeoutMs: 10_000 });
  await conn.writeFrame(new Uint8Array([1, 2, 3]));
  assert.deepEqual(await conn.readFrame(), new Uint8Array([3, 2, 1]));
  const big = new Uint8Array(MAX_FRAME_LEN).map((_, i) => i & 0xff);
  await conn.writeFrame(big);
  assert.deepEqual(await conn.readFrame(), big.slice().reverse());
  await conn.writeFrame(new Uint8Array(0));
  assert.deepEqual(await conn.readFrame(), new Uint8Array(0));
  await conn.end();
  // No leaked handle keeps the child alive once its input has ended.
  assert.deepEqual(await exited, { exitCode: 0 });
  await assert.rejects(conn.readFrame(), code('ERR_CONNECTION_CLOSED'));
});

test('stdioConnection: a child whose input is cut mid-frame sees ERR_CONNECTION_CLOSED and exits', async () => {
  const stdioModule = new URL('../../src/transport/stdio.js', import.meta.url).href;
  const child = script(
    'stdio-cut.mjs',
    `import { stdioConnection } from ${JSON.stringify(stdioModule)};
const conn = stdioConnection({ readTimeoutMs: 10000 });
try {
  await conn.readFrame();
  process.exitCode = 1;
} catch (e) {
  process.exitCode = e.code === 'ERR_CONNECTION_CLOSED' && /mid-frame/.test(e.message) ? 42 : 2;
}
`,
  );
  const { child: proc, exited } = spawnConnection(child, { readTimeoutMs: 10_000 });
  proc.stdin.end(Buffer.from([0, 50, 1, 2, 3]));
  assert.deepEqual(await exited, { exitCode: 42 });
});
