/**
 * The vendored public vectors (test/vectors/third-party/<source>/) are the files their
 * README names, unchanged: every folder, including any added later, has a README.md and a
 * SHA256SUMS listing every other file, and every file's SHA-256 matches. The second half
 * shows the checker catches each way a folder can drift, by name, on a scratch copy.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { THIRD_PARTY_VECTORS } from '../helpers/paths.js';
import { checkVectorFolder, MANIFEST, README, vectorFolders, type ManifestProblem } from '../helpers/vector-manifest.js';

const { folders, strays } = vectorFolders(THIRD_PARTY_VECTORS);

const brief = (ps: readonly ManifestProblem[]) => ps.map((p) => ({ code: p.code, file: p.file }));
const listed = (dir: string) =>
  readFileSync(join(dir, MANIFEST), 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => l.slice(66));

describe('test/vectors/third-party: every vendored folder matches its SHA256SUMS', () => {
  test('the folders the tests read are there, and nothing but folders', () => {
    for (const f of ['c2sp-wycheproof', 'noise-xx', 'signal-x3dh', 'signal-xeddsa']) assert.ok(folders.includes(f), `missing folder ${f}`);
    assert.deepEqual(strays, [], 'test/vectors/third-party holds only folders');
  });

  for (const folder of folders) {
    test(`${folder}: README.md, SHA256SUMS, every file listed and unchanged`, () => {
      const problems = checkVectorFolder(join(THIRD_PARTY_VECTORS, folder));
      assert.deepEqual(problems, [], problems.map((p) => p.message).join('\n'));
    });
  }

  const sha256sum = spawnSync('sha256sum', ['--version'], { encoding: 'utf8' });
  for (const folder of folders) {
    test(`${folder}: \`sha256sum -c SHA256SUMS\` agrees`, { skip: sha256sum.status === 0 ? false : 'no sha256sum here' }, () => {
      const r = spawnSync('sha256sum', ['--check', '--strict', MANIFEST], { cwd: join(THIRD_PARTY_VECTORS, folder), encoding: 'utf8' });
      assert.equal(r.status, 0, r.stdout + r.stderr);
    });
  }
});

describe('the manifest check fails, naming the file, when a folder drifts', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'ockam-enroll-vectors-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  let n = 0;
  /** A fresh copy of a vendored folder. */
  const copy = (folder: string) => {
    const dir = join(scratch, `${n++}-${folder}`);
    cpSync(join(THIRD_PARTY_VECTORS, folder), dir, { recursive: true });
    assert.deepEqual(checkVectorFolder(dir), [], 'the copy starts intact');
    return dir;
  };

  for (const folder of folders) {
    test(`${folder}: one flipped bit in any listed file is a mismatch of that file`, () => {
      const dir = copy(folder);
      for (const name of listed(dir)) {
        const path = join(dir, ...name.split('/'));
        const original = readFileSync(path);
        const changed = Buffer.from(original);
        changed[changed.length >> 1]! ^= 0x01;
        writeFileSync(path, changed);
        assert.deepEqual(brief(checkVectorFolder(dir)), [{ code: 'mismatch', file: name }], name);
        writeFileSync(path, original);
      }
      assert.deepEqual(checkVectorFolder(dir), []);
    });
  }

  const folder = 'signal-xeddsa';
  const file = 'xeddsa_vectors.json';

  test('a byte appended to a file is a mismatch', () => {
    const dir = copy(folder);
    appendFileSync(join(dir, file), '\n');
    const problems = checkVectorFolder(dir);
    assert.deepEqual(brief(problems), [{ code: 'mismatch', file }]);
    assert.match(problems[0]!.message, /xeddsa_vectors\.json: SHA-256 [0-9a-f]{64}, SHA256SUMS says [0-9a-f]{64}/);
  });

  test('a listed file that is gone is missing', () => {
    const dir = copy(folder);
    unlinkSync(join(dir, file));
    assert.deepEqual(brief(checkVectorFolder(dir)), [{ code: 'missing', file }]);
  });

  test('a file that is not listed is unlisted, in a subfolder too', () => {
    const dir = copy(folder);
    writeFileSync(join(dir, 'extra.json'), '{}\n');
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'more.json'), '{}\n');
    assert.deepEqual(brief(checkVectorFolder(dir)), [
      { code: 'unlisted', file: 'extra.json' },
      { code: 'unlisted', file: 'sub/more.json' },
    ]);
  });

  test('a symlink is not a vendored file', () => {
    const dir = copy(folder);
    symlinkSync(join(dir, file), join(dir, 'link.json'));
    assert.deepEqual(brief(checkVectorFolder(dir)), [{ code: 'not-a-file', file: 'link.json' }]);
  });

  test('no README.md, or one that names no licence', () => {
    const dir = copy(folder);
    writeFileSync(join(dir, README), '# vectors\n\nFrom somewhere.\n');
    assert.deepEqual(brief(checkVectorFolder(dir)), [{ code: 'readme-no-licence', file: README }]);
    unlinkSync(join(dir, README));
    assert.deepEqual(brief(checkVectorFolder(dir)), [{ code: 'no-readme', file: README }]);
  });

  test('no SHA256SUMS', () => {
    const dir = copy(folder);
    unlinkSync(join(dir, MANIFEST));
    assert.deepEqual(brief(checkVectorFolder(dir)), [{ code: 'no-manifest', file: MANIFEST }]);
  });

  test('malformed SHA256SUMS lines, names outside the folder, and duplicates', () => {
    const dir = copy(folder);
    const good = readFileSync(join(dir, MANIFEST), 'utf8');
    const hash = good.slice(0, 64);
    const cases: [string, { code: string; file: string }[]][] = [
      [good.trimEnd(), [{ code: 'bad-line', file: MANIFEST }]], // no final newline
      [`${hash} ${file}\n`, [{ code: 'bad-line', file: MANIFEST }, { code: 'unlisted', file }]], // one space
      [`${hash.toUpperCase()}  ${file}\n`, [{ code: 'bad-line', file: MANIFEST }, { code: 'unlisted', file }]],
      [`${good}\n`, [{ code: 'bad-line', file: MANIFEST }]], // a blank line
      [`${good}${hash}  ../signal-x3dh/libsignal_x3dh_kat.json\n`, [{ code: 'bad-line', file: MANIFEST }]],
      [`${good}${hash}  ./${file}\n`, [{ code: 'bad-line', file: MANIFEST }]],
      [`${good}${hash}  ${README}\n`, [{ code: 'bad-line', file: MANIFEST }]],
      [`${good}${good}`, [{ code: 'duplicate', file }]],
      [`${hash} *${file}\n`, []], // sha256sum's binary-mode marker is accepted
    ];
    for (const [text, want] of cases) {
      writeFileSync(join(dir, MANIFEST), text);
      assert.deepEqual(brief(checkVectorFolder(dir)), want, JSON.stringify(text));
    }
  });

  test('a new folder is checked without being named anywhere', () => {
    const root = join(scratch, 'root');
    cpSync(THIRD_PARTY_VECTORS, root, { recursive: true });
    mkdirSync(join(root, 'zz-new-source'));
    writeFileSync(join(root, 'zz-new-source', 'v.json'), '[]\n');
    const found = vectorFolders(root);
    assert.deepEqual(found.folders, [...folders, 'zz-new-source'].sort());
    assert.deepEqual(brief(checkVectorFolder(join(root, 'zz-new-source'))), [
      { code: 'no-readme', file: README },
      { code: 'no-manifest', file: MANIFEST },
    ]);
  });
});
