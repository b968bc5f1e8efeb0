import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { PASSPHRASE_ENV, readHiddenLine, resolvePassphrase } from '../../src/keystore/passphrase.js';

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'ockam-pass-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function passFile(content: string | Uint8Array, mode = 0o600): string {
  const p = join(root, `pass-${n++}`);
  writeFileSync(p, content, { mode });
  chmodSync(p, mode);
  return p;
}

async function rejectsCode(p: Promise<unknown>, code: ErrorCode, check?: (e: any) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isEnrollError(e), `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    check?.(e);
    return true;
  });
}

describe('resolvePassphrase: none and env', () => {
  it('none → undefined', async () => {
    assert.equal(await resolvePassphrase({ kind: 'none' }), undefined);
  });

  it(`env reads ${PASSPHRASE_ENV} by default`, async () => {
    assert.equal(await resolvePassphrase({ kind: 'env' }, { env: { [PASSPHRASE_ENV]: 'from env' } }), 'from env');
  });

  it('env reads process.env when no environment is passed', async () => {
    const name = `OCKAM_ENROLL_TEST_PASS_${process.pid}`;
    process.env[name] = 'pe';
    try {
      assert.equal(await resolvePassphrase({ kind: 'env', name }), 'pe');
    } finally {
      delete process.env[name];
    }
  });

  it('env reads a named variable, keeping whitespace', async () => {
    assert.equal(await resolvePassphrase({ kind: 'env', name: 'MY_PASS' }, { env: { MY_PASS: ' a b \n' } }), ' a b \n');
  });

  it('env: unset → ERR_PASSPHRASE with a hint, naming the variable only', async () => {
    await rejectsCode(resolvePassphrase({ kind: 'env', name: 'NOPE' }, { env: {} }), 'ERR_PASSPHRASE', (e) => {
      assert.match(e.message, /NOPE is not set/);
      assert.ok(e.hint);
    });
  });

  it('env: empty → ERR_PASSPHRASE', async () => {
    await rejectsCode(resolvePassphrase({ kind: 'env' }, { env: { [PASSPHRASE_ENV]: '' } }), 'ERR_PASSPHRASE');
  });

  it('env: absurdly long → ERR_PASSPHRASE without echoing it', async () => {
    const long = 'x'.repeat(5000);
    await rejectsCode(resolvePassphrase({ kind: 'env' }, { env: { [PASSPHRASE_ENV]: long } }), 'ERR_PASSPHRASE', (e) => {
      assert.ok(!e.message.includes('xxxx'));
    });
  });
});

describe('resolvePassphrase: file', () => {
  const cases: [string, string][] = [
    ['pw', 'pw'],
    ['pw\n', 'pw'],
    ['pw\r\n', 'pw'],
    ['pw\n\n', 'pw\n'],
    ['  pw  \n', '  pw  '],
    ['mot de passe é\n', 'mot de passe é'],
  ];
  for (const [content, want] of cases) {
    it(`strips exactly one trailing newline: ${JSON.stringify(content)}`, async () => {
      assert.equal(await resolvePassphrase({ kind: 'file', path: passFile(content) }), want);
    });
  }

  it('refuses a loose file like a key file (ERR_KEY_PERMISSIONS, chmod 600 hint)', async () => {
    const p = passFile('pw\n', 0o644);
    await rejectsCode(resolvePassphrase({ kind: 'file', path: p }), 'ERR_KEY_PERMISSIONS', (e) => {
      assert.equal(e.hint, `run: chmod 600 ${p}`);
      assert.ok(!e.message.includes('pw'));
    });
  });

  it('follows a symlink to a 0600 file (mounted secrets)', async () => {
    const target = passFile('linked\n');
    const link = join(root, `link-${n++}`);
    symlinkSync(target, link);
    assert.equal(await resolvePassphrase({ kind: 'file', path: link }), 'linked');
  });

  it('missing file → ERR_PASSPHRASE', async () => {
    await rejectsCode(resolvePassphrase({ kind: 'file', path: join(root, 'nope') }), 'ERR_PASSPHRASE', (e) => {
      assert.match(e.message, /does not exist/);
    });
  });

  it('empty file, or only a newline → ERR_PASSPHRASE', async () => {
    await rejectsCode(resolvePassphrase({ kind: 'file', path: passFile('') }), 'ERR_PASSPHRASE');
    await rejectsCode(resolvePassphrase({ kind: 'file', path: passFile('\n') }), 'ERR_PASSPHRASE');
  });

  it('invalid UTF-8 → ERR_PASSPHRASE', async () => {
    await rejectsCode(resolvePassphrase({ kind: 'file', path: passFile(new Uint8Array([0x70, 0xc3])) }), 'ERR_PASSPHRASE');
  });

  it('a huge file → ERR_PASSPHRASE', async () => {
    await rejectsCode(resolvePassphrase({ kind: 'file', path: passFile('x'.repeat(100_000)) }), 'ERR_PASSPHRASE');
  });
});

describe('resolvePassphrase: prompt', () => {
  it('without a terminal → ERR_PASSPHRASE with a hint to use the env variable or a file', async () => {
    // detached: the child calls setsid(), so it has no controlling terminal and /dev/tty
    // cannot be opened; its stdin is a pipe with a passphrase in it, which must not be read.
    const url = new URL('../../src/keystore/passphrase.js', import.meta.url).href;
    const script = `
      const { resolvePassphrase } = await import(${JSON.stringify(url)});
      try { await resolvePassphrase({ kind: 'prompt' }); console.log('resolved'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, hint: e.hint })); }`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 20_000,
    });
    child.stdin.end('typed\n');
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const status = await new Promise<number | null>((res) => child.on('close', res));
    assert.equal(status, 0, stderr);
    const out = JSON.parse(stdout.trim());
    assert.equal(out.code, 'ERR_PASSPHRASE');
    assert.match(out.hint, /OCKAM_ENROLL_PASSPHRASE/);
    assert.match(out.hint, /--passphrase-file/);
  });
});

/**
 * Runs resolvePassphrase({ kind: 'prompt' }) in a child on a real pseudo-terminal made by
 * util-linux `script`, typing `keys` after each prompt appears. Returns the terminal output.
 */
async function onPty(keys: string[], confirm: boolean): Promise<string> {
  const url = new URL('../../src/keystore/passphrase.js', import.meta.url).href;
  const childScript = `
    const { resolvePassphrase } = await import(${JSON.stringify(url)});
    try {
      const p = await resolvePassphrase({ kind: 'prompt' }, { prompt: 'PROMPT> ', confirm: ${confirm} });
      console.log('GOT[' + p + ']');
    } catch (e) { console.log('ERR ' + e.code); }`;
  const child = spawn('script', ['-qfec', 'exec "$NODE" --input-type=module -e "$CHILD_SCRIPT"', '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NODE: process.execPath, CHILD_SCRIPT: childScript },
    timeout: 20_000,
  });
  let out = '';
  const prompts = ['PROMPT> ', 'confirm: '];
  let sent = 0;
  child.stdout.on('data', (d) => {
    out += d;
    // Type only once each prompt is shown, i.e. once the terminal is in raw mode.
    if (sent < keys.length && out.includes(prompts[sent]!)) child.stdin.write(keys[sent++]!);
  });
  await new Promise((res) => child.on('close', res));
  return out;
}

const hasScript = process.platform === 'linux' && spawnSync('script', ['--version']).status === 0;

describe('resolvePassphrase: prompt on a pseudo-terminal', { skip: !hasScript && 'needs util-linux script(1)' }, () => {
  it('reads with echo off, handling Backspace, and confirms', async () => {
    const out = await onPty(['s3cr\x7fet\r', 's3cet\r'], true);
    assert.match(out, /GOT\[s3cet\]/);
    assert.equal(out.split('s3c').length - 1, 1, `the passphrase was echoed: ${JSON.stringify(out)}`);
  });

  it('a mismatched confirmation → ERR_PASSPHRASE', async () => {
    const out = await onPty(['one\r', 'two\r'], true);
    assert.match(out, /ERR ERR_PASSPHRASE/);
    assert.ok(!out.includes('one') && !out.includes('two'), out);
  });

  it('Ctrl-C → ERR_PASSPHRASE', async () => {
    const out = await onPty(['abc\x03'], false);
    assert.match(out, /ERR ERR_PASSPHRASE/);
  });
});

/** A PassThrough that pretends to be a terminal and records raw-mode changes. */
function fakeTty(): PassThrough & { isTTY: boolean; setRawMode(m: boolean): void; rawCalls: boolean[] } {
  const s = new PassThrough() as any;
  s.isTTY = true;
  s.rawCalls = [];
  s.setRawMode = (m: boolean) => s.rawCalls.push(m);
  return s;
}

describe('readHiddenLine (the prompt line editor)', () => {
  async function run(chunks: (string | Buffer)[]): Promise<{ line: Promise<string>; out: string[]; tty: ReturnType<typeof fakeTty> }> {
    const tty = fakeTty();
    const out: string[] = [];
    const line = readHiddenLine(tty, (s) => out.push(s), 'passphrase: ');
    for (const c of chunks) tty.write(c);
    return { line, out, tty };
  }

  it('reads until Enter, in raw mode, echoing nothing but the prompt and a newline', async () => {
    const { line, out, tty } = await run(['hun', 'ter2\r']);
    assert.equal(await line, 'hunter2');
    assert.deepEqual(out, ['passphrase: ', '\n']);
    assert.deepEqual(tty.rawCalls, [true, false]);
  });

  it('handles Backspace (DEL and ^H) and Ctrl-U', async () => {
    assert.equal(await (await run(['secx\x7fret\n'])).line, 'secret');
    assert.equal(await (await run(['ab\b\bcd\r'])).line, 'cd');
    assert.equal(await (await run(['wrong\x15right\r'])).line, 'right');
    assert.equal(await (await run(['\x7f\x7fok\r'])).line, 'ok');
  });

  it('ignores arrow keys and other control characters', async () => {
    assert.equal(await (await run(['a\x1b[Ab\x1b[1;5Cc\x1bOd\x01\te\r'])).line, 'abce');
  });

  it('decodes UTF-8 split across chunks', async () => {
    const e = Buffer.from('é');
    const { line } = await run([Buffer.from('caf'), e.subarray(0, 1), e.subarray(1), Buffer.from('\r')]);
    assert.equal(await line, 'café');
  });

  it('Ctrl-C cancels with ERR_PASSPHRASE and restores the terminal', async () => {
    const { line, tty } = await run(['abc\x03']);
    await rejectsCode(line, 'ERR_PASSPHRASE', (e) => assert.match(e.message, /cancelled/));
    assert.deepEqual(tty.rawCalls, [true, false]);
  });

  it('Ctrl-D on an empty line cancels; elsewhere it is ignored', async () => {
    await rejectsCode((await run(['\x04'])).line, 'ERR_PASSPHRASE');
    assert.equal(await (await run(['a\x04b\r'])).line, 'ab');
  });

  it('end of input before Enter → ERR_PASSPHRASE', async () => {
    const { line, tty } = await run(['abc']);
    tty.end();
    await rejectsCode(line, 'ERR_PASSPHRASE');
    assert.deepEqual(tty.rawCalls, [true, false]);
  });
});
