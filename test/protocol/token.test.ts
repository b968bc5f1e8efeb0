/**
 * The one-time enrollment token (protocol/token): the text form and its claims checked before
 * any crypto, then signatures and expiry with jose; and the TOKEN_CREATE / TOKEN messages.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { checkClaims, decodeTokenUnverified, MAX_TOKEN_LEN, parseIssuer, type TokenClaims } from '../../src/protocol/token/claims.js';
import { signToken, verifyToken } from '../../src/protocol/token/jwt.js';
import { decodeTokenCreate, decodeTokenCreated, encodeTokenCreate, encodeTokenCreated, MSG_TOKEN_CREATE } from '../../src/protocol/messages/service.js';

const NOW = 1_800_000_000;
const CLAIMS: TokenClaims = {
  iss: 'https://127.0.0.1:4443',
  sub: 'ab'.repeat(32),
  jti: 'AAAAAAAAAAAAAAAAAAAAAAAA',
  iat: NOW,
  exp: NOW + 3600,
  em: 'ott',
  ca_fp: 'cd'.repeat(32),
  name: 'sensor-12',
};

function isCode(code: ErrorCode, includes?: string) {
  return (e: unknown): boolean => {
    assert.ok(isEnrollError(e), `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (includes) assert.ok(e.message.includes(includes), `"${e.message}" should mention "${includes}"`);
    return true;
  };
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const HEADER = b64({ alg: 'ES256', typ: 'JWT' });
const SIG = 'c2lnbmF0dXJl';
const compact = (claims: unknown, header = HEADER) => `${header}.${b64(claims)}.${SIG}`;

describe('token text form: decodeTokenUnverified (ERR_TOKEN_INVALID)', () => {
  it('accepts well-formed claims, trimming whitespace', () => {
    const d = decodeTokenUnverified(`  ${compact(CLAIMS)}\n`);
    assert.equal(d.alg, 'ES256');
    assert.deepEqual(d.claims, CLAIMS);
  });

  const bad: [string, string, string?][] = [
    ['empty', '', 'empty'],
    ['too long', 'a'.repeat(MAX_TOKEN_LEN + 1), 'more than'],
    ['two parts', `${HEADER}.${b64(CLAIMS)}`, 'three'],
    ['four parts', `${compact(CLAIMS)}.x`, 'three'],
    ['a non-base64url header', `${HEADER}!.${b64(CLAIMS)}.${SIG}`, 'header'],
    ['a header that is not JSON', `${b64('nope')}.${b64(CLAIMS)}.${SIG}`, 'header'],
    ['a header that is an array', `${b64([1])}.${b64(CLAIMS)}.${SIG}`, 'JSON object'],
    ['alg none', compact(CLAIMS, b64({ alg: 'none' })), '"alg"'],
    ['alg HS256', compact(CLAIMS, b64({ alg: 'HS256' })), '"alg"'],
    ['alg RS256', compact(CLAIMS, b64({ alg: 'RS256' })), '"alg"'],
    ['a crit header', compact(CLAIMS, b64({ alg: 'ES256', crit: ['exp'] })), 'crit'],
    ['another typ', compact(CLAIMS, b64({ alg: 'ES256', typ: 'at+jwt' })), '"typ"'],
    ['claims that are not UTF-8', `${HEADER}.${Buffer.from([0xff, 0xfe]).toString('base64url')}.${SIG}`, 'UTF-8'],
    ['an empty signature', `${HEADER}.${b64(CLAIMS)}.`, 'signature'],
  ];
  for (const [what, text, msg] of bad) {
    it(`refuses ${what}`, () => assert.throws(() => decodeTokenUnverified(text), isCode('ERR_TOKEN_INVALID', msg)));
  }

  const badClaims: [string, Record<string, unknown>, string][] = [
    ['iss over http', { iss: 'http://127.0.0.1:4443' }, '"iss"'],
    ['iss with a path', { iss: 'https://127.0.0.1:4443/x' }, '"iss"'],
    ['iss with credentials', { iss: 'https://u:p@127.0.0.1:4443' }, '"iss"'],
    ['iss not in its one spelling', { iss: 'https://LOCALHOST:4443' }, '"iss"'],
    ['iss that is a number', { iss: 4443 }, '"iss"'],
    ['sub in uppercase hex', { sub: 'AB'.repeat(32) }, '"sub"'],
    ['sub too short', { sub: 'ab'.repeat(16) }, '"sub"'],
    ['jti too short', { jti: 'abc' }, '"jti"'],
    ['jti with a dot', { jti: 'A'.repeat(23) + '.' }, '"jti"'],
    ['exp before iat', { exp: NOW - 1 }, '"exp"'],
    ['exp more than 30 days after iat', { exp: NOW + 31 * 86400 }, '"exp"'],
    ['exp as a string', { exp: String(NOW + 10) }, '"exp"'],
    ['exp fractional', { exp: NOW + 0.5 }, '"exp"'],
    ['iat negative', { iat: -1 }, '"iat"'],
    ['em missing', { em: undefined }, '"em"'],
    ['em another method', { em: 'x3dh' }, '"em"'],
    ['ca_fp too short', { ca_fp: 'cd'.repeat(16) }, '"ca_fp"'],
    ['name with a comma', { name: 'a,b' }, '"name"'],
    ['name with a control character', { name: 'a\u001b[31m' }, '"name"'],
    ['name too long', { name: 'a'.repeat(65) }, '"name"'],
    ['name with a leading space', { name: ' a' }, '"name"'],
  ];
  for (const [what, patch, msg] of badClaims) {
    it(`refuses ${what}`, () => {
      const claims = { ...CLAIMS, ...patch };
      assert.throws(() => decodeTokenUnverified(compact(claims)), isCode('ERR_TOKEN_INVALID', msg));
    });
  }

  it('ignores claims it does not know', () => {
    assert.deepEqual(checkClaims({ ...CLAIMS, extra: 1 }), CLAIMS);
  });

  it('parseIssuer: default port 443, IPv6 in brackets', () => {
    assert.deepEqual(parseIssuer('https://enroll.example.com'), { url: 'https://enroll.example.com:443', host: 'enroll.example.com', port: 443 });
    assert.deepEqual(parseIssuer('https://[::1]:4443'), { url: 'https://[::1]:4443', host: '::1', port: 4443 });
  });
});

describe('token signatures: signToken / verifyToken', () => {
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ed = generateKeyPairSync('ed25519');

  it('ES256 and EdDSA tokens verify with their key and give back the claims', async () => {
    for (const [k, alg] of [[p256, 'ES256'], [ed, 'EdDSA']] as const) {
      const jwt = await signToken(CLAIMS, k.privateKey, alg);
      assert.deepEqual(await verifyToken(jwt, k.publicKey, { alg, now: NOW }), CLAIMS);
      assert.deepEqual(await verifyToken(jwt, createPublicKey(k.privateKey), { alg, now: NOW, issuer: CLAIMS.iss }), CLAIMS);
    }
  });

  it('refuses to sign claims that would not parse', async () => {
    await assert.rejects(signToken({ ...CLAIMS, name: 'a,b' }, p256.privateKey, 'ES256'), isCode('ERR_TOKEN_INVALID'));
  });

  it('ERR_TOKEN_SIGNATURE: another key, a flipped signature character, a changed claim', async () => {
    const jwt = await signToken(CLAIMS, p256.privateKey, 'ES256');
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await assert.rejects(verifyToken(jwt, other.publicKey, { alg: 'ES256', now: NOW }), isCode('ERR_TOKEN_SIGNATURE'));
    const [h, c, s] = jwt.split('.') as [string, string, string];
    const i = Math.floor(s.length / 2);
    const flipped = `${h}.${c}.${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
    await assert.rejects(verifyToken(flipped, p256.publicKey, { alg: 'ES256', now: NOW }), isCode('ERR_TOKEN_SIGNATURE'));
    const changed = `${h}.${b64({ ...CLAIMS, name: 'sensor-13' })}.${s}`;
    await assert.rejects(verifyToken(changed, p256.publicKey, { alg: 'ES256', now: NOW }), isCode('ERR_TOKEN_SIGNATURE'));
  });

  it('ERR_TOKEN_SIGNATURE: a token naming another algorithm than the key\'s', async () => {
    const jwt = await signToken(CLAIMS, ed.privateKey, 'EdDSA');
    await assert.rejects(verifyToken(jwt, p256.publicKey, { alg: 'ES256', now: NOW }), isCode('ERR_TOKEN_SIGNATURE', 'EdDSA'));
  });

  it('ERR_TOKEN_EXPIRED at exp, unless within the clock tolerance', async () => {
    const jwt = await signToken(CLAIMS, p256.privateKey, 'ES256');
    await assert.rejects(verifyToken(jwt, p256.publicKey, { alg: 'ES256', now: CLAIMS.exp }), isCode('ERR_TOKEN_EXPIRED'));
    assert.ok(await verifyToken(jwt, p256.publicKey, { alg: 'ES256', now: CLAIMS.exp + 10, clockTolerance: 300 }));
  });

  it('ERR_TOKEN_INVALID: another issuer than expected', async () => {
    const jwt = await signToken(CLAIMS, p256.privateKey, 'ES256');
    await assert.rejects(verifyToken(jwt, p256.publicKey, { alg: 'ES256', now: NOW, issuer: 'https://127.0.0.1:9999' }), isCode('ERR_TOKEN_INVALID', 'issued for'));
  });
});

describe('TOKEN_CREATE (0x50) and TOKEN (0x51)', () => {
  it('round-trip', () => {
    assert.deepEqual(decodeTokenCreate(encodeTokenCreate({ ttl: 3600, name: 'sensor-12' })), { ttl: 3600, name: 'sensor-12' });
    const t = { identityId: new Uint8Array(32).fill(7), expiresAt: NOW, jwt: 'a.b.c' };
    assert.deepEqual(decodeTokenCreated(encodeTokenCreated(t)), t);
  });

  it('refuse a ttl out of range, a bad name, trailing bytes, and a jwt that is not compact', () => {
    assert.throws(() => decodeTokenCreate(encodeTokenCreate({ ttl: 0, name: 'x' })), isCode('ERR_FRAME_MALFORMED', 'ttl'));
    assert.throws(() => decodeTokenCreate(encodeTokenCreate({ ttl: 31 * 86400, name: 'x' })), isCode('ERR_FRAME_MALFORMED', 'ttl'));
    assert.throws(() => decodeTokenCreate(encodeTokenCreate({ ttl: 60, name: 'a,b' })), isCode('ERR_FRAME_MALFORMED', 'name'));
    const ok = encodeTokenCreate({ ttl: 60, name: 'x' });
    assert.throws(() => decodeTokenCreate(Uint8Array.from([...ok, 0])), isCode('ERR_FRAME_MALFORMED'));
    assert.throws(() => decodeTokenCreate(ok.subarray(0, 5)), isCode('ERR_FRAME_MALFORMED'));
    assert.equal(ok[0], MSG_TOKEN_CREATE);
    const t = encodeTokenCreated({ identityId: new Uint8Array(32), expiresAt: NOW, jwt: 'a b' });
    assert.throws(() => decodeTokenCreated(t), isCode('ERR_FRAME_MALFORMED', 'compact'));
  });
});
