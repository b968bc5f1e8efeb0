import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import {
  cleanStaleTemps,
  ensurePrivateDir,
  readPrivateFile,
  readPublicFile,
  removeFile,
  writeFileAtomic,
} from '../../src/keystore/files.js';

const isRoot = process.getuid?.() === 0;
let root: string;
let savedUmask: number;

before(() => {
  // umask 000: every mode below must come from explicit chmod/fchmod, not from the umask.
  savedUmask = process.umask(0);
  root = mkdtempSync(join(tmpdir(), 'ockam-files-'));
});
after(() => {
  process.umask(savedUmask);
  rmSync(root, { recursive: true, force: true });
});

let n = 0;
function fresh(): string {
  const d = join(root, `case-${n++}`);
  mkdirSync(d, { mode: 0o700 });
  return d;
}

function mode(p: string): number {
  return statSync(p).mode & 0o777;
}

function throwsCode(fn: () => unknown, code: ErrorCode, check?: (e: any) => void): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isEnrollError(e), `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    check?.(e);
    return true;
  });
}

function temps(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.includes('.tmp-'));
}

describe('ensurePrivateDir', () => {
  it('creates missing directories with mode 0700 under umask 000', () => {
    const d = join(fresh(), 'a', 'b', 'home');
    ensurePrivateDir(d);
    assert.equal(mode(d), 0o700);
  });

  it('creates 0700 even under a restrictive umask (0277)', () => {
    const prev = process.umask(0o277);
    try {
      const d = join(fresh(), 'home');
      ensurePrivateDir(d);
      assert.equal(mode(d), 0o700);
    } finally {
      process.umask(prev);
    }
  });

  it('accepts an existing 0700 directory', () => {
    const d = fresh();
    ensurePrivateDir(d);
    ensurePrivateDir(d);
    assert.equal(mode(d), 0o700);
  });

  for (const loose of [0o755, 0o750, 0o701, 0o770]) {
    it(`refuses an existing directory with mode 0${loose.toString(8)} and does not fix it`, () => {
      const d = fresh();
      chmodSync(d, loose);
      throwsCode(() => ensurePrivateDir(d), 'ERR_KEY_PERMISSIONS', (e) => {
        assert.equal(e.hint, `run: chmod 700 ${d}`);
        assert.match(e.message, new RegExp(`^directory ${d} `));
      });
      assert.equal(mode(d), loose);
    });
  }

  it('refuses a path that is a file', () => {
    const f = join(fresh(), 'file');
    writeFileSync(f, 'x');
    throwsCode(() => ensurePrivateDir(f), 'ERR_KEYSTORE_CORRUPT');
  });

  it('refuses a directory owned by another user', { skip: !isRoot && 'needs root to chown' }, () => {
    const d = fresh();
    chownSync(d, 12345, 12345);
    throwsCode(() => ensurePrivateDir(d), 'ERR_KEY_PERMISSIONS', (e) => assert.match(e.hint, /chown/));
  });
});

describe('writeFileAtomic', () => {
  it('creates the file with mode 0600 by default under umask 000', () => {
    const f = join(fresh(), 'k');
    writeFileAtomic(f, 'secret');
    assert.equal(readFileSync(f, 'utf8'), 'secret');
    assert.equal(mode(f), 0o600);
  });

  it('applies an explicit mode exactly', () => {
    const d = fresh();
    writeFileAtomic(join(d, 'pub'), new Uint8Array([1, 2, 3]), { mode: 0o644 });
    assert.equal(mode(join(d, 'pub')), 0o644);
    assert.deepEqual(new Uint8Array(readFileSync(join(d, 'pub'))), new Uint8Array([1, 2, 3]));
  });

  it('refuses to replace an existing file without overwrite (ERR_KEY_EXISTS), leaving it and no temp', () => {
    const d = fresh();
    const f = join(d, 'k');
    writeFileAtomic(f, 'old');
    throwsCode(() => writeFileAtomic(f, 'new'), 'ERR_KEY_EXISTS', (e) => {
      assert.equal(e.hint, 'use --force to replace it');
    });
    assert.equal(readFileSync(f, 'utf8'), 'old');
    assert.deepEqual(temps(d), []);
  });

  it('replaces with overwrite, taking the new mode', () => {
    const d = fresh();
    const f = join(d, 'k');
    writeFileAtomic(f, 'old', { mode: 0o644 });
    writeFileAtomic(f, 'new', { overwrite: true });
    assert.equal(readFileSync(f, 'utf8'), 'new');
    assert.equal(mode(f), 0o600);
    assert.deepEqual(temps(d), []);
  });

  it('replaces a symlink at the target with a file instead of writing through it', () => {
    const d = fresh();
    const elsewhere = join(d, 'elsewhere');
    writeFileSync(elsewhere, 'untouched');
    symlinkSync(elsewhere, join(d, 'k'));
    writeFileAtomic(join(d, 'k'), 'new', { overwrite: true });
    assert.equal(readFileSync(elsewhere, 'utf8'), 'untouched');
    assert.equal(readFileSync(join(d, 'k'), 'utf8'), 'new');
  });

  it('removes its temp file when the final step fails', () => {
    const d = fresh();
    mkdirSync(join(d, 'k')); // rename(file, non-empty-or-any dir) fails with EISDIR
    writeFileSync(join(d, 'k', 'inner'), '');
    throwsCode(() => writeFileAtomic(join(d, 'k'), 'x', { overwrite: true }), 'ERR_KEYSTORE_IO');
    assert.deepEqual(temps(d), []);
  });

  it('reports a missing directory as ERR_KEYSTORE_IO naming the temp path', () => {
    const d = join(fresh(), 'nope');
    throwsCode(() => writeFileAtomic(join(d, 'k'), 'x'), 'ERR_KEYSTORE_IO', (e) => {
      assert.ok(e.message.includes(d));
    });
  });

  it('rejects a mode outside 0..0o777', () => {
    throwsCode(() => writeFileAtomic(join(fresh(), 'k'), 'x', { mode: 0o4755 }), 'ERR_INVALID_ARG');
  });
});

describe('readPrivateFile / readPublicFile', () => {
  it('reads a 0600 file', () => {
    const f = join(fresh(), 'k');
    writeFileAtomic(f, 'hello');
    assert.equal(Buffer.from(readPrivateFile(f)).toString(), 'hello');
  });

  it('reports a missing file as ERR_KEY_MISSING with the given hint', () => {
    const f = join(fresh(), 'k');
    throwsCode(() => readPrivateFile(f, { missingHint: 'run: ockam-enroll enrollee init' }), 'ERR_KEY_MISSING', (e) => {
      assert.equal(e.hint, 'run: ockam-enroll enrollee init');
    });
  });

  for (const loose of [0o644, 0o640, 0o604, 0o660, 0o601]) {
    it(`refuses a private file with mode 0${loose.toString(8)} with a chmod 600 hint`, () => {
      const f = join(fresh(), 'k');
      writeFileAtomic(f, 'secret');
      chmodSync(f, loose);
      throwsCode(() => readPrivateFile(f), 'ERR_KEY_PERMISSIONS', (e) => {
        assert.equal(e.hint, `run: chmod 600 ${f}`);
        assert.ok(!e.message.includes('secret'));
      });
    });
  }

  it('quotes a path with spaces in the chmod hint', () => {
    const d = join(fresh(), 'my home');
    mkdirSync(d);
    const f = join(d, 'k');
    writeFileAtomic(f, 'x', { mode: 0o644 });
    throwsCode(() => readPrivateFile(f), 'ERR_KEY_PERMISSIONS', (e) => assert.equal(e.hint, `run: chmod 600 '${f}'`));
  });

  it('reads a 0644 file as a public file', () => {
    const f = join(fresh(), 'pub');
    writeFileAtomic(f, 'cert', { mode: 0o644 });
    assert.equal(Buffer.from(readPublicFile(f)).toString(), 'cert');
  });

  it('refuses a symlink, even to a 0600 file, for private and public reads', () => {
    const d = fresh();
    writeFileAtomic(join(d, 'real'), 'secret');
    symlinkSync(join(d, 'real'), join(d, 'k'));
    throwsCode(() => readPrivateFile(join(d, 'k')), 'ERR_KEY_PERMISSIONS', (e) => assert.match(e.message, /symlink/));
    throwsCode(() => readPublicFile(join(d, 'k')), 'ERR_KEY_PERMISSIONS');
  });

  it('follows a symlink only when asked', () => {
    const d = fresh();
    writeFileAtomic(join(d, 'real'), 'secret');
    symlinkSync(join(d, 'real'), join(d, 'k'));
    assert.equal(Buffer.from(readPrivateFile(join(d, 'k'), { followSymlinks: true })).toString(), 'secret');
  });

  it('refuses a directory', () => {
    const d = fresh();
    mkdirSync(join(d, 'k'), { mode: 0o700 });
    throwsCode(() => readPrivateFile(join(d, 'k')), 'ERR_KEY_PERMISSIONS', (e) => assert.match(e.message, /not a regular file/));
  });

  it('refuses a FIFO without blocking on it', () => {
    const d = fresh();
    try {
      execFileSync('mkfifo', ['-m', '600', join(d, 'k')]);
    } catch {
      return; // no mkfifo on this system
    }
    throwsCode(() => readPrivateFile(join(d, 'k')), 'ERR_KEY_PERMISSIONS');
  });

  it('refuses a private file owned by another user', { skip: !isRoot && 'needs root to chown' }, () => {
    const f = join(fresh(), 'k');
    writeFileAtomic(f, 'secret');
    chownSync(f, 12345, 12345);
    throwsCode(() => readPrivateFile(f), 'ERR_KEY_PERMISSIONS', (e) => assert.match(e.message, /owned by uid 12345/));
  });

  it('refuses a file over maxBytes as ERR_KEYSTORE_CORRUPT', () => {
    const f = join(fresh(), 'k');
    writeFileAtomic(f, 'x'.repeat(100));
    throwsCode(() => readPrivateFile(f, { maxBytes: 99 }), 'ERR_KEYSTORE_CORRUPT');
    assert.equal(readPrivateFile(f, { maxBytes: 100 }).length, 100);
  });
});

describe('cleanStaleTemps and removeFile', () => {
  it('removes only files named like writeFileAtomic temps', () => {
    const d = fresh();
    writeFileSync(join(d, '.ik.json.tmp-0123456789abcdef'), '{"partial');
    writeFileSync(join(d, '.ik.json.tmp-short'), 'not ours');
    writeFileSync(join(d, 'ik.json'), '{}');
    mkdirSync(join(d, '.dir.tmp-0123456789abcdef'));
    assert.deepEqual(cleanStaleTemps(d), ['.ik.json.tmp-0123456789abcdef']);
    assert.deepEqual(readdirSync(d).sort(), ['.dir.tmp-0123456789abcdef', '.ik.json.tmp-short', 'ik.json']);
  });

  it('leaves temp files younger than olderThanMs', () => {
    const d = fresh();
    const young = join(d, '.a.tmp-0000000000000000');
    const old = join(d, '.b.tmp-1111111111111111');
    writeFileSync(young, '');
    writeFileSync(old, '');
    const hourAgo = new Date(Date.now() - 3600_000);
    utimesSync(old, hourAgo, hourAgo);
    assert.deepEqual(cleanStaleTemps(d, { olderThanMs: 600_000 }), ['.b.tmp-1111111111111111']);
    assert.ok(existsSync(young));
  });

  it('removeFile says whether the file existed', () => {
    const f = join(fresh(), 'k');
    writeFileAtomic(f, 'x');
    assert.equal(removeFile(f), true);
    assert.equal(removeFile(f), false);
  });
});
