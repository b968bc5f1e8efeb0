/**
 * test/roles/enroll-stream.test.ts, unchanged, against `service start --workers 4` (through
 * OCKAM_ENROLL_WORKERS, which the spawned services inherit): ordered answers on a stream,
 * nothing committed that cannot be answered, with the per-message work on the pool.
 */
process.env.OCKAM_ENROLL_WORKERS = '4';
await import('../roles/enroll-stream.test.js');
