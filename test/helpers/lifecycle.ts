/**
 * Shared steps of the audit, hook and credential end-to-end tests (test/cli/lifecycle-*):
 * restarting a world's service with extra `service start` flags, approving and joining a
 * device, and reading the audit log through the CLI.
 */
import assert from 'node:assert/strict';
import { ok, okJson, run, sleep, startService, WAIT_TIMEOUT_MS, type Enrollee, type RunResult, type ServiceHandle, type World } from './cli.js';
import { patience } from './pace.js';

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, REJECTED: 3, UNREACHABLE: 4, AUTH: 5 } as const;

/** `service start` on the world's port with `extra` flags; resolves once it listens. */
export function startServiceWith(home: string, port: number, httpsPort: number | undefined, extra: readonly string[]): Promise<ServiceHandle> {
  return startService(home, port, httpsPort, extra);
}

/** Stops the world's service and starts it again with `extra` flags. */
export async function restartWith(w: World, extra: readonly string[]): Promise<void> {
  await w.service.stop();
  w.service = await startServiceWith(w.serviceHome, w.port, w.httpsPort, extra);
}

/** Approves the enrollee's card with the next fresh bundle; returns the bundle text to join with. */
export async function approve(w: World, e: Enrollee): Promise<string> {
  return (await ok(['enroller', 'approve', e.card], { home: w.enrollerHome })).stdout.trim();
}

/** `enrollee join --bundle TEXT` (not asserting the outcome). */
export function join(e: Enrollee, bundleText: string, json = false): Promise<RunResult> {
  return run(['enrollee', 'join', '--bundle', bundleText, ...(json ? ['--json'] : [])], { home: e.home });
}

export interface ExportedEntry {
  seq: number;
  time: string;
  event: string;
  fields: Record<string, unknown>;
  prev: string;
  hash: string;
}

/**
 * Polls the audit log (the service appends from a thread of its own) until an entry matches;
 * fails after timeoutMs (the bound on an idle machine; scaled by patience()).
 */
export async function audited(serviceHome: string, pred: (e: ExportedEntry) => boolean, timeoutMs = WAIT_TIMEOUT_MS): Promise<ExportedEntry> {
  const end = Date.now() + (await patience(timeoutMs));
  for (;;) {
    const entries = await auditEntries(serviceHome);
    const hit = entries.find(pred);
    if (hit !== undefined) return hit;
    if (Date.now() > end) throw new Error(`no matching audit entry in:\n${entries.map((e) => JSON.stringify(e)).join('\n')}`);
    await sleep(100);
  }
}

/**
 * audited() for several entries at once: resolves with the first entry each predicate
 * matches, from one `service audit export` per poll instead of one per entry (each export is
 * a process start, seconds on a busy machine: issue 24). Fails after timeoutMs (scaled), naming
 * the entries still missing.
 */
export async function auditedEach<K extends string>(serviceHome: string, preds: Record<K, (e: ExportedEntry) => boolean>, timeoutMs = WAIT_TIMEOUT_MS): Promise<Record<K, ExportedEntry>> {
  const end = Date.now() + (await patience(timeoutMs));
  const keys = Object.keys(preds) as K[];
  for (;;) {
    const entries = await auditEntries(serviceHome);
    const found = {} as Record<K, ExportedEntry>;
    const missing: K[] = [];
    for (const k of keys) {
      const hit = entries.find(preds[k]);
      if (hit === undefined) missing.push(k);
      else found[k] = hit;
    }
    if (missing.length === 0) return found;
    if (Date.now() > end) throw new Error(`no audit entry for ${missing.join(', ')} in:\n${entries.map((e) => JSON.stringify(e)).join('\n')}`);
    await sleep(100);
  }
}

/** `service audit export --json`: the entries. */
export async function auditEntries(serviceHome: string): Promise<ExportedEntry[]> {
  const j = await okJson<{ format: string; entries: ExportedEntry[] }>(['service', 'audit', 'export'], { home: serviceHome });
  assert.equal(j.format, 'ockam-enroll-audit/1');
  return j.entries;
}
