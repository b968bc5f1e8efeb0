/**
 * The service's end of a portal link (issue #19 items 1, 5, 7; docs/portals.md): an enrolled
 * enrollee's session channel (Noise XX, IK_B ↔ IK_A) switched by PORTAL (docs/protocol.md
 * §11.8) into a stream multiplexer. For every stream the enrollee opens, the OPEN's target
 * is resolved here, at each open, from the store:
 *
 *   1. the enrollee is still enrolled (not revoked): one indexed lookup by IK_B;
 *   2. `service/NAME`: the outlet exists (one primary-key lookup), and its `--allow` CEL
 *      policy admits the enrollee (compiled once per distinct expression, cached);
 *      `DEVICE/NAME`: handed to the resolver registered with `setDeviceTargets` (the device
 *      outlets of src/portal/device-*.ts); without one, refused as an unknown outlet;
 *   3. the target is connected, then bridged.
 *
 * So `service outlet add|remove` takes effect at the next stream open on every replica,
 * without a restart. Every open, refusal (with the reason the inlet is told) and close (with
 * byte counts, never payloads) is a line in the decision log. A revocation ends the link
 * from the lifecycle watcher (roles/service/lifecycle.ts, setCloser), within its poll interval.
 */
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { encodePortalReady } from '../protocol/messages/session.js';
import { OpenStatus, OPEN_STATUS_NAMES } from '../protocol/portal/open.js';
import { compileAllow, type AllowPredicate } from './allow.js';
import { serveStream, type OutletDecision } from './bridge.js';
import { PortalLink } from './link.js';
import { parseTarget, SERVICE_OWNER, formatHostPort, type PortalTarget } from './target.js';
import { subjectOf } from '../policy/subject.js';
import { MAX_FRAME_LEN } from '../transport/frame.js';
import { lifecycleOf } from '../roles/service/lifecycle.js';
import type { ServiceHome } from '../roles/service/home.js';
import type { DecisionLog } from '../roles/service/log.js';
import type { EnrolleeRecord } from '../store/types.js';
import type { SecureChannel } from '../transport/channel.js';

/**
 * The service ends a portal link that has received nothing for this long. The inlet pings
 * every PORTAL_PING_MS, so only a peer that vanished without a FIN hits it.
 */
export const PORTAL_IDLE_MS = 90_000;
export const PORTAL_PING_MS = 30_000;

/** What a target resolver is told about the stream it resolves. */
export interface TargetContext {
  svc: ServiceHome;
  /** The requesting enrollee, as the store has it at this open (enrolled, not revoked). */
  enrollee: EnrolleeRecord;
  log: DecisionLog;
  /** The link the stream arrived on, and the stream's id on it. */
  link: PortalLink;
  streamId: number;
}

/** Resolves a `DEVICE/NAME` target (portals-b: device outlets and the relay). */
export type TargetResolver = (target: PortalTarget, ctx: TargetContext) => Promise<OutletDecision> | OutletDecision;

let deviceTargets: TargetResolver | undefined;

/** Registers the resolver for `DEVICE/NAME` targets; undefined removes it. */
export function setDeviceTargets(resolver: TargetResolver | undefined): void {
  deviceTargets = resolver;
}

/** Compiled `--allow` policies by expression (outlets are few; bounded anyway). */
const policies = new Map<string, AllowPredicate>();
const MAX_CACHED_POLICIES = 256;

function allowFor(expr: string | null): AllowPredicate | undefined {
  if (expr === null) return compileAllow(undefined);
  let p = policies.get(expr);
  if (p === undefined) {
    try {
      p = compileAllow(expr);
    } catch {
      // Only a store edited by hand holds a policy that does not compile: fail closed.
      return undefined;
    }
    if (policies.size >= MAX_CACHED_POLICIES) policies.clear();
    policies.set(expr, p);
  }
  return p;
}

/** Live portal links per running service, so a stop can end them at once (endPortalLinks). */
const liveLinks = new WeakMap<ServiceHome, Set<PortalLink>>();

/**
 * Ends every portal link of `svc` (GO_AWAY, streams reset). `service start` calls it when it
 * stops: a portal stream can last for hours (an ssh session), so a drain does not wait for
 * them; the inlets reconnect, to another replica or to the restarted service.
 */
export function endPortalLinks(svc: ServiceHome): number {
  const set = liveLinks.get(svc);
  if (set === undefined) return 0;
  const n = set.size;
  for (const l of set) l.end();
  set.clear();
  return n;
}

const refuse = (status: OpenStatus, reason: string): OutletDecision => ({ refuse: status, reason });

/** Resolves `service/NAME` for `enrollee`: unknown outlet, not allowed, or where to connect. */
export async function resolveServiceOutlet(svc: ServiceHome, name: string, enrollee: EnrolleeRecord): Promise<OutletDecision> {
  const outlet = await svc.store.getOutlet(name);
  if (outlet === undefined) return refuse(OpenStatus.UNKNOWN_OUTLET, `the service has no outlet named ${name}`);
  const allow = allowFor(outlet.allow);
  if (allow === undefined) return refuse(OpenStatus.NOT_ALLOWED, `the --allow policy of ${name} does not compile; the operator must set it again`);
  if (!allow(subjectOf(enrollee), { name, owner: SERVICE_OWNER })) {
    return refuse(OpenStatus.NOT_ALLOWED, `the --allow policy of service/${name} does not admit this enrollee`);
  }
  return { host: outlet.host, port: outlet.port };
}

/**
 * Serves the portal link of an enrolled enrollee's session after its PORTAL (the caller,
 * roles/service/session.ts, has checked it is enrolled and decoded PORTAL). Returns when the
 * link ends.
 */
export async function servePortalSession(
  svc: ServiceHome,
  channel: SecureChannel,
  rec: EnrolleeRecord,
  log: DecisionLog,
  /** Called with the link once it runs (a device outlet's session registers it with the relay, src/portal/device-relay.ts). */
  onLink?: (link: PortalLink) => void,
): Promise<void> {
  const ikB = channel.remoteStaticKey;
  const who = { enrollee: toHex(rec.id), name: rec.petName };
  const peer = channel.connection.remoteAddress;
  // Mux frames are packed into channel messages of up to 64 KiB (§11.8); the session's
  // messages were small, so its connection was opened with the service's --max-frame.
  channel.connection.raiseMaxFrameLen(MAX_FRAME_LEN);
  await channel.send(encodePortalReady());
  const link = new PortalLink(channel, { role: 'server' }, PORTAL_IDLE_MS);
  let revoked: EnrollError | undefined;
  // The lifecycle watcher ends the link (not an ERROR message, which the peer's mux could
  // not read) when the enrollee is revoked or its key rotated away.
  lifecycleOf(svc)?.setCloser('session', channel, (err) => {
    revoked = err;
    link.end(err);
  });
  let set = liveLinks.get(svc);
  if (set === undefined) liveLinks.set(svc, (set = new Set()));
  set.add(link);
  void link.done.then(() => set.delete(link));
  log('portal-opened', { ...who, peer });
  onLink?.(link);
  let streams = 0;
  const decide = async (id: number, target: string): Promise<OutletDecision> => {
    const t = parseTarget(target);
    if (t === undefined) return refuse(OpenStatus.UNKNOWN_OUTLET, 'the target is not service/NAME or DEVICE/NAME');
    let current: EnrolleeRecord | undefined;
    try {
      // At every open: a revocation on another replica is refused here even before this
      // replica's watcher ends the link.
      current = await svc.store.getEnrolleeByIdentityKey(ikB);
    } catch (err) {
      const reason = err instanceof EnrollError ? `${err.code}: ${err.message}` : String(err);
      log('error', { ...who, reason: `portal open: ${reason}` });
      return refuse(OpenStatus.INTERNAL, 'the service cannot decide now (its store is unavailable); retry');
    }
    if (current === undefined || current.state !== 'enrolled') {
      queueMicrotask(() => link.end());
      return refuse(OpenStatus.REVOKED, current?.state === 'revoked' ? 'this enrollee has been revoked' : 'the service no longer knows this identity key');
    }
    try {
      if (t.owner === SERVICE_OWNER) return await resolveServiceOutlet(svc, t.name, current);
      if (deviceTargets === undefined) return refuse(OpenStatus.UNKNOWN_OUTLET, 'this service serves no device outlets');
      return await deviceTargets(t, { svc, enrollee: current, log, link, streamId: id });
    } catch (err) {
      const reason = err instanceof EnrollError ? `${err.code}: ${err.message}` : String(err);
      log('error', { ...who, target, reason: `portal open: ${reason}` });
      return refuse(OpenStatus.INTERNAL, 'the service cannot decide now; retry');
    }
  };
  link.onOpen((id) => {
    streams++;
    let to: string | undefined;
    serveStream(
      link,
      id,
      async (target) => {
        const d = await decide(id, target);
        if ('host' in d) to = formatHostPort(d.host, d.port);
        return d;
      },
      (r) => {
        const base = { ...who, stream: id, target: r.target };
        if (r.counts !== undefined) {
          // bytes_in: from the inlet to the target; bytes_out: back.
          log('stream-closed', { ...base, how: r.how, bytes_in: r.counts.bytesIn, bytes_out: r.counts.bytesOut });
        } else if (r.status === OpenStatus.OK) {
          log('stream-opened', { ...base, ...(to !== undefined ? { to } : {}) });
        } else {
          log('stream-refused', { ...base, reason: `${OPEN_STATUS_NAMES[r.status] ?? 'refused'}: ${r.reason}` });
        }
      },
    );
  });
  const error = await link.done;
  const why = revoked ?? error;
  log('portal-closed', { ...who, peer, streams, ...(why ? { reason: `${why.code}: ${why.message}` } : {}) });
}
