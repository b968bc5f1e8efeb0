/**
 * The audit log's hash chain, pure (docs/walkthrough.md "Lifecycle: audit, hooks, credentials";
 * docs/protocol.md §3.3 lists the table). Each entry is
 *
 *   (seq, time, event, fields, prev, hash)
 *   entry = canonical JSON of {"event": event, "fields": fields, "seq": seq, "time": time}
 *   hash  = SHA-256(prev ‖ UTF-8(entry)),   prev = the previous entry's hash (32 zero bytes for seq 1)
 *
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, strings and
 * numbers as JSON.stringify writes them (RFC 8785, JCS, for the values written here:
 * strings, integers, booleans, null, arrays, objects). `fields` is stored already in that
 * form, so an exported entry re-verifies from its parsed fields.
 *
 * A chain makes every entry depend on all before it: editing, reordering or removing one
 * shows at that entry (verifyChain names the seq and what is wrong). Removing the newest
 * entries leaves a shorter chain that is still consistent; only a head (seq and hash)
 * recorded elsewhere shows it (`service audit verify --head HASH`). Whoever can write the
 * store can also rewrite the whole chain from some entry on: the chain is evidence against
 * partial or careless tampering, and an exported head anchors it against the rest.
 */
import { sha256 } from '../crypto/hash.js';
import { equalBytes, toHex, utf8 } from '../crypto/bytes.js';

export const AUDIT_HASH_LEN = 32;
/** prev of seq 1. */
export const AUDIT_GENESIS: Uint8Array = new Uint8Array(AUDIT_HASH_LEN);
/** Longest string value kept in an entry's fields; longer ones are cut (with a marker). */
export const AUDIT_MAX_STRING = 1024;
/** Deepest nesting kept in fields. */
const MAX_DEPTH = 8;

export interface AuditRow {
  seq: number;
  time: string;
  event: string;
  /** Canonical JSON of an object. */
  fields: string;
  prev: Uint8Array;
  hash: Uint8Array;
}

/**
 * Canonical JSON (see the file comment). Undefined values and functions are dropped from
 * objects (null in arrays), non-finite numbers become null, bigints become strings, byte
 * arrays become hex; strings over AUDIT_MAX_STRING characters are cut and end with "…".
 */
export function canonicalJson(value: unknown, depth = 0): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > AUDIT_MAX_STRING ? `${value.slice(0, AUDIT_MAX_STRING)}…` : value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return JSON.stringify(value.toString());
    case 'object': {
      if (depth >= MAX_DEPTH) return '"…"';
      if (value instanceof Uint8Array) return JSON.stringify(toHex(value));
      if (Array.isArray(value)) return `[${value.map((v) => (v === undefined || typeof v === 'function' ? 'null' : canonicalJson(v, depth + 1))).join(',')}]`;
      if (value instanceof Date) return JSON.stringify(Number.isFinite(value.getTime()) ? value.toISOString() : null);
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined && typeof v !== 'function' && typeof v !== 'symbol')
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v, depth + 1)}`).join(',')}}`;
    }
    default:
      return 'null';
  }
}

/** The canonical entry text for (seq, time, event, fields), `fields` already canonical. */
export function entryText(seq: number, time: string, event: string, fields: string): string {
  return `{"event":${JSON.stringify(event)},"fields":${fields},"seq":${seq},"time":${JSON.stringify(time)}}`;
}

/** hash = SHA-256(prev ‖ UTF-8(entry)). */
export function entryHash(prev: Uint8Array, seq: number, time: string, event: string, fields: string): Uint8Array {
  return sha256(prev, utf8(entryText(seq, time, event, fields)));
}

export interface ChainProblem {
  /** The seq the problem is at (for removed entries: the first missing seq). */
  seq: number;
  problem: string;
}

export interface ChainReport {
  entries: number;
  head: { seq: number; hash: string } | undefined;
  problems: ChainProblem[];
  /** Whether a `head` the caller expected was found in the chain (undefined if none was given). */
  headFound?: boolean;
}

/** How far from its own seq a moved entry is looked for, to say "reordered" rather than "edited". */
const REORDER_WINDOW = 64;

/**
 * Verifies rows in seq order and names every problem by seq:
 * - a gap in seq: "missing: removed";
 * - a row whose hash is not the hash of its own content: "holds the entry written as seq N:
 *   reordered" when its content hashes right under a nearby seq, else "edited";
 * - a row whose prev is not the previous row's hash (and neither row has a problem of its
 *   own already): the previous entry was rewritten and re-hashed, or this one was;
 * - malformed rows (NULLs, wrong lengths).
 * `expectHead` (hex), when given, must be the hash of some entry: a head recorded earlier
 * that is gone means the newest entries were removed or rewritten.
 */
export function verifyChain(rows: Iterable<AuditRow>, opts: { expectHead?: string } = {}): ChainReport {
  const problems: ChainProblem[] = [];
  let entries = 0;
  let prevRow: AuditRow | undefined;
  let prevHadProblem = false;
  let headFound = false;
  for (const r of rows) {
    entries++;
    const expectedSeq = prevRow === undefined ? 1 : prevRow.seq + 1;
    let gap = false;
    if (r.seq > expectedSeq) {
      gap = true;
      const n = r.seq - expectedSeq;
      problems.push({
        seq: expectedSeq,
        problem: n === 1 ? 'missing: the entry was removed' : `missing: ${n} entries (seq ${expectedSeq}..${r.seq - 1}) were removed`,
      });
    }
    if (!(r.prev instanceof Uint8Array) || r.prev.length !== AUDIT_HASH_LEN || !(r.hash instanceof Uint8Array) || r.hash.length !== AUDIT_HASH_LEN || typeof r.time !== 'string' || typeof r.event !== 'string' || typeof r.fields !== 'string') {
      problems.push({ seq: r.seq, problem: 'malformed: a column is missing or has the wrong type or length' });
      prevRow = r;
      prevHadProblem = true;
      continue;
    }
    if (opts.expectHead !== undefined && toHex(r.hash) === opts.expectHead) headFound = true;
    let hasProblem = false;
    if (!equalBytes(entryHash(r.prev, r.seq, r.time, r.event, r.fields), r.hash)) {
      hasProblem = true;
      let movedFrom: number | undefined;
      for (let d = 1; d <= REORDER_WINDOW && movedFrom === undefined; d++) {
        for (const s of [r.seq - d, r.seq + d]) {
          if (s >= 1 && equalBytes(entryHash(r.prev, s, r.time, r.event, r.fields), r.hash)) {
            movedFrom = s;
            break;
          }
        }
      }
      problems.push({
        seq: r.seq,
        problem:
          movedFrom !== undefined
            ? `holds the entry written as seq ${movedFrom}: entries were reordered or renumbered`
            : 'edited: its content does not match its hash',
      });
    } else {
      const expectedPrev = prevRow === undefined ? AUDIT_GENESIS : prevRow.hash;
      const linked = expectedPrev instanceof Uint8Array && equalBytes(r.prev, expectedPrev);
      if (!linked && !gap && !prevHadProblem) {
        hasProblem = true;
        problems.push(
          prevRow === undefined
            ? { seq: r.seq, problem: 'does not start the chain: its prev is not the genesis value (earlier entries were removed)' }
            : { seq: r.seq, problem: `does not follow seq ${prevRow.seq}: its prev is not seq ${prevRow.seq}'s hash (seq ${prevRow.seq} was rewritten and re-hashed, or this entry was)` },
        );
      }
    }
    prevRow = r;
    prevHadProblem = hasProblem;
  }
  const report: ChainReport = {
    entries,
    head: prevRow && prevRow.hash instanceof Uint8Array ? { seq: prevRow.seq, hash: toHex(prevRow.hash) } : undefined,
    problems,
  };
  if (opts.expectHead !== undefined) {
    report.headFound = headFound;
    if (!headFound) {
      problems.push({
        seq: (prevRow?.seq ?? 0) + 1,
        problem: `the expected head ${opts.expectHead} is not in the log: the newest entries were removed or rewritten`,
      });
    }
  }
  return report;
}
