/**
 * Which process serves a home: `service start` on a SQLite store writes its pid to
 * `<home>/service/service.pid` once its store is open, and removes the file when it exits. `service
 * restore` refuses while that process runs (replacing the store under a running service
 * would lose its open transactions and confuse its connections), and `service status` says
 * whether one runs. A file left by a crash names a process that is gone: it is ignored.
 *
 * PostgreSQL replicas may share one home, so they write no pid file; `service status`
 * reads their connections from the database instead (status.ts).
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PID_FILE = 'service.pid';

/** Records this process as the one serving the service directory `dir`; returns the remover. */
export function markRunning(dir: string): () => void {
  const path = join(dir, PID_FILE);
  // Another live service on this home (this one will fail to listen beside it): its mark stays.
  if (runningPid(dir) !== undefined) return () => undefined;
  try {
    writeFileSync(path, `${process.pid}\n`, { mode: 0o600 });
  } catch {
    return () => undefined; // a read-only home still serves; restore then cannot tell
  }
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) rmSync(path, { force: true });
    } catch {
      // gone already
    }
  };
  process.once('exit', remove);
  return remove;
}

/** The pid of the live process serving `dir`, if its pid file names one. */
export function runningPid(dir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, PID_FILE), 'utf8');
  } catch {
    return undefined;
  }
  if (!/^\d{1,10}\s*$/.test(text)) return undefined;
  const pid = Number(text.trim());
  if (pid <= 1 || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    // EPERM: it exists, as another user's process.
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}
