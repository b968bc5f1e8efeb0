/**
 * What the portal tests put behind an outlet: a real HTTP server (node:http) on loopback with
 * a greeting, 50 MB of deterministic bytes down, a SHA-256 of what is sent up, and a slow
 * stream; and curl, the independent client that fetches through an inlet.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { execa } from 'execa';
import { freePort } from '../helpers/ports.js';

export const BIG = 50 * 1024 * 1024;

/** Deterministic bytes: 16 blocks of 64 KiB of SHA-256 output, repeated to BIG bytes. */
export class Payload {
  readonly blocks: Buffer[];
  readonly sha256: string;

  constructor(seed: string) {
    this.blocks = Array.from({ length: 16 }, (_, i) => {
      const out = Buffer.allocUnsafe(64 * 1024);
      for (let off = 0; off < out.length; off += 32) createHash('sha256').update(`${seed}${i}:${off}`).digest().copy(out, off);
      return out;
    });
    const h = createHash('sha256');
    for (let n = 0; n < this.count; n++) h.update(this.blocks[n % this.blocks.length]!);
    this.sha256 = h.digest('hex');
  }

  get count(): number {
    return BIG / this.blocks[0]!.length;
  }

  bytes(): Buffer {
    return Buffer.concat(Array.from({ length: this.count }, (_, n) => this.blocks[n % this.blocks.length]!));
  }
}

/**
 * GET /hello: `${greeting}, ${x-who header or "anyone"}\n`; GET /big: the payload, with
 * backpressure; POST /sha: `LENGTH SHA256` of the body; GET /slow: 16 KiB every 20 ms until
 * the client goes away.
 */
export async function startTarget(greeting: string, payload: Payload): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.url === '/hello') {
      res.end(`${greeting}, ${req.headers['x-who'] ?? 'anyone'}\n`);
    } else if (req.url === '/big') {
      res.writeHead(200, { 'content-length': String(BIG) });
      let n = 0;
      const pump = () => {
        while (n < payload.count) {
          const more = res.write(payload.blocks[n % payload.blocks.length]!);
          n++;
          if (!more) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else if (req.url === '/sha') {
      const h = createHash('sha256');
      let len = 0;
      req.on('data', (c: Buffer) => {
        h.update(c);
        len += c.length;
      });
      req.on('end', () => res.end(`${len} ${h.digest('hex')}`));
    } else if (req.url === '/slow') {
      res.writeHead(200);
      const t = setInterval(() => res.write(payload.blocks[0]!.subarray(0, 16384)), 20);
      res.on('close', () => clearInterval(t));
    } else {
      res.writeHead(404).end();
    }
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { server, port };
}

/** curl -sS, never rejecting: the test reads exitCode, stdout and stderr (as bytes). */
export function curl(args: readonly string[], opts: { input?: Buffer; maxTimeS?: number } = {}) {
  return execa('curl', ['-sS', '--max-time', String(opts.maxTimeS ?? 30), ...args], { reject: false, encoding: 'buffer', stripFinalNewline: false, ...(opts.input ? { input: opts.input } : {}) });
}
