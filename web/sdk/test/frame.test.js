import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  frame, frameAll, splitFrames, FrameSplitter, FrameError,
  encodeClientMessage, decodeClientMessage, encodeServerMessage, decodeServerMessage,
} from '../src/frame.js';

const hex = (u8) => Buffer.from(u8).toString('hex');

test('frame prefixes a 4-byte big-endian length', () => {
  assert.equal(hex(frame(new Uint8Array([1, 2, 3]))), '00000003010203');
  assert.equal(hex(frame(new Uint8Array(0))), '00000000');
  const big = frame(new Uint8Array(0x010203));
  assert.equal(hex(big.subarray(0, 4)), '00010203');
  // A ClientFrame{id:1, ping{ts_us:5}} as it goes on the wire.
  assert.equal(hex(encodeClientMessage({ id: 1, ping: { tsUs: 5 } })), '00000006080172020805');
});

test('one buffer with several frames splits into each payload', () => {
  const buf = frameAll([new Uint8Array([1]), new Uint8Array(0), new Uint8Array([2, 3])]);
  assert.equal(hex(buf), '00000001' + '01' + '00000000' + '00000002' + '0203');
  assert.deepEqual(splitFrames(buf).map(hex), ['01', '', '0203']);
  assert.deepEqual(splitFrames(buf.buffer).map(hex), ['01', '', '0203']);
});

test('multi-frame WebSocket message of ServerFrames', () => {
  const msg = encodeServerMessage({ id: 1, ok: {} }, { event: { room: 'r', typing: { user: 'u', active: true } } },
    { id: 2, error: { code: 'not_found', message: 'no room' } });
  const frames = decodeServerMessage(msg);
  assert.deepEqual(frames.map((f) => f.body), ['ok', 'event', 'error']);
  assert.equal(frames[1].event.typing.user, 'u');
  assert.equal(frames[2].error.code, 'not_found');
});

test('splitFrames refuses a trailing partial frame', () => {
  const buf = frameAll([new Uint8Array([1, 2])]);
  assert.throws(() => splitFrames(buf.subarray(0, 5)), FrameError);
  assert.throws(() => splitFrames(buf.subarray(0, 2)), FrameError);
});

test('streaming splitter: frames across every chunk boundary', () => {
  const payloads = [new Uint8Array([9, 8, 7]), new Uint8Array(0), new Uint8Array(300).fill(5), new Uint8Array([1])];
  const wire = frameAll(payloads);
  // every split point, two chunks
  for (let cut = 0; cut <= wire.length; cut++) {
    const s = new FrameSplitter();
    const out = [...s.push(wire.subarray(0, cut)), ...s.push(wire.subarray(cut))];
    assert.deepEqual(out.map(hex), payloads.map(hex), `cut ${cut}`);
    assert.equal(s.pending, 0);
  }
  // one byte at a time
  const s = new FrameSplitter();
  const out = [];
  for (let i = 0; i < wire.length; i++) out.push(...s.push(wire.subarray(i, i + 1)));
  assert.deepEqual(out.map(hex), payloads.map(hex));
});

test('streaming splitter keeps payloads valid when the input buffer is reused', () => {
  const s = new FrameSplitter();
  const chunk = new Uint8Array([0, 0, 0, 2, 0xaa, 0xbb]);
  const [p] = s.push(chunk);
  chunk.fill(0);
  assert.equal(hex(p), 'aabb');
});

test('streaming splitter refuses an oversized length before buffering it', () => {
  const s = new FrameSplitter({ maxFrameBytes: 10 });
  assert.deepEqual(s.push(new Uint8Array([0, 0, 0, 10, ...new Uint8Array(10)])).length, 1);
  assert.throws(() => s.push(new Uint8Array([0, 0, 0, 11])), FrameError);
  assert.throws(() => s.push(new Uint8Array([0xff, 0xff, 0xff, 0xff])), FrameError);
});

test('client frames round-trip through framing', () => {
  const a = encodeClientMessage({ id: 1, hello: { token: 't' } });
  const b = encodeClientMessage({ id: 2, join: { room: 'r' } });
  const both = new Uint8Array([...a, ...b]);
  const frames = decodeClientMessage(both);
  assert.deepEqual(frames, [
    { id: 1, body: 'hello', hello: { token: 't', client: '' } },
    { id: 2, body: 'join', join: { room: 'r' } },
  ]);
});
