/**
 * The HTTPS address tokens carry (docs/token-enrollment.md "Addresses") against where
 * `service start` actually listens for HTTPS: it follows `--https-listen` when it was not
 * chosen at init; a chosen loopback address that cannot reach the listener refuses the start,
 * naming `--https-address`; a chosen address elsewhere (a load balancer may stand in front)
 * is a warning. And an enrollee whose token leads to another server is told about the
 * address, not that its token is forged. Real binaries, real loopback TCP and TLS.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as connectTcp, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { decodeTokenUnverified } from '../../src/protocol/token/claims.js';
import { assertFailure, errorLine, freePort, ok, okJson, removeTempHomes, run, show, spawnService, tempHome, type ServiceHandle } from '../helpers/cli.js';

after(() => removeTempHomes());

const EXIT_USAGE = 2;
const EXIT_AUTH = 5;

/** `service start` on `home`, resolved once both listeners are up. */
async function start(home: string, tcpPort: number, httpsListen: string): Promise<ServiceHandle> {
  return spawnService(['service', 'start', '--listen', `127.0.0.1:${tcpPort}`, '--https-listen', httpsListen], tcpPort, {
    home,
    ready: [` listening address=127.0.0.1:${tcpPort} `, ' https-listening '],
  });
}

/** An enroller allowed by the service in `svcHome`, and a token for a new identity from it. */
async function tokenFrom(root: string, svcHome: string, tcpPort: number, name: string): Promise<{ file: string; jwt: string }> {
  const enr = join(root, 'enroller');
  const key = (await ok(['enroller', 'init', '--quiet'], { home: enr })).stdout.trim();
  await ok(['service', 'enroller', 'allow', key], { home: svcHome });
  const file = join(root, `${name}.jwt`);
  await ok(['enroller', 'token', 'create', '--name', name, '--service', `tcp://127.0.0.1:${tcpPort}`, '--out', file], { home: enr });
  return { file, jwt: readFileSync(file, 'utf8').trim() };
}

/** A service home initialised once, for every test below that needs a service initialised just so. */
interface SharedHome {
  home: string;
  /** The port of its `--address`, which its tests also `--listen` on. */
  tcpPort: number;
  /** The port of its `--https-address` (when init chose one). */
  chosen: number;
  init: { https_address: string };
}

/**
 * Most tests here differ in how they start the service, not in how it was initialised, so
 * they share one home per kind of init instead of each running `service init` (seconds on a
 * busy machine: issue 24). Each test still starts (or fails to start) its own service from it,
 * one test at a time (the describes are sequential), and stops it before the next.
 */
function sharedHome(label: string, chooseHttps: boolean): () => Promise<SharedHome> {
  let made: Promise<SharedHome> | undefined;
  return () =>
    (made ??= (async () => {
      const home = join(tempHome(label), 'service');
      const [tcpPort, chosen] = [await freePort(), await freePort()];
      const args = ['service', 'init', '--address', `tcp://127.0.0.1:${tcpPort}`, ...(chooseHttps ? ['--https-address', `https://127.0.0.1:${chosen}`] : [])];
      const init = await okJson<{ https_address: string }>(args, { home });
      return { home, tcpPort, chosen, init };
    })());
}

/** Initialised with the default HTTPS address (not chosen). */
const defaultInit = sharedHome('https-default', false);
/** Initialised with `--https-address https://127.0.0.1:<chosen>`, where nothing listens between tests. */
const chosenInit = sharedHome('https-chosen', true);

function field(line: string, name: string): string | undefined {
  return new RegExp(` ${name}=(\\S+)`).exec(line)?.[1];
}

describe('the announced HTTPS address follows --https-listen when init did not choose it', () => {
  it('init with the default address, start --https-listen on a free port: the token names that port, and `enrollee join --token` completes', async () => {
    const root = tempHome('https-follow');
    const { home: svcHome, tcpPort, init } = await defaultInit();
    const httpsPort = await freePort();
    assert.equal(init.https_address, 'https://127.0.0.1:4443', 'the default, not chosen');
    const service = await start(svcHome, tcpPort, `127.0.0.1:${httpsPort}`);
    try {
      const line = service.lines.find((l) => l.includes(' https-listening '))!;
      assert.equal(field(line, 'address'), `127.0.0.1:${httpsPort}`, line);
      assert.equal(field(line, 'https_address'), `https://127.0.0.1:${httpsPort}`, `both addresses are logged, and agree: ${line}`);
      assert.equal(field(line, 'https_address_from'), 'listen', line);
      const { file, jwt } = await tokenFrom(root, svcHome, tcpPort, 'sensor-follow');
      assert.equal(decodeTokenUnverified(jwt).claims.iss, `https://127.0.0.1:${httpsPort}`);
      const joined = await okJson<{ name: string }>(['enrollee', 'join', '--token', `@${file}`, '--json'], { home: join(root, 'device') });
      assert.equal(joined.name, 'sensor-follow');
      await service.waitForLine(/ cert-issued .*name=sensor-follow/);
    } finally {
      await service.stop();
    }
  });

  it('--https-listen 127.0.0.1:0: the token names the port the system chose', async () => {
    const root = tempHome('https-follow0');
    const { home: svcHome, tcpPort } = await defaultInit();
    const service = await start(svcHome, tcpPort, '127.0.0.1:0');
    try {
      const line = service.lines.find((l) => l.includes(' https-listening '))!;
      const port = Number(field(line, 'address')!.split(':')[1]);
      assert.ok(port > 0, line);
      assert.equal(field(line, 'https_address'), `https://127.0.0.1:${port}`, line);
      const { jwt } = await tokenFrom(root, svcHome, tcpPort, 'sensor-zero');
      assert.equal(decodeTokenUnverified(jwt).claims.iss, `https://127.0.0.1:${port}`);
    } finally {
      await service.stop();
    }
  });

  it('a listener on another host than the certificate names is refused: no address could both reach it and verify', async (t) => {
    const { home: svcHome, tcpPort } = await defaultInit();
    // 127.0.0.2 is loopback on Linux, but not the 127.0.0.1 the certificate names.
    const probe = createServer();
    const canBind = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(0, '127.0.0.2', () => probe.close(() => resolve(true)));
    });
    if (!canBind) {
      t.skip('127.0.0.2 cannot be bound here (not every system routes all of 127/8 to the loopback interface)');
      return;
    }
    const r = await run(['service', 'start', '--listen', `127.0.0.1:${tcpPort}`, '--https-listen', '127.0.0.2:0'], { home: svcHome });
    assertFailure(r, EXIT_USAGE, /token enrollment cannot name the HTTPS listener on 127\.0\.0\.2:\d+: the service's HTTPS certificate is for 127\.0\.0\.1 \(and the loopback names\)/, /--https-address/);
  });
});

describe('an HTTPS address chosen at init that cannot reach the listener', () => {
  it('on loopback with nothing there: the start is refused, naming both addresses and --https-address', async () => {
    const { home: svcHome, tcpPort, chosen } = await chosenInit();
    const listen = await freePort();
    const r = await run(['service', 'start', '--listen', `127.0.0.1:${tcpPort}`, '--https-listen', `127.0.0.1:${listen}`], { home: svcHome });
    assertFailure(
      r,
      EXIT_USAGE,
      `tokens would send devices to https://127.0.0.1:${chosen} (the --https-address set at init), but this service listens for HTTPS on 127.0.0.1:${listen} and nothing listens there`,
      /--https-listen 127\.0\.0\.1:\d+.*--https-address/,
    );
    // Nothing was left listening: the TCP port is free again.
    const s = createServer();
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(tcpPort, '127.0.0.1', () => s.close(() => resolve()));
    });
  });

  it('on loopback with another server there: refused, saying so', async () => {
    const { home: svcHome, tcpPort, chosen } = await chosenInit();
    const listen = await freePort();
    // Something that is not this service holds the chosen port: it accepts and hangs up.
    const squatter: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      squatter.once('error', reject);
      squatter.listen(chosen, '127.0.0.1', () => resolve());
    });
    try {
      const r = await run(['service', 'start', '--listen', `127.0.0.1:${tcpPort}`, '--https-listen', `127.0.0.1:${listen}`], { home: svcHome });
      assertFailure(r, EXIT_USAGE, `https://127.0.0.1:${chosen} (the --https-address set at init), but this service listens for HTTPS on 127.0.0.1:${listen} and another server answers there`, /--https-address/);
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });

  it('--https-address-check warn: starts with a warning behind an address not served yet, and logs https-address-served once it is', { timeout: 120_000 }, async () => {
    const { home: svcHome, tcpPort, chosen } = await chosenInit();
    const listen = await freePort();
    const service = await spawnService(['service', 'start', '--listen', `127.0.0.1:${tcpPort}`, '--https-listen', `127.0.0.1:${listen}`, '--https-address-check', 'warn'], tcpPort, {
      home: svcHome,
      ready: [' https-listening '],
    });
    // The balancer comes up after the service: a TCP forwarder from the chosen port to the listener.
    let balancer: Server | undefined;
    try {
      const warning = await service.waitForLine(/^ockam-enroll: warning: /);
      assert.equal(
        warning,
        `ockam-enroll: warning: tokens send devices to https://127.0.0.1:${chosen} (the --https-address set at init), but this service listens for HTTPS on 127.0.0.1:${listen} and nothing listens there yet: token enrollment through it works once it forwards here (the balancer, or another replica); checking again every 2 s`,
      );
      assert.ok(!service.lines.some((l) => l.includes(' https-address-served ')), 'not served before the balancer exists');
      balancer = createServer((client) => {
        const upstream = connectTcp(listen, '127.0.0.1');
        client.pipe(upstream).pipe(client);
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
      });
      await new Promise<void>((resolve) => balancer!.listen(chosen, '127.0.0.1', resolve));
      const served = await service.waitForLine(' https-address-served ');
      assert.equal(field(served, 'https_address'), `https://127.0.0.1:${chosen}`, served);
    } finally {
      await service.stop();
      await new Promise<void>((resolve) => (balancer ? balancer.close(() => resolve()) : resolve()));
    }
  });

  it('--https-address-check off: starts without checking; a mode that is not one of the three is a usage error', async () => {
    const { home: svcHome, tcpPort, chosen } = await chosenInit();
    const listen = await freePort();
    const bad = await run(['service', 'start', '--listen', `127.0.0.1:${tcpPort}`, '--https-address-check', 'maybe'], { home: svcHome });
    assertFailure(bad, EXIT_USAGE, '--https-address-check must be one of refuse, warn, off, not "maybe"');
    const service = await spawnService(['service', 'start', '--listen', `127.0.0.1:${tcpPort}`, '--https-listen', `127.0.0.1:${listen}`, '--https-address-check', 'off'], tcpPort, {
      home: svcHome,
      ready: [' https-listening '],
    });
    try {
      const line = service.lines.find((l) => l.includes(' https-listening '))!;
      assert.equal(field(line, 'https_address'), `https://127.0.0.1:${chosen}`, line);
      assert.ok(!service.lines.some((l) => l.startsWith('ockam-enroll: warning:')), service.lines.join('\n'));
    } finally {
      await service.stop();
    }
  });

  it('the refusal\'s hint never names `service init --force` without saying what it destroys', async () => {
    const { home: svcHome, tcpPort } = await chosenInit();
    const listen = await freePort();
    const r = await run(['service', 'start', '--listen', `127.0.0.1:${tcpPort}`, '--https-listen', `127.0.0.1:${listen}`], { home: svcHome });
    assertFailure(r, EXIT_USAGE, /nothing listens there/, /--https-address-check warn.*service init --force --https-address.*destroys the service identity.*every device enrolled with this service must enroll again/);
  });

  it('on loopback where another process of the same service serves it: accepted (a second replica, a local proxy)', async () => {
    const { home: svcHome, tcpPort: tcpA, chosen } = await chosenInit();
    const [tcpB, other] = [await freePort(), await freePort()];
    const a = await start(svcHome, tcpA, `127.0.0.1:${chosen}`);
    try {
      const b = await start(svcHome, tcpB, `127.0.0.1:${other}`);
      try {
        const line = b.lines.find((l) => l.includes(' https-listening '))!;
        assert.equal(field(line, 'address'), `127.0.0.1:${other}`);
        assert.equal(field(line, 'https_address'), `https://127.0.0.1:${chosen}`, 'a chosen address is never rewritten');
        assert.equal(field(line, 'https_address_from'), undefined);
        assert.ok(!b.lines.some((l) => l.startsWith('ockam-enroll: warning:')), b.lines.join('\n'));
      } finally {
        await b.stop();
      }
    } finally {
      await a.stop();
    }
  });

  it('on another host (a load balancer may forward): the service starts, with a warning naming both', async () => {
    const root = tempHome('https-warn');
    const svcHome = join(root, 'service');
    const tcpPort = await freePort();
    const listen = await freePort();
    await ok(['service', 'init', '--address', `tcp://127.0.0.1:${tcpPort}`, '--https-address', 'https://enroll.example.com:443'], { home: svcHome });
    const service = await start(svcHome, tcpPort, `127.0.0.1:${listen}`);
    try {
      const warning = await service.waitForLine(/^ockam-enroll: warning: /);
      assert.equal(
        warning,
        `ockam-enroll: warning: tokens send devices to https://enroll.example.com:443 (the --https-address set at init), but this service listens for HTTPS on 127.0.0.1:${listen}: devices reach it only if that address forwards here (a load balancer or port forward)`,
      );
      const line = service.lines.find((l) => l.includes(' https-listening '))!;
      assert.equal(field(line, 'address'), `127.0.0.1:${listen}`);
      assert.equal(field(line, 'https_address'), 'https://enroll.example.com:443');
    } finally {
      await service.stop();
    }
  });
});

describe('enrollee join --token, when the token\'s address reaches another server', () => {
  it('names the address and the CA it found there, not a forged token', async () => {
    const root = tempHome('https-elsewhere');
    const homeA = join(root, 'service-a');
    const homeB = join(root, 'service-b');
    const [tcpA, tcpB, https] = [await freePort(), await freePort(), await freePort()];
    const url = `https://127.0.0.1:${https}`;
    const initA = await okJson<{ ca_fingerprint: string }>(['service', 'init', '--address', `tcp://127.0.0.1:${tcpA}`, '--https-address', url], { home: homeA });
    const initB = await okJson<{ ca_fingerprint: string }>(['service', 'init', '--address', `tcp://127.0.0.1:${tcpB}`, '--https-address', url], { home: homeB });
    // A makes the token, then stops; B, another service, takes the same HTTPS port.
    const a = await start(homeA, tcpA, `127.0.0.1:${https}`);
    let token: { file: string; jwt: string };
    try {
      token = await tokenFrom(root, homeA, tcpA, 'sensor-moved');
    } finally {
      await a.stop();
    }
    assert.equal(decodeTokenUnverified(token.jwt).claims.iss, url);
    const b = await start(homeB, tcpB, `127.0.0.1:${https}`);
    try {
      const r = await run(['enrollee', 'join', '--token', `@${token.file}`], { home: join(root, 'device') });
      assertFailure(
        r,
        EXIT_AUTH,
        `the server at ${url} is not the service that made this token: the token's signature does not verify with its key, and its CA (SHA-256 ${initB.ca_fingerprint}) is not the one the token names (${initA.ca_fingerprint})`,
        `something else answers at the token's address ${url}`,
      );
      assert.doesNotMatch(errorLine(r), /forged|altered/, show(r));
      assert.deepEqual(b.decisions('cert-issued'), [], 'nothing was issued by the wrong service');
    } finally {
      await b.stop();
    }
  });
});
