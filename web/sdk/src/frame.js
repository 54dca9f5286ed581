// Framing: every frame is a 4-byte big-endian length followed by that many
// bytes of protobuf (one ClientFrame or ServerFrame). The same framing is
// used on TCP streams and inside WebSocket binary messages; a WebSocket
// message may carry one or more whole frames.

import { encodeClientFrame, decodeServerFrame, encodeServerFrame, decodeClientFrame } from './proto.js';

export const FRAME_HEADER_BYTES = 4;
/** Default bound on one frame's payload; the gateway announces its own in Welcome.limits. */
export const DEFAULT_FRAME_BYTES_MAX = 16 * 1024 * 1024;

export class FrameError extends Error {
  constructor(message) {
    super(message);
    this.name = 'FrameError';
  }
}

function asU8(chunk) {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new FrameError('frame input must be a Uint8Array, ArrayBuffer or typed array view');
}

/** Prefixes one payload with its 4-byte big-endian length. */
export function frame(payload) {
  const p = asU8(payload);
  const out = new Uint8Array(FRAME_HEADER_BYTES + p.length);
  new DataView(out.buffer).setUint32(0, p.length, false);
  out.set(p, FRAME_HEADER_BYTES);
  return out;
}

/** Concatenates several payloads, each framed, into one buffer (one WebSocket message). */
export function frameAll(payloads) {
  const framed = payloads.map(frame);
  const total = framed.reduce((n, f) => n + f.length, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const f of framed) {
    out.set(f, off);
    off += f.length;
  }
  return out;
}

/**
 * Splits a buffer that holds whole frames (e.g. one WebSocket message) into
 * payloads. Throws a FrameError on a partial frame or an oversized length.
 */
export function splitFrames(buf, maxFrameBytes = DEFAULT_FRAME_BYTES_MAX) {
  const s = new FrameSplitter({ maxFrameBytes });
  const out = s.push(buf);
  if (s.pending > 0) throw new FrameError(`trailing partial frame (${s.pending} bytes)`);
  return out;
}

/**
 * Streaming splitter: push() arbitrary chunks, get back every payload that
 * became complete. Bytes of an incomplete frame are kept for the next push.
 * Payloads returned are copies or views that stay valid after later pushes.
 */
export class FrameSplitter {
  constructor({ maxFrameBytes = DEFAULT_FRAME_BYTES_MAX } = {}) {
    this.maxFrameBytes = maxFrameBytes;
    this.buf = new Uint8Array(0);
  }

  /** Number of buffered bytes that do not yet form a whole frame. */
  get pending() {
    return this.buf.length;
  }

  push(chunk) {
    let data = asU8(chunk);
    if (this.buf.length > 0) {
      const joined = new Uint8Array(this.buf.length + data.length);
      joined.set(this.buf);
      joined.set(data, this.buf.length);
      data = joined;
    }
    const out = [];
    let off = 0;
    while (data.length - off >= FRAME_HEADER_BYTES) {
      const len = ((data[off] << 24) >>> 0) + (data[off + 1] << 16) + (data[off + 2] << 8) + data[off + 3];
      if (len > this.maxFrameBytes) {
        this.buf = new Uint8Array(0);
        throw new FrameError(`frame of ${len} bytes exceeds the limit of ${this.maxFrameBytes}`);
      }
      if (data.length - off - FRAME_HEADER_BYTES < len) break;
      const start = off + FRAME_HEADER_BYTES;
      // A copy when the input was the caller's buffer, so later reuse cannot alter it.
      out.push(data.slice(start, start + len));
      off = start + len;
    }
    this.buf = off === data.length ? new Uint8Array(0) : data.slice(off);
    return out;
  }

  reset() {
    this.buf = new Uint8Array(0);
  }
}

/** ClientFrame object -> framed bytes ready to send. */
export function encodeClientMessage(frameObj) {
  return frame(encodeClientFrame(frameObj));
}

/** Framed bytes holding whole frames -> ServerFrame objects. */
export function decodeServerMessage(buf, maxFrameBytes) {
  return splitFrames(buf, maxFrameBytes).map(decodeServerFrame);
}

/** For tests and fakes: ServerFrame objects -> one framed buffer. */
export function encodeServerMessage(...frames) {
  return frameAll(frames.map(encodeServerFrame));
}

/** For tests and fakes: framed bytes -> ClientFrame objects. */
export function decodeClientMessage(buf, maxFrameBytes) {
  return splitFrames(buf, maxFrameBytes).map(decodeClientFrame);
}
