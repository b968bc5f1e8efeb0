/**
 * Free TCP ports for tests that must name a port before the process that listens on it has
 * started (`service init --address`, then `service start --listen`).
 *
 * A port from listen(0) is in the kernel's ephemeral range (ip_local_port_range), the range
 * every outgoing connection and every other listen(0) on the machine draws from too, and
 * between our check and the service's bind it is free for anyone to take: on a busy machine
 * (long gaps, thousands of connections from the test file running beside this one, other
 * checkouts' suites) that happened. So ports come from below the ephemeral range, which the
 * kernel never hands out by itself, and are reserved across processes with an exclusive
 * lock file per port, so that two test processes never pick the same one; a reservation
 * ends with its process.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LOCKS = join(tmpdir(), 'ockam-enroll-test-ports');
/** The lowest port handed out: above the well-known and registered ports tests and tools use. */
const LOWEST = 20_000;
const held = new Set<number>();

/** The first port of the kernel's ephemeral range (32768 when unknown: Linux's default). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 1024 && low <= 65535 ? low : 32768;
  } catch {
    return 32768;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock file of `port` for this process; false when a live process holds it. */
function reserve(port: number): boolean {
  const file = join(LOCKS, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      held.add(port);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A lock left by a process that is gone (killed before its exit handler ran) is stale.
      let owner = NaN;
      try {
        owner = Number(readFileSync(file, 'utf8'));
      } catch {
        continue; // removed meanwhile: try again
      }
      // An empty file is a lock being written right now; a live owner keeps its port.
      if (!Number.isInteger(owner) || owner <= 0 || alive(owner)) return false;
      try {
        unlinkSync(file);
      } catch {
        // another process removed it first; the retry decides
      }
    }
  }
  return false;
}

process.on('exit', () => {
  for (const port of held) {
    try {
      unlinkSync(join(LOCKS, String(port)));
    } catch {
      // already gone
    }
  }
});

/** Whether 127.0.0.1:port can be listened on right now. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A TCP port on 127.0.0.1 that is free, outside the ephemeral range, and reserved for this
 * process (no other test process gets it from here while this one runs).
 */
export async function freePort(): Promise<number> {
  mkdirSync(LOCKS, { recursive: true, mode: 0o1777 });
  const high = ephemeralLow() - 1;
  const low = high - LOWEST >= 1000 ? LOWEST : 1025;
  for (let tries = 0; tries < 1000; tries++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (held.has(port) || !reserve(port)) continue;
    if (await bindable(port)) return port;
    // Someone outside the tests listens there; keep the reservation so we do not ask again.
  }
  throw new Error(`no free port found in ${low}..${high} after 1000 tries (see ${LOCKS})`);
}
