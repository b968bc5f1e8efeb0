/**
 * Runs a library-level test file with the per-message work on the pool (src/pool): when
 * OCKAM_ENROLL_TEST_WORKERS is N > 0, `testPool(svc)` starts N workers for `svc` and registers
 * them as `service start` does, so that every handleEnrollment of the file goes through them.
 * test/pool/*-workers-N.test.ts set it and import the file, whose tests stay as they are.
 */
import { EnrollPool } from '../../src/pool/pool.js';
import type { ServiceHome } from '../../src/roles/service/home.js';
import { enrollLifecycleFor, setEnrollLifecycle } from '../../src/roles/service/hooks.js';

export const TEST_WORKERS_ENV = 'OCKAM_ENROLL_TEST_WORKERS';

export async function testPool(svc: ServiceHome): Promise<EnrollPool | undefined> {
  const n = Number(process.env[TEST_WORKERS_ENV] ?? 0);
  if (!Number.isSafeInteger(n) || n <= 0) return undefined;
  const errors: string[] = [];
  const pool = EnrollPool.start(svc, { workers: n, onError: (reason) => errors.push(reason) });
  await pool.ready();
  if (pool.threadIds().length !== n) throw new Error(`the pool started ${pool.threadIds().length} of ${n} workers: ${errors.join('; ')}`);
  setEnrollLifecycle(svc, { ...enrollLifecycleFor(svc), pool });
  return pool;
}
