/**
 * The text form of bundles and cards: what is pasted into a terminal, printed as a QR
 * code, or read over the phone.
 *
 *   PREFIX ‖ BASE32(payload ‖ checksum),  checksum = SHA-256(ASCII PREFIX ‖ payload)[0..4]
 *
 * The prefix names the type and version (`OEB1:` bundle, `OEC1:` card), so a card pasted
 * where a bundle is expected is named as such instead of failing deep inside a decoder.
 * The checksum covers the prefix too, so a payload cannot be relabelled as the other type.
 * It catches typing and truncation errors (a 2^-32 miss rate); it is not a MAC: bundles
 * carry their own signatures, and cards are approved by a person.
 *
 * Decoding order: length cap, whitespace removal and upper-casing (so wrapped, indented or
 * lower-cased text works), prefix (ERR_TEXT_PREFIX), alphabet (ERR_TEXT_ALPHABET, naming
 * the position), then length and checksum (ERR_TEXT_CHECKSUM). All before any crypto.
 */
import { EnrollError } from '../../errors.js';
import { abytes, concat, equalBytes } from '../../crypto/bytes.js';
import { sha256 } from '../../crypto/hash.js';
import { BASE32_ALPHABET, base32Decode, base32Encode, base32Value } from './base32.js';
import { decodeBundle, encodeBundle, verifyBundle, type Bundle, type VerifyBundleOptions } from './bundle.js';
import { decodeCard, encodeCard, type EnrolleeCard } from './card.js';

export const BUNDLE_TEXT_PREFIX = 'OEB1:';
/** A v2 bundle (EKA v2, §4.5): its own prefix, so v1 and v2 texts are never confused. */
export const BUNDLE_V2_TEXT_PREFIX = 'OEB2:';
export const CARD_TEXT_PREFIX = 'OEC1:';
export const TEXT_CHECKSUM_LEN = 4;
/**
 * Refuse longer input before doing any work. The longest v1 bundle (763 bytes + 4) is
 * 1228 base32 characters; the cap leaves room for generous line wrapping.
 */
export const TEXT_MAX_INPUT = 4096;

/** Known prefixes and what they hold, for naming a mix-up in ERR_TEXT_PREFIX. */
const KNOWN_PREFIXES: ReadonlyMap<string, string> = new Map([
  [BUNDLE_TEXT_PREFIX, 'a bundle'],
  [BUNDLE_V2_TEXT_PREFIX, 'a bundle (EKA v2)'],
  [CARD_TEXT_PREFIX, 'an enrollee card'],
  ['OECR1:', 'a credential'], // protocol/credential.ts (it imports this module, not the reverse)
  ['OECR2:', 'a credential (version 2)'], // protocol/credential-v2.ts
]);

/** The QR alphanumeric set (ISO/IEC 18004 §7.4.4), which a prefix must stay within. */
const QR_ALPHANUMERIC = /^[0-9A-Z $%*+\-./:]+$/;

function checkPrefix(prefix: string): void {
  if (typeof prefix !== 'string' || !QR_ALPHANUMERIC.test(prefix) || !prefix.endsWith(':') || /\s/.test(prefix)) {
    throw new EnrollError('ERR_INVALID_ARG', `"prefix" must be QR alphanumeric characters ending in ":"`);
  }
}

function checksum(prefix: string, payload: Uint8Array): Uint8Array {
  return sha256(new TextEncoder().encode(prefix), payload).subarray(0, TEXT_CHECKSUM_LEN);
}

/** Encodes `payload` under `prefix` (e.g. `OEB1:`). */
export function encodeText(prefix: string, payload: Uint8Array): string {
  checkPrefix(prefix);
  abytes(payload, undefined, 'payload');
  return prefix + base32Encode(concat(payload, checksum(prefix, payload)));
}

function describeChar(c: string): string {
  const cp = c.codePointAt(0)!;
  const hex = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return cp >= 0x21 && cp <= 0x7e ? `'${c}' (${hex})` : hex;
}

/**
 * Decodes the text form under `prefix` and returns the payload. Whitespace anywhere is
 * ignored and letters may be lower case. Positions in ERR_TEXT_ALPHABET messages count
 * characters (code points) of the text as given, from 1.
 */
export function decodeText(prefix: string, text: string): Uint8Array {
  checkPrefix(prefix);
  if (typeof text !== 'string') throw new EnrollError('ERR_INVALID_ARG', `"text" expected string, got ${typeof text}`);
  if (text.length > TEXT_MAX_INPUT) {
    throw new EnrollError('ERR_TEXT_CHECKSUM', `text form is ${text.length} characters, at most ${TEXT_MAX_INPUT}`, {
      hint: 'paste only the text that starts with the prefix',
    });
  }
  // Keep each kept character's position in the original text for error messages.
  const chars: string[] = [];
  const positions: number[] = [];
  let pos = 0;
  for (const c of text) {
    pos++;
    if (/\s/u.test(c)) continue;
    chars.push(c >= 'a' && c <= 'z' ? c.toUpperCase() : c);
    positions.push(pos);
  }

  const head = chars.slice(0, prefix.length).join('');
  if (head !== prefix) {
    const colon = chars.indexOf(':');
    const seen = colon >= 0 && colon < 16 ? chars.slice(0, colon + 1).join('') : undefined;
    const expected = KNOWN_PREFIXES.get(prefix) ?? `"${prefix}"`;
    const other = seen !== undefined ? KNOWN_PREFIXES.get(seen) : undefined;
    let message: string;
    if (other !== undefined) message = `this is ${other} (${seen}), not ${expected} (${prefix})`;
    else if (seen !== undefined && /^OE[A-Z]\d+:$/.test(seen)) message = `unsupported text form ${seen}, expected ${prefix}`;
    else message = `text form must start with ${prefix}`;
    throw new EnrollError('ERR_TEXT_PREFIX', message);
  }

  const body = chars.slice(prefix.length);
  for (let i = 0; i < body.length; i++) {
    if (base32Value(body[i]!) < 0) {
      throw new EnrollError(
        'ERR_TEXT_ALPHABET',
        `text form: character ${describeChar(body[i]!)} at position ${positions[prefix.length + i]!} is not in the alphabet ${BASE32_ALPHABET}`,
        { hint: 'check for 0/O, 1/I and 8/B mix-ups' },
      );
    }
  }

  const raw = base32Decode(body.join(''));
  const mistyped = (): never => {
    throw new EnrollError('ERR_TEXT_CHECKSUM', 'text form checksum mismatch: mistyped or truncated', {
      hint: 'copy the whole text again',
    });
  };
  if (raw === undefined || raw.length < TEXT_CHECKSUM_LEN) return mistyped();
  const payload = raw.subarray(0, raw.length - TEXT_CHECKSUM_LEN);
  if (!equalBytes(checksum(prefix, payload), raw.subarray(raw.length - TEXT_CHECKSUM_LEN))) return mistyped();
  return Uint8Array.from(payload);
}

/** `OEB1:` for a v1 bundle, `OEB2:` for a v2 bundle. */
export function bundleToText(b: Bundle): string {
  const bytes = encodeBundle(b);
  return encodeText(b.version === 2 ? BUNDLE_V2_TEXT_PREFIX : BUNDLE_TEXT_PREFIX, bytes);
}

/**
 * The bundle prefix `text` starts with (after whitespace removal and upper-casing, as
 * decodeText does): OEB2: when it starts so, else OEB1: (whose decodeText names any mix-up).
 */
function bundlePrefixOf(text: string): string {
  if (typeof text !== 'string') return BUNDLE_TEXT_PREFIX;
  const head = text.slice(0, 64).replace(/\s/gu, '').slice(0, BUNDLE_V2_TEXT_PREFIX.length).toUpperCase();
  return head === BUNDLE_V2_TEXT_PREFIX ? BUNDLE_V2_TEXT_PREFIX : BUNDLE_TEXT_PREFIX;
}

/**
 * Decodes and verifies (verifyBundle) a bundle's text form, v1 (`OEB1:`) or v2 (`OEB2:`).
 * The payload's version byte must be the prefix's (ERR_BUNDLE_VERSION otherwise): the
 * checksum covers the prefix, so only a crafted text gets there.
 */
/**
 * A bundle's text (either prefix), decoded but not yet verified: for checks that must come
 * before the signatures (an expected IK_A, the required EKA version). Use bundleFromText
 * unless such a check follows, and verifyBundle after it.
 */
export function decodeBundleText(text: string): Bundle {
  // Empty input (an empty file, a pipe that gave nothing) is said to be empty, not mis-prefixed.
  if (typeof text === 'string' && text.trim() === '') {
    throw new EnrollError('ERR_TEXT_PREFIX', 'the bundle is empty', { hint: 'pass the bundle\'s text form (OEB2:… or OEB1:…), @FILE or -, as the enroller printed it' });
  }
  const prefix = bundlePrefixOf(text);
  const payload = decodeText(prefix, text);
  const expected = prefix === BUNDLE_V2_TEXT_PREFIX ? 2 : 1;
  if (payload.length > 0 && payload[0] !== expected) {
    throw new EnrollError('ERR_BUNDLE_VERSION', `bundle: version ${payload[0]} under the ${prefix} prefix (expected ${expected})`);
  }
  return decodeBundle(payload);
}

export function bundleFromText(text: string, options: VerifyBundleOptions): Bundle {
  return verifyBundle(decodeBundleText(text), options);
}

export function cardToText(card: EnrolleeCard): string {
  return encodeText(CARD_TEXT_PREFIX, encodeCard(card));
}

export function cardFromText(text: string): EnrolleeCard {
  return decodeCard(decodeText(CARD_TEXT_PREFIX, text));
}
