/**
 * test/roles/service-enroll.test.ts, unchanged, with the per-message work on a pool of 1 worker
 * thread(s) (issue 23: the invariant suite runs with --workers 1 and --workers 4).
 */
import { TEST_WORKERS_ENV } from '../helpers/pool.js';

process.env[TEST_WORKERS_ENV] = '1';
await import('../roles/service-enroll.test.js');
