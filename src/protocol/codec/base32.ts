/**
 * Base32 as RFC 4648 §6 defines it (alphabet A–Z 2–7), upper case, without the `=` padding
 * (§3.2 lets a specification that states the length omit it; our checksum does).
 *
 * Every character of the alphabet is in the QR code alphanumeric set (ISO/IEC 18004
 * §7.4.4), so a text form prints as a compact QR code and survives being read aloud.
 *
 * Decoding is canonical: the unused low bits of the last character must be zero, and a
 * length that no byte string encodes to (1, 3 or 6 mod 8) is refused. So exactly one
 * string decodes to each byte string, and a mistyped final character cannot slip through.
 */
export const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

const DECODE: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < BASE32_ALPHABET.length; i++) t[BASE32_ALPHABET.charCodeAt(i)] = i;
  return t;
})();

/** The 5-bit value of an alphabet character, or -1. */
export function base32Value(char: string): number {
  const c = char.charCodeAt(0);
  return char.length === 1 && c < 128 ? DECODE[c]! : -1;
}

export function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32_ALPHABET[(acc >>> bits) & 31];
    }
  }
  if (bits > 0) out += BASE32_ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * Decodes a string of alphabet characters only (the caller has already checked them and
 * reports bad characters with their position). Returns undefined when the length or the
 * trailing bits are not canonical.
 */
export function base32Decode(text: string): Uint8Array | undefined {
  const rem = text.length % 8;
  if (rem === 1 || rem === 3 || rem === 6) return undefined;
  const out = new Uint8Array(Math.floor((text.length * 5) / 8));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const v = base32Value(text[i]!);
    if (v < 0) return undefined;
    acc = ((acc << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  // RFC 4648 §3.5: the pad bits must be zero for a canonical encoding.
  if ((acc & ((1 << bits) - 1)) !== 0) return undefined;
  return out;
}
