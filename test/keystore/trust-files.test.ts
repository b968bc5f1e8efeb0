/**
 * StrictModes for the files that carry trust (issue #18 finding 8): known_services.json,
 * the enrollee's service.json and settings.json pin, the pinned CA. A pin that another user
 * could have written — group/other-writable, owned by someone else, or below a directory
 * that someone else can write (not sticky) — is refused with ERR_KEY_PERMISSIONS, naming the
 * file or directory, with the chmod/chown that fixes it. Through the library and the CLI.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEnrollError } from '../../src/errors.js';
import { toHex } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { checkTrustedPath, readTrustFile } from '../../src/keystore/files.js';
import { Keystore } from '../../src/keystore/keystore.js';
import { KnownServices, KNOWN_SERVICES_FILE } from '../../src/keystore/known-services.js';
import { assertFailure, ok, removeTempHomes, run } from '../helpers/cli.js';

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'ockam-trust-'));
});
after(() => {
  rmSync(root, { recursive: true, force: true });
  removeTempHomes();
});

let n = 0;
/** A directory of its own under root, with `mode`. */
function dir(mode = 0o700): string {
  const d = join(root, `d-${n++}`);
  mkdirSync(d);
  chmodSync(d, mode);
  return d;
}

function refused(fn: () => unknown, message: RegExp, hint: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isEnrollError(e), String(e));
    assert.equal(e.code, 'ERR_KEY_PERMISSIONS', e.message);
    assert.match(e.message, message);
    assert.equal(e.hint, hint);
    return true;
  });
}

/** An enroller keystore with one pinned service, its known_services.json path returned too. */
function pinned(parent: string): { ks: Keystore; file: string } {
  const ks = Keystore.open(join(parent, 'home'), 'enroller');
  new KnownServices(ks).pin('tcp://127.0.0.1:4100', generateX25519().publicKey);
  return { ks, file: ks.path(KNOWN_SERVICES_FILE) };
}

describe('trust files: StrictModes (issue #18 finding 8)', () => {
  it('a pin file written 0644 by its owner is read; others may read it', () => {
    const { ks } = pinned(dir());
    assert.equal(new KnownServices(ks).list().length, 1);
  });

  for (const mode of [0o664, 0o646, 0o666]) {
    it(`known_services.json with mode 0${mode.toString(8)} is refused, with chmod go-w`, () => {
      const { ks, file } = pinned(dir());
      chmodSync(file, mode);
      refused(() => new KnownServices(ks).list(), new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is writable by other users \\(mode 0${mode.toString(8)}\\), and it carries trust`), `run: chmod go-w ${file}`);
    });
  }

  it('a pin file owned by another user is refused, with chown (run as root: chown to another uid)', { skip: process.getuid?.() !== 0 ? 'needs root to chown a file to another user' : false }, () => {
    const { ks, file } = pinned(dir());
    chownSync(file, 4242, 4242);
    refused(() => new KnownServices(ks).list(), /is owned by uid 4242, not by the current user \(uid 0\): it carries trust/, `run: chown 0 ${file}`);
  });

  it('a directory above the home that others can write (not sticky) is refused, naming it; a sticky one (like /tmp) is accepted', () => {
    // Pinned first (the pin itself reads the file, and would be refused), then opened up.
    const open = dir();
    const { ks } = pinned(open);
    chmodSync(open, 0o777);
    refused(() => new KnownServices(ks).list(), new RegExp(`^directory ${open.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is writable by other users \\(mode 0777\\), so they could replace .*known_services\\.json`), `run: chmod go-w ${open}`);
    const group = dir();
    const g = pinned(group);
    chmodSync(group, 0o770);
    refused(() => new KnownServices(g.ks).list(), /mode 0770/, `run: chmod go-w ${group}`);
    const sticky = dir(0o1777);
    assert.equal(new KnownServices(pinned(sticky).ks).list().length, 1);
  });

  it('a symlinked directory is checked where it leads', () => {
    const open = dir(0o777);
    const target = join(open, 'real');
    mkdirSync(target, { mode: 0o700 });
    const link = join(dir(), 'link');
    symlinkSync(target, link);
    const f = join(link, 'pin.json');
    writeFileSync(f, '{}', { mode: 0o644 });
    refused(() => checkTrustedPath(f), new RegExp(`^directory ${open.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is writable`), `run: chmod go-w ${open}`);
    refused(() => readTrustFile(f), /is writable by other users/, `run: chmod go-w ${open}`);
  });

  it('through the CLI: a group-writable service.json of an enrollee is refused by credential verify (exit 1), and a home below a world-writable directory too', async () => {
    const parent = dir();
    const home = join(parent, 'device');
    await ok(['enrollee', 'init', '--name', 'Robot Pin'], { home });
    const service = join(home, 'enrollee', 'service.json');
    writeFileSync(service, `${JSON.stringify({ service_key: toHex(generateX25519().publicKey) })}\n`);
    chmodSync(service, 0o664);
    assertFailure(await run(['credential', 'verify', 'OECR1:AAAA'], { home }), 1, `${service} is writable by other users (mode 0664), and it carries trust`, `chmod go-w ${service}`);
    chmodSync(service, 0o644);
    const fixed = await run(['credential', 'verify', 'OECR1:AAAA'], { home });
    assert.ok(!fixed.stderr.includes('carries trust'), fixed.stderr);
    chmodSync(parent, 0o777);
    assertFailure(await run(['credential', 'verify', 'OECR1:AAAA'], { home }), 1, `directory ${parent} is writable by other users (mode 0777)`, `chmod go-w ${parent}`);
  });
});
