/**
 * Length-prefixed framing: every frame is `u16 big-endian length ‖ payload`.
 *
 * The 16-bit length makes 65535 the hard ceiling, which is also the Noise message limit
 * (Noise rev 34 §3), so one Noise message is always exactly one frame. The decoder checks
 * the announced length before it buffers a single body byte: a peer cannot make us allocate
 * or wait for more than `maxFrameLen` bytes.
 */
import { EnrollError } from '../errors.js';
import { abytes, concatAll } from '../crypto/bytes.js';

export const FRAME_HEADER_LEN = 2;
/** The largest payload a u16 length can announce; equal to the Noise message limit. */
export const MAX_FRAME_LEN = 0xffff;

/** Checks a frame-length limit given by a caller: an integer 0..65535. */
export function checkMaxFrameLen(maxFrameLen: unknown, name = 'maxFrameLen'): number {
  if (
    typeof maxFrameLen !== 'number' ||
    !Number.isInteger(maxFrameLen) ||
    maxFrameLen < 0 ||
    maxFrameLen > MAX_FRAME_LEN
  ) {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}" must be an integer 0..${MAX_FRAME_LEN}, got ${String(maxFrameLen)}`);
  }
  return maxFrameLen;
}

function tooLarge(len: number, max: number): EnrollError {
  return new EnrollError('ERR_FRAME_TOO_LARGE', `frame of ${len} bytes exceeds the limit of ${max} bytes`);
}

/** Returns `length ‖ payload` as one new array. Throws ERR_FRAME_TOO_LARGE above `maxFrameLen`. */
export function encodeFrame(payload: Uint8Array, maxFrameLen: number = MAX_FRAME_LEN): Uint8Array {
  abytes(payload, undefined, 'payload');
  checkMaxFrameLen(maxFrameLen);
  if (payload.length > maxFrameLen) throw tooLarge(payload.length, maxFrameLen);
  const out = new Uint8Array(FRAME_HEADER_LEN + payload.length);
  out[0] = payload.length >>> 8;
  out[1] = payload.length & 0xff;
  out.set(payload, FRAME_HEADER_LEN);
  return out;
}

/**
 * The 2-byte header of a frame of `len` bytes, for a writer that sends the header and the
 * payload's pieces separately (writev) instead of joining them. Same checks as encodeFrame.
 */
export function encodeFrameHeader(len: number, maxFrameLen: number = MAX_FRAME_LEN): Uint8Array {
  checkMaxFrameLen(maxFrameLen);
  if (!Number.isInteger(len) || len < 0) throw new EnrollError('ERR_INVALID_ARG', `frame length must be an integer >= 0, got ${String(len)}`);
  if (len > maxFrameLen) throw tooLarge(len, maxFrameLen);
  return Uint8Array.of(len >>> 8, len & 0xff);
}

/**
 * Incremental decoder. `push` takes whatever the stream delivered (a frame split across
 * chunks, many frames in one chunk, or a lone header byte) and returns the frames it
 * completed, each in its own new array; `pushPartsUpTo` returns each frame as the slices of
 * the chunks it lies in, copying nothing (for the bulk paths, which decrypt the slices into
 * a new buffer anyway). After it has thrown once it keeps throwing: the stream is out of
 * sync and must be dropped.
 */
export class FrameDecoder {
  maxFrameLen: number;
  /** First header byte when a chunk ended between the two header bytes. */
  #headerByte = -1;
  /** Length of the body being gathered (checked before any of it is kept); -1 between frames. */
  #need = -1;
  /** The body's slices so far. */
  #parts: Uint8Array[] = [];
  #filled = 0;
  #error: EnrollError | undefined;

  constructor(maxFrameLen: number = MAX_FRAME_LEN) {
    this.maxFrameLen = checkMaxFrameLen(maxFrameLen);
  }

  /**
   * True while a frame has started but not finished. A stream that ends in this state was
   * cut mid-frame.
   */
  get inProgress(): boolean {
    return this.#headerByte >= 0 || this.#need >= 0;
  }

  /** Bytes received of the unfinished frame (header included), and what it announced. */
  get progress(): { received: number; expected: number | undefined } {
    if (this.#need >= 0) {
      return { received: FRAME_HEADER_LEN + this.#filled, expected: FRAME_HEADER_LEN + this.#need };
    }
    return { received: this.#headerByte >= 0 ? 1 : 0, expected: undefined };
  }

  /** Decodes all of `chunk`; returns the frames it completed. */
  push(chunk: Uint8Array): Uint8Array[] {
    return this.pushUpTo(chunk, Infinity).frames;
  }

  /**
   * Decodes `chunk` until `maxFrames` frames are complete; `used` says how many bytes of
   * it were consumed, and the caller passes the rest later. This lets a reader bound the
   * frames it holds: a 64 KiB chunk can hold 32 768 empty frames.
   */
  pushUpTo(chunk: Uint8Array, maxFrames: number): { frames: Uint8Array[]; used: number } {
    const { frames, used } = this.pushPartsUpTo(chunk, maxFrames);
    return { frames: frames.map(joinFrame), used };
  }

  /**
   * As `pushUpTo`, but each frame is the list of its body's slices (of `chunk` and of the
   * chunks before it), in order; an empty frame is an empty list. The slices keep their
   * chunks alive, so a caller holds them only until it has decoded or decrypted them.
   */
  pushPartsUpTo(chunk: Uint8Array, maxFrames: number): { frames: Uint8Array[][]; used: number } {
    if (this.#error !== undefined) throw this.#error;
    abytes(chunk, undefined, 'chunk');
    const frames: Uint8Array[][] = [];
    let i = 0;
    const n = chunk.length;
    while (i < n && frames.length < maxFrames) {
      if (this.#need < 0) {
        // Read the 2-byte header, possibly split across chunks.
        let len: number;
        if (this.#headerByte >= 0) {
          len = (this.#headerByte << 8) | chunk[i]!;
          this.#headerByte = -1;
          i += 1;
        } else if (n - i >= FRAME_HEADER_LEN) {
          len = (chunk[i]! << 8) | chunk[i + 1]!;
          i += FRAME_HEADER_LEN;
        } else {
          this.#headerByte = chunk[i]!;
          i += 1;
          break;
        }
        // Checked before anything is kept for the body.
        if (len > this.maxFrameLen) {
          this.#error = tooLarge(len, this.maxFrameLen);
          throw this.#error;
        }
        if (len === 0) {
          frames.push([]);
          continue;
        }
        this.#need = len;
        this.#filled = 0;
      }
      const take = Math.min(this.#need - this.#filled, n - i);
      this.#parts.push(take === n && i === 0 ? chunk : chunk.subarray(i, i + take));
      this.#filled += take;
      i += take;
      if (this.#filled === this.#need) {
        frames.push(this.#parts);
        this.#parts = [];
        this.#need = -1;
        this.#filled = 0;
      }
    }
    return { frames, used: i };
  }
}

/** One frame's slices as one new array. */
export function joinFrame(parts: readonly Uint8Array[]): Uint8Array {
  return concatAll(parts);
}
