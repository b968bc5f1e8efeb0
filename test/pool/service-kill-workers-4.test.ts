/**
 * test/crash/service-kill.test.ts, unchanged, against `service start --workers 4` (through
 * OCKAM_ENROLL_WORKERS): no acceptance lost and no OPK used twice when the service is killed,
 * with the per-message work on the pool.
 */
process.env.OCKAM_ENROLL_WORKERS = '4';
await import('../crash/service-kill.test.js');
