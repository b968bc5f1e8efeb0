/**
 * The audit log's hash chain (src/audit/chain.ts) and its SQLite table (src/store/audit.ts):
 * canonical JSON, the entry hash, and verifyChain naming each kind of tampering by seq.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AUDIT_GENESIS, canonicalJson, entryHash, entryText, verifyChain, type AuditRow } from '../../src/audit/chain.js';
import { sha256 } from '../../src/crypto/hash.js';
import { toHex, utf8 } from '../../src/crypto/bytes.js';
import { AuditStore } from '../../src/store/audit.js';
import { SqliteStore } from '../../src/store/sqlite.js';

function chain(n: number): AuditRow[] {
  const rows: AuditRow[] = [];
  let prev = AUDIT_GENESIS;
  for (let seq = 1; seq <= n; seq++) {
    const time = new Date(Date.UTC(2026, 10, 21, 15, 31, seq)).toISOString();
    const fields = canonicalJson({ enrollee: `e${seq}`, reason: seq % 2 ? 'ERR_REPLAY: x' : undefined });
    const hash = entryHash(prev, seq, time, 'accepted', fields);
    rows.push({ seq, time, event: 'accepted', fields, prev, hash });
    prev = hash;
  }
  return rows;
}

describe('canonical JSON and the entry hash', () => {
  it('sorts keys, drops undefined, writes no whitespace, and re-parses to the same text', () => {
    const text = canonicalJson({ b: 1, a: 'x', c: undefined, d: [1, null, 'é'], e: { z: true, y: null } });
    assert.equal(text, '{"a":"x","b":1,"d":[1,null,"é"],"e":{"y":null,"z":true}}');
    assert.equal(canonicalJson(JSON.parse(text)), text);
  });

  it('turns bytes into hex, non-finite numbers into null, and cuts long strings', () => {
    assert.equal(canonicalJson({ k: Uint8Array.of(1, 255) }), '{"k":"01ff"}');
    assert.equal(canonicalJson({ n: Number.NaN, i: Infinity }), '{"i":null,"n":null}');
    const long = canonicalJson({ s: 'x'.repeat(5000) });
    assert.ok(long.length < 1100 && long.endsWith('…"}'));
  });

  it('hash = SHA-256(prev ‖ {"event","fields","seq","time"}), the documented formula', () => {
    const prev = new Uint8Array(32).fill(7);
    const text = entryText(3, '2026-11-21T15:31:37.408Z', 'approved', '{"enrollee":"ab"}');
    assert.equal(text, '{"event":"approved","fields":{"enrollee":"ab"},"seq":3,"time":"2026-11-21T15:31:37.408Z"}');
    assert.deepEqual(entryHash(prev, 3, '2026-11-21T15:31:37.408Z', 'approved', '{"enrollee":"ab"}'), sha256(prev, utf8(text)));
  });
});

describe('verifyChain', () => {
  it('an intact chain verifies, with its head', () => {
    const rows = chain(5);
    const r = verifyChain(rows);
    assert.deepEqual(r.problems, []);
    assert.equal(r.entries, 5);
    assert.deepEqual(r.head, { seq: 5, hash: toHex(rows[4]!.hash) });
    assert.deepEqual(verifyChain([]).problems, []);
  });

  it('an edited entry is named, and only it', () => {
    const rows = chain(5);
    rows[2] = { ...rows[2]!, fields: rows[2]!.fields.replace('e3', 'e9') };
    assert.deepEqual(verifyChain(rows).problems, [{ seq: 3, problem: 'edited: its content does not match its hash' }]);
  });

  it('a removed entry is named as missing; several removed ones as a range', () => {
    const rows = chain(6);
    assert.deepEqual(verifyChain([...rows.slice(0, 2), ...rows.slice(3)]).problems, [{ seq: 3, problem: 'missing: the entry was removed' }]);
    assert.match(verifyChain([...rows.slice(0, 1), ...rows.slice(4)]).problems[0]!.problem, /seq 2\.\.4/);
    assert.match(verifyChain(rows.slice(2)).problems[0]!.problem, /missing: 2 entries \(seq 1\.\.2\)/);
  });

  it('two swapped entries are both named as reordered', () => {
    const rows = chain(6);
    const swapped = rows.map((r) => ({ ...r }));
    for (const k of ['time', 'event', 'fields', 'prev', 'hash'] as const) {
      (swapped[1] as any)[k] = rows[3]![k];
      (swapped[3] as any)[k] = rows[1]![k];
    }
    assert.deepEqual(verifyChain(swapped).problems, [
      { seq: 2, problem: 'holds the entry written as seq 4: entries were reordered or renumbered' },
      { seq: 4, problem: 'holds the entry written as seq 2: entries were reordered or renumbered' },
    ]);
  });

  it('an entry edited and re-hashed shows at the next link', () => {
    const rows = chain(5);
    const fields = rows[1]!.fields.replace('e2', 'eX');
    rows[1] = { ...rows[1]!, fields, hash: entryHash(rows[1]!.prev, 2, rows[1]!.time, rows[1]!.event, fields) };
    const p = verifyChain(rows).problems;
    assert.equal(p.length, 1);
    assert.equal(p[0]!.seq, 3);
    assert.match(p[0]!.problem, /does not follow seq 2/);
  });

  it('removing the newest entries is caught only against a head recorded earlier', () => {
    const rows = chain(5);
    const head = toHex(rows[4]!.hash);
    assert.deepEqual(verifyChain(rows.slice(0, 4)).problems, []);
    const r = verifyChain(rows.slice(0, 4), { expectHead: head });
    assert.equal(r.headFound, false);
    assert.match(r.problems[0]!.problem, /expected head .* is not in the log/);
    // A head from an earlier, shorter log is still found in the longer one.
    assert.deepEqual(verifyChain(rows, { expectHead: toHex(rows[2]!.hash) }).problems, []);
  });
});

describe('AuditStore (SQLite)', () => {
  let dir: string;
  let path: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ockam-audit-'));
    path = join(dir, 'store.db');
    await SqliteStore.open(path).close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('appends a chain across connections (as several processes would) that verifies', () => {
    const a = AuditStore.open(path);
    const b = AuditStore.open(path);
    a.append([{ time: '2026-11-21T00:00:00.000Z', event: 'listening', fields: { address: '127.0.0.1:1' } }]);
    b.append([{ time: '2026-11-21T00:00:01.000Z', event: 'enrollee-revoked', fields: { enrollee: 'aa' } }]);
    const last = a.append([
      { time: '2026-11-21T00:00:02.000Z', event: 'accepted', fields: { enrollee: 'bb', name: 'Robot Axiom' } },
      { time: '2026-11-21T00:00:03.000Z', event: 'rejected', fields: { reason: 'ERR_HOOK_REJECTED: no' } },
    ]);
    assert.equal(last?.seq, 4);
    const rows = [...b.rows()];
    assert.deepEqual(rows.map((r) => r.event), ['listening', 'enrollee-revoked', 'accepted', 'rejected']);
    assert.deepEqual(verifyChain(rows).problems, []);
    assert.equal(a.count(), 4);
    a.close();
    b.close();
  });

  it('a read-only open of a store without the table reads as empty', async () => {
    const p2 = join(dir, 'fresh.db');
    await SqliteStore.open(p2).close();
    const ro = AuditStore.open(p2, { readonly: true });
    assert.equal(ro.count(), 0);
    assert.deepEqual([...ro.rows()], []);
    ro.close();
  });

  it('a row edited in the file is found by verify', () => {
    const db = new Database(path);
    db.prepare(`UPDATE audit SET fields = replace(fields, 'Robot', 'Robbo') WHERE seq = 3`).run();
    db.close();
    const ro = AuditStore.open(path, { readonly: true });
    assert.deepEqual(verifyChain(ro.rows()).problems, [{ seq: 3, problem: 'edited: its content does not match its hash' }]);
    ro.close();
  });
});
