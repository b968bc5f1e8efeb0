/**
 * `service audit verify` and `service audit export`: read the audit log (src/audit) from the
 * service's store. Neither needs IK_A or its passphrase: the chain is plain SHA-256, and
 * both open the store read-only, beside a running service.
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { verifyChain, type AuditRow } from '../audit/chain.js';
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { AuditStore } from '../store/audit.js';
import { resolveStoreLocation, type ServiceSettings } from '../roles/service/home.js';
import { action, groupExamples, leaf } from './command.js';
import { PROG } from './output.js';

/** Problems printed one per line before the error; the rest are counted. */
const MAX_PROBLEM_LINES = 50;

/** The audit log's rows, read-only, from the home's store (SQLite) or its PostgreSQL database. */
interface AuditReader {
  rows(opts?: { sinceSeq?: number }): Iterable<AuditRow> | AsyncIterable<AuditRow>;
  close(): Promise<void>;
}

async function openAudit(home: string, opts: Record<string, unknown>): Promise<AuditReader> {
  const dir = join(home, 'service');
  const { readRoleSettings } = await import('./settings.js');
  const settings = readRoleSettings(dir) as Partial<ServiceSettings>;
  const location = resolveStoreLocation(settings, typeof opts.store === 'string' ? opts.store : undefined);
  if (location.kind === 'postgres') {
    const { PgDatabase } = await import('../store/pg/database.js');
    const { PgAuditStore } = await import('../store/pg/audit.js');
    const db = await PgDatabase.open(location, { poolSize: 1 });
    const store = new PgAuditStore(db);
    return { rows: (o) => store.rows(o), close: () => db.close() };
  }
  const path = join(dir, 'store.db');
  if (!existsSync(path)) {
    throw new EnrollError('ERR_KEY_MISSING', `no service is initialised in ${dir}`, {
      hint: 'run `ockam-enroll service init` first, or pass the right --home',
    });
  }
  const store = AuditStore.open(path, { readonly: true });
  return { rows: (o) => store.rows(o), close: async () => store.close() };
}

/**
 * The rows as verifyChain and export take them. A PostgreSQL log is read a page at a time
 * over the network (store/pg/audit.ts) and held in memory for the synchronous verifier.
 */
async function collect(rows: Iterable<AuditRow> | AsyncIterable<AuditRow>): Promise<Iterable<AuditRow>> {
  if (Symbol.iterator in rows) return rows;
  const out: AuditRow[] = [];
  for await (const r of rows) out.push(r);
  return out;
}

/** One entry as exported: fields parsed back into an object, hashes in hex. */
function exported(r: AuditRow) {
  let fields: unknown;
  try {
    fields = JSON.parse(r.fields);
  } catch {
    fields = r.fields; // not JSON: exported as it is; verify names it
  }
  return {
    seq: r.seq,
    time: r.time,
    event: r.event,
    fields,
    prev: r.prev instanceof Uint8Array ? toHex(r.prev) : null,
    hash: r.hash instanceof Uint8Array ? toHex(r.hash) : null,
  };
}

/** `k=v` pairs as the decision log writes them. */
function humanFields(fields: unknown): string {
  if (fields === null || typeof fields !== 'object') return JSON.stringify(fields);
  return Object.entries(fields as Record<string, unknown>)
    .filter(([, v]) => v !== null && v !== '')
    .map(([k, v]) => `${k}=${typeof v === 'string' ? (/[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
    .join(' ');
}

export function register(service: Command): void {
  const audit = service
    .command('audit')
    .description('the hash-chained audit log of every decision')
    .addHelpText(
      'after',
      groupExamples([
        'ockam-enroll service audit verify  # prints the head: keep it somewhere else',
        'ockam-enroll service audit export --json > audit.json',
        'ockam-enroll service audit verify --head <hash>  # later: the kept head must still be in the log',
      ]),
    );

  leaf(
    audit,
    'verify',
    'check the audit log\'s hash chain: every edited, reordered or removed entry is named by its seq (exit 1)',
    'ockam-enroll service audit verify\nockam-enroll service audit verify --head 5d41402abc4b2a76b9719d911017c592ae4b6e6dd6b6a1f3ec8d1f3b2c9e1a07',
  )
    .option('--head <hash>', 'the head hash from an earlier verify or export: it must still be in the log (this also catches removal of the newest entries)')
    .action(
      action(async ({ out, home, opts }) => {
        let expectHead: string | undefined;
        if (opts.head !== undefined) {
          expectHead = String(opts.head).trim().toLowerCase();
          if (!/^[0-9a-f]{64}$/.test(expectHead)) throw new EnrollError('ERR_USAGE', '--head must be 64 hex characters (a SHA-256 hash)');
        }
        const store = await openAudit(home, opts);
        let report;
        try {
          report = verifyChain(await collect(store.rows()), expectHead !== undefined ? { expectHead } : {});
        } finally {
          await store.close();
        }
        if (report.problems.length > 0) {
          // Every problem on stderr (even with --quiet: they are the finding), then the error.
          for (const p of report.problems.slice(0, MAX_PROBLEM_LINES)) process.stderr.write(`${PROG}: audit: seq ${p.seq}: ${p.problem}\n`);
          if (report.problems.length > MAX_PROBLEM_LINES) process.stderr.write(`${PROG}: audit: … and ${report.problems.length - MAX_PROBLEM_LINES} more problems\n`);
          const first = report.problems[0]!;
          const more = report.problems.length - 1;
          throw new EnrollError(
            'ERR_AUDIT_BROKEN',
            `the audit log does not verify: seq ${first.seq}: ${first.problem}${more > 0 ? ` (and ${more} more problem${more === 1 ? '' : 's'})` : ''}`,
            { hint: 'the store was changed outside ockam-enroll; compare with an earlier `service audit export`' },
          );
        }
        out.result(
          { ok: true, entries: report.entries, head: report.head ?? null },
          report.head === undefined ? 'ok: the audit log is empty' : `ok: ${report.entries} entries, head seq ${report.head.seq} ${report.head.hash}`,
        );
      }),
    );

  leaf(
    audit,
    'export',
    'write the audit log: one line per entry, or with --json one object {"format":"ockam-enroll-audit/1","entries":[…],"head":…}',
    'ockam-enroll service audit export --json > audit.json\nockam-enroll service audit export --since 100',
  )
    .option('--since <seq>', 'only entries from this seq on')
    .action(
      action(async ({ out, home, opts }) => {
        let since = 0;
        if (opts.since !== undefined) {
          if (!/^\d{1,15}$/.test(String(opts.since))) throw new EnrollError('ERR_USAGE', '--since must be a whole number (a seq)');
          since = Number(opts.since);
        }
        const store = await openAudit(home, opts);
        try {
          const entries = [...(await collect(store.rows({ sinceSeq: since })))].map(exported);
          const last = entries[entries.length - 1];
          out.result(
            { format: 'ockam-enroll-audit/1', entries, head: last ? { seq: last.seq, hash: last.hash } : null },
            () =>
              entries.length === 0
                ? ''
                : entries.map((e) => `${e.seq} ${e.time} ${e.event} ${humanFields(e.fields)} hash=${e.hash ?? '-'}`).join('\n'),
          );
        } finally {
          await store.close();
        }
      }),
    );
}
