/**
 * A lab for the hostile-input, crash and limit tests (test/fuzz, test/crash, test/limits,
 * test/secrets): a service home prepared through the library (bundles issued and enrollees
 * approved straight in its store, as src/roles/service/enrollers.ts would), enrollment
 * messages computed ahead of time, the real `service start` process with extra flags, and a
 * raw TCP client that sends any bytes and reports what came back and how the connection ended.
 *
 * It builds on test/helpers/cli.ts (processes, temp homes, ports); every wait is bounded.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { concat, equalBytes, toHex } from '../../src/crypto/bytes.js';
import { generateX25519, type KeyPair } from '../../src/crypto/x25519.js';
import { signBundle, type Bundle } from '../../src/protocol/codec/bundle.js';
import type { Attributes } from '../../src/protocol/codec/attributes.js';
import { bundleToText, cardFromText } from '../../src/protocol/codec/text.js';
import { composeMessage, enrolleeId, enrolleeSession, initiate, type InitiateResult } from '../../src/protocol/enrollment/index.js';
import { x3dhInitiatorDh, x3dhKdf, x3dhStateHash } from '../../src/protocol/enrollment/x3dh.js';
import { xeddsaSign } from '../../src/crypto/xeddsa.js';
import {
  ACCEPT_AAD,
  decodeAcceptance,
  ENROLL_STATUS,
  KIND_ENROLL,
  type Acceptance,
} from '../../src/protocol/messages/service.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import type { BundleRecord } from '../../src/store/types.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frame.js';
import { freePort, ok, okJson, sleep, spawnService, tempHome, type Background, type ServiceHandle } from './cli.js';
import { patience } from './pace.js';

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

// ---- fuzz settings

/** Runs per fuzz property and inputs per live fuzz (OCKAM_ENROLL_FUZZ_RUNS; `npm run test:long` sets 100 000). */
export const FUZZ_RUNS = positiveInt(process.env.OCKAM_ENROLL_FUZZ_RUNS, 5000);
/** The fixed seed of every fuzz property (OCKAM_ENROLL_FUZZ_SEED to explore others). Printed on failure. */
export const FUZZ_SEED = positiveInt(process.env.OCKAM_ENROLL_FUZZ_SEED, 0x0c4a3e);

function positiveInt(v: string | undefined, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`expected a positive integer, got ${v}`);
  return n;
}

// ---- a service home prepared through the library

export interface LabEnrollee {
  eikB: KeyPair;
  id: Uint8Array;
  hex: string;
  bundle: Bundle;
  petName: string;
}

/** `service init` through the library, in `<root>/service-home`, with an allowed enroller key. */
export async function initServiceHome(root: string, port: number): Promise<{ home: string; svc: ServiceHome; enroller: KeyPair }> {
  const home = join(root, 'service-home');
  const svc = await ServiceHome.init(home, { address: `tcp://127.0.0.1:${port}`, now: nowSeconds() - 60 });
  const enroller = generateX25519();
  await svc.store.allowEnroller(enroller.publicKey, 'lab enroller', nowSeconds() - 60);
  return { home, svc, enroller };
}

/** Issues `n` bundles to `enroller` the way serveBundles does (fresh OPKs, sealed, one transaction). */
export async function issueBundles(svc: ServiceHome, enroller: Uint8Array, n: number): Promise<Bundle[]> {
  const spk = await svc.store.currentSignedPrekey();
  assert.ok(spk, 'the service has an SPK');
  const now = nowSeconds() - 30;
  const expiresAt = now + svc.settings.bundleTtl;
  const rows: BundleRecord[] = [];
  const bundles: Bundle[] = [];
  for (let i = 0; i < n; i++) {
    const opk = generateX25519();
    const bundleId = new Uint8Array(randomBytes(16));
    bundles.push(
      signBundle(
        { bundleId, ikA: svc.ikA.publicKey, spkA: spk.publicKey, spkSig: spk.signature, opkA: opk.publicKey, expiresAt, addr: svc.settings.address },
        svc.ikA.privateKey,
      ),
    );
    rows.push({
      id: bundleId,
      spkId: spk.id,
      opkPublic: opk.publicKey,
      opkPrivateSealed: svc.sealer.seal(opk.privateKey, 'opk', bundleId),
      addr: svc.settings.address,
      enroller,
      createdAt: now,
      expiresAt,
      state: 'issued',
    });
    opk.wipe();
  }
  await svc.store.insertBundles(rows);
  return bundles;
}

/** Issues one bundle per enrollee and approves each (as an enroller's APPROVE would), with `attributes` if given. */
export async function approveEnrollees(svc: ServiceHome, enroller: Uint8Array, n: number, label = 'lab', attributes?: Attributes): Promise<LabEnrollee[]> {
  const bundles = await issueBundles(svc, enroller, n);
  const out: LabEnrollee[] = [];
  const now = nowSeconds();
  for (let i = 0; i < n; i++) {
    const eikB = generateX25519();
    const id = enrolleeId(eikB.publicKey);
    const e: LabEnrollee = { eikB, id, hex: toHex(id), bundle: bundles[i]!, petName: `${label}-${i}` };
    await svc.store.approve({ enrolleeId: id, eikB: eikB.publicKey, bundleId: e.bundle.bundleId, petName: e.petName, enroller, now, expiresAt: now + 3600, attributes });
    out.push(e);
  }
  return out;
}

/**
 * Makes a real enrollee home with `enrollee init` (CLI), approves its card through the store
 * with a bundle of its own, and returns the home and the bundle's text for `enrollee join --bundle`.
 */
export async function approveCliEnrollee(svc: ServiceHome, enroller: Uint8Array, home: string, name: string): Promise<{ home: string; id: string; bundle: string }> {
  const { card, enrollee_id } = await okJson<{ card: string; enrollee_id: string }>(['enrollee', 'init', '--name', name], { home });
  const [bundle] = await issueBundles(svc, enroller, 1);
  const c = cardFromText(card);
  const now = nowSeconds();
  await svc.store.approve({ enrolleeId: enrolleeId(c.eikB), eikB: c.eikB, bundleId: bundle!.bundleId, petName: name, enroller, now, expiresAt: now + 3600 });
  return { home, id: enrollee_id, bundle: bundleToText(bundle!) };
}

/** A fresh enrollment message for `e` (new EK_B and IK_B each call). */
export function messageFor(e: LabEnrollee): InitiateResult {
  return initiate({ bundle: e.bundle, eikB: e.eikB });
}

/**
 * A message that only a holder of EIK_B's private key and of the bundle can make: it
 * decrypts under SK, and its POP is by another key than the IK_B it names (check 5 fails).
 */
export function badPopMessage(e: LabEnrollee): Uint8Array {
  const ekB = generateX25519();
  const km = concat(
    ...x3dhInitiatorDh({ identity: e.eikB.privateKey, ephemeral: ekB.privateKey, peerIdentity: e.bundle.ikA, peerSignedPrekey: e.bundle.spkA, peerOneTimePrekey: e.bundle.opkA }),
  );
  const ikB = generateX25519();
  const pop = xeddsaSign(generateX25519().privateKey, e.eikB.publicKey, new Uint8Array(randomBytes(64)));
  return composeMessage({ ekB: ekB.publicKey, enrolleeId: e.id, sk: x3dhKdf(km), h: x3dhStateHash(km), addr: e.bundle.addr, ikB: ikB.publicKey, pop });
}

/**
 * What an outsider who has seen a card (EIK_B's public key, hence the id) and even the bundle
 * can send: X3DH run with a key of its own in place of EIK_B, under the victim's id. It
 * cannot compute DH1 = DH(EIK_B, SPK_A), so the message never decrypts at the service.
 */
export function outsiderMessage(victimId: Uint8Array, bundle: Bundle): Uint8Array {
  const m = initiate({ bundle, eikB: generateX25519() }).message.slice();
  m.set(victimId, 32);
  return m;
}

/**
 * Checks an ENROLL_RESPONSE frame for `attempt`: returns the acceptance when the status is 0
 * and the sealed acceptance opens under the enrollee's session key, else undefined.
 */
export function openAcceptance(attempt: InitiateResult, frame: Uint8Array): Acceptance | undefined {
  if (frame.length < 17 || frame[0] !== ENROLL_STATUS.ACCEPTED) return undefined;
  const session = enrolleeSession(attempt.session);
  try {
    const a = decodeAcceptance(session.recv.open(frame.subarray(1), concat(ACCEPT_AAD, attempt.enrolleeId)));
    return equalBytes(a.enrolleeId, attempt.enrolleeId) ? a : undefined;
  } catch {
    return undefined;
  }
}

// ---- the live service

/** A running `service start` (test/helpers/cli.ts spawnService). */
export type LiveService = ServiceHandle;

/**
 * Runs `service start --listen 127.0.0.1:PORT EXTRA…` and resolves once it is listening. Its
 * HTTPS listener (token enrollment) takes a port of the OS's choosing, so that services of
 * tests running side by side never meet on the default 4443.
 */
export function startLiveService(home: string, port: number, extra: readonly string[] = [], env?: Record<string, string>): Promise<LiveService> {
  const args = ['service', 'start', '--listen', `127.0.0.1:${port}`, '--https-listen', '127.0.0.1:0', ...extra];
  return spawnService(args, port, { home, ...(env ? { env } : {}), ready: [/ listening |"decision":"listening"/] });
}

/**
 * A service home in a temp dir with `n` approved enrollees (library-made), and `service start`
 * running on it with `flags`.
 */
export async function serviceWithEnrollees(
  flags: readonly string[],
  n = 0,
  label = 'lab',
): Promise<{ service: LiveService; enrollees: LabEnrollee[]; home: string; root: string; enroller: Uint8Array }> {
  const root = tempHome(label);
  const port = await freePort();
  const made = await initServiceHome(root, port);
  let enrollees: LabEnrollee[] = [];
  try {
    enrollees = await approveEnrollees(made.svc, made.enroller.publicKey, n, label);
  } finally {
    await made.svc.close();
  }
  const service = await startLiveService(made.home, port, flags);
  return { service, enrollees, home: made.home, root, enroller: made.enroller.publicKey };
}

/** Kills a background process with SIGKILL and waits for it to be gone. */
export async function sigkill(bg: Background): Promise<void> {
  if (bg.running()) bg.kill('SIGKILL');
  await bg.done(10_000).catch(() => undefined);
  assert.equal(bg.running(), false, 'the process is gone after SIGKILL');
}

/** Lines of a service log that betray a bug rather than a refusal: an internal error, a stack trace, a crash. */
export function alarmingLines(lines: readonly string[]): string[] {
  return lines.filter(
    (l) =>
      / internal[:=]|reason="?internal|internal error|Unhandled|unhandled|TypeError|RangeError|ReferenceError|SyntaxError|FATAL|Segmentation|^\s+at .+:\d+:\d+\)?$/.test(l),
  );
}

// ---- a world made through the CLI: a running service, an allowed enroller with bundles

export interface LabWorld {
  root: string;
  port: number;
  address: string;
  serviceHome: string;
  serviceKey: string;
  service: LiveService;
  enrollerHome: string;
  enrollerKey: string;
  fetchBundles(count: number): Promise<string[]>;
  dispose(): Promise<void>;
}

/** Like test/helpers/cli.ts's setupWorld, with startLiveService (extra service flags, no fixed HTTPS port). */
export async function labWorld(opts: { bundles?: number; serviceFlags?: readonly string[]; env?: Record<string, string> } = {}): Promise<LabWorld> {
  const root = tempHome('lab-world');
  const serviceHome = join(root, 'service');
  const enrollerHome = join(root, 'enroller');
  const port = await freePort();
  const address = `tcp://127.0.0.1:${port}`;
  const env = opts.env ?? {};
  const init = await okJson<{ service_key: string }>(['service', 'init', '--address', address], { home: serviceHome, env });
  const service = await startLiveService(serviceHome, port, opts.serviceFlags ?? [], env);
  try {
    const enrollerKey = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home: enrollerHome, env })).enroller_key;
    await ok(['service', 'enroller', 'allow', enrollerKey, '--name', 'lab terminal'], { home: serviceHome, env });
    const fetchBundles = async (count: number) =>
      (await okJson<{ bundles: string[] }>(['enroller', 'bundle', 'fetch', '--service', address, '--count', String(count), '--service-key', init.service_key], { home: enrollerHome, env })).bundles;
    if ((opts.bundles ?? 3) > 0) await fetchBundles(opts.bundles ?? 3);
    return {
      root,
      port,
      address,
      serviceHome,
      serviceKey: init.service_key,
      service,
      enrollerHome,
      enrollerKey,
      fetchBundles,
      async dispose() {
        try {
          await service.stop();
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    await sigkill(service);
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
}

// ---- a raw TCP client

export interface RawOutcome {
  /** Complete frames the service sent. */
  frames: Uint8Array[];
  /** Bytes received after the last complete frame. */
  trailing: number;
  /** 'end': the service closed (FIN); 'reset': it reset; 'timeout': still open after the wait. */
  how: 'end' | 'reset' | 'timeout' | 'refused';
  ms: number;
}

export interface RawOptions {
  /**
   * Half-close our side once everything is written (default false). The service's sockets are
   * not half-open: after our FIN it stops writing too, so a request that wants an answer must
   * not set this.
   */
  endAfterWrite?: boolean;
  /** Wait at most this long for the service to close: the bound on an idle machine (default 10 s), scaled by patience(). */
  waitMs?: number;
  /** Destroy with RST right after writing (an abrupt close). */
  resetAfterWrite?: boolean;
  /** Write the chunks this far apart, in ms (default 0: together). */
  chunkDelayMs?: number;
  /** Close our side once this many frames have come (a KIND_ENROLL_STREAM client done with its responses). */
  closeAfterFrames?: number;
  /** Connect from this local address (another loopback address, 127.0.0.2, is another source). */
  localAddress?: string;
}

/**
 * Connects to 127.0.0.1:port, writes `chunks`, and collects what comes back until the
 * service closes the connection (or `waitMs` passes, which counts as a hang).
 */
export async function rawExchange(port: number, chunks: readonly Uint8Array[], opts: RawOptions = {}): Promise<RawOutcome> {
  const waitMs = await patience(opts.waitMs ?? 10_000);
  const start = Date.now();
  return new Promise<RawOutcome>((resolve) => {
    const decoder = new FrameDecoder(0xffff);
    const frames: Uint8Array[] = [];
    let trailing = 0;
    let done = false;
    const socket: Socket = connect({ host: '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const finish = (how: RawOutcome['how']) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ frames, trailing, how, ms: Date.now() - start });
    };
    const timer = setTimeout(() => finish('timeout'), waitMs);
    socket.on('data', (chunk: Buffer) => {
      try {
        const got = decoder.push(new Uint8Array(chunk));
        frames.push(...got);
        trailing = decoder.progress.received;
        if (opts.closeAfterFrames !== undefined && frames.length >= opts.closeAfterFrames) finish('end');
      } catch {
        trailing += chunk.length;
      }
    });
    socket.on('end', () => finish('end'));
    socket.on('close', () => finish('end'));
    socket.on('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNREFUSED' ? 'refused' : 'reset'));
    socket.on('connect', async () => {
      socket.setNoDelay(true);
      for (const c of chunks) {
        if (done) return;
        socket.write(c);
        if (opts.chunkDelayMs) await sleep(opts.chunkDelayMs);
      }
      if (done) return;
      if (opts.resetAfterWrite) {
        socket.resetAndDestroy();
        finish('end');
        return;
      }
      if (opts.endAfterWrite) socket.end();
    });
  });
}

/** The frames of one KIND_ENROLL exchange: the kind frame and the message frame. */
export function enrollChunks(message: Uint8Array): Uint8Array[] {
  return [concat(encodeFrame(Uint8Array.of(KIND_ENROLL)), encodeFrame(message))];
}

/** Sends one enrollment message and returns the ENROLL_RESPONSE frame (asserting there is exactly one). */
export async function enrollRaw(port: number, message: Uint8Array, waitMs = 15_000, localAddress?: string): Promise<Uint8Array> {
  const r = await rawExchange(port, enrollChunks(message), { waitMs, ...(localAddress ? { localAddress } : {}) });
  assert.equal(r.frames.length, 1, `expected one ENROLL_RESPONSE frame, got ${r.frames.length} (${r.how} after ${r.ms} ms)`);
  return r.frames[0]!;
}

/** The fd limit of this process (children inherit it), from /proc/self/limits; undefined if unknown. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return undefined;
    return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
  } catch {
    return undefined;
  }
}
