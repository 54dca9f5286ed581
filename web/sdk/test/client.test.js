import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ParleyClient, ParleyError } from '../src/client.js';
import { encodeServerMessage, decodeClientMessage, frameAll } from '../src/frame.js';
import { encodeServerFrame } from '../src/proto.js';

// An in-process stand-in for the browser WebSocket: the test plays the
// gateway through open(), reply(), push(), drop().
class FakeWebSocket {
  static sockets = [];
  static refuse = 0; // how many of the next connection attempts fail
  static refuseWith = 'close'; // 'close': error then close (browsers); 'error': error only

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.binaryType = 'blob';
    this.sent = []; // decoded ClientFrames
    this.closedByClient = null;
    FakeWebSocket.sockets.push(this);
    if (FakeWebSocket.refuse > 0) {
      FakeWebSocket.refuse--;
      const mode = FakeWebSocket.refuseWith;
      setImmediate(() => {
        this.onerror?.({});
        if (mode === 'close') {
          this.readyState = 3;
          this.onclose?.({ code: 1006, reason: '' });
        }
      });
    }
  }

  static get last() {
    return FakeWebSocket.sockets[FakeWebSocket.sockets.length - 1];
  }

  static reset() {
    FakeWebSocket.sockets = [];
    FakeWebSocket.refuse = 0;
    FakeWebSocket.refuseWith = 'close';
  }

  send(bytes) {
    assert.ok(bytes instanceof Uint8Array);
    this.sent.push(...decodeClientMessage(bytes));
  }

  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    this.closedByClient = { code, reason };
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }

  // ---- gateway side ----
  open() {
    assert.equal(this.binaryType, 'arraybuffer');
    this.readyState = 1;
    this.onopen?.({});
  }

  push(...frames) {
    const u8 = encodeServerMessage(...frames);
    this.onmessage?.({ data: u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength) });
  }

  pushRaw(u8) {
    this.onmessage?.({ data: u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength) });
  }

  reply(req, body) {
    const name = Object.keys(body)[0];
    this.push({ id: req.id, [name]: body[name] });
  }

  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: 'network' });
  }

  // Waits until the client has sent at least n frames; returns frame n-1.
  async request(n) {
    await until(() => this.sent.length >= n, `request #${n}`);
    return this.sent[n - 1];
  }
}

async function until(cond, what = 'condition', ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const WELCOME = {
  session: 's1', serverTimeUs: 1800000000000000, tenant: 'acme', user: 'ann', role: 'customer',
  limits: { frameBytesMax: 65536, bodyBytesMax: 16, publishPerSec: 20, subscriptionsMax: 64, idleMs: 0 },
};

function newClient(opts = {}) {
  FakeWebSocket.reset();
  return new ParleyClient({
    WebSocket: FakeWebSocket, backoff: { initialMs: 1, maxMs: 4 }, requestTimeoutMs: 1000, pingIntervalMs: 0, ...opts,
  });
}

async function openClient(c, token = 'tok') {
  const p = c.open('ws://gw/ws', token);
  await until(() => FakeWebSocket.sockets.length > 0);
  const ws = FakeWebSocket.last;
  ws.open();
  const hello = await ws.request(1);
  assert.equal(hello.body, 'hello');
  assert.equal(hello.hello.token, token);
  ws.reply(hello, { welcome: WELCOME });
  const w = await p;
  assert.equal(w.user, 'ann');
  assert.equal(c.state, 'ready');
  return ws;
}

const msg = (room, seq, text = `m${seq}`) => ({
  event: { room, message: { room, seq, tsUs: 1800000000000000 + seq, sender: 'bob', role: 'agent', body: new TextEncoder().encode(text) } },
});

test('pipelined requests are matched to replies by id, in any order', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const pJoin = c.join('r1');
  const pCreate = c.createRoom({ idempotencyKey: 'key-1', meta: { topic: 'billing' } });
  const pInfo = c.roomInfo('r1');
  const join = await ws.request(2);
  const create = await ws.request(3);
  const info = await ws.request(4);
  assert.deepEqual(join.join, { room: 'r1' });
  assert.equal(create.createRoom.idempotencyKey, 'key-1');
  assert.deepEqual(create.createRoom.meta, [{ key: 'topic', value: 'billing' }]);
  assert.equal(new Set([join.id, create.id, info.id]).size, 3);
  // replies in reverse order, in one WebSocket message
  const u8 = frameAll([
    encodeServerFrame({ id: info.id, roomInfo: { room: 'r1', lastSeq: 7, meta: [{ key: 'topic', value: 'billing' }] } }),
    encodeServerFrame({ id: create.id, roomCreated: { room: 'r9', existed: true } }),
    encodeServerFrame({ id: join.id, ok: {} }),
  ]);
  ws.pushRaw(u8);
  assert.deepEqual(await pCreate, { room: 'r9', existed: true, idempotencyKey: 'key-1' });
  assert.equal(await pJoin, undefined);
  const ri = await pInfo;
  assert.equal(ri.lastSeq, 7);
  assert.deepEqual(ri.meta, { topic: 'billing' });
  c.close();
});

test('replies split across WebSocket messages are reassembled', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const p = c.listRooms({ limit: 2 });
  const req = await ws.request(2);
  assert.deepEqual(req.listRooms, { limit: 2, after: '' });
  const u8 = frameAll([encodeServerFrame({ id: req.id, roomList: { rooms: ['a', 'b'], more: true } })]);
  ws.pushRaw(u8.subarray(0, 3));
  ws.pushRaw(u8.subarray(3, 9));
  ws.pushRaw(u8.subarray(9));
  assert.deepEqual(await p, { rooms: ['a', 'b'], more: true });
  c.close();
});

test('errors reject with code and requestId', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const codes = ['bad_request', 'unauthorized', 'forbidden', 'not_found', 'room_closed', 'too_large',
    'rate_limited', 'overloaded', 'internal'];
  for (const [i, code] of codes.entries()) {
    const p = c.closeRoom('r1', 'done');
    const req = await ws.request(2 + i);
    assert.deepEqual(req.closeRoom, { room: 'r1', reason: 'done' });
    ws.reply(req, { error: { code, message: `no: ${code}` } });
    await assert.rejects(p, (err) => {
      assert.ok(err instanceof ParleyError);
      assert.equal(err.code, code);
      assert.equal(err.requestId, req.id);
      assert.equal(err.message, `no: ${code}`);
      assert.equal(err.retryable, false);
      return true;
    });
  }
  // a reply of the wrong type is an internal error, not a silent success
  const p = c.presence('r1');
  const req = await ws.request(2 + codes.length);
  ws.reply(req, { ok: {} });
  await assert.rejects(p, { code: 'internal' });
  c.close();
});

test('requests time out with a retryable timeout error', async () => {
  const c = newClient({ requestTimeoutMs: 20 });
  const ws = await openClient(c);
  const p = c.typing('r1', true);
  const req = await ws.request(2);
  assert.deepEqual(req.typing, { room: 'r1', active: true });
  await assert.rejects(p, (e) => e.code === 'timeout' && e.retryable && e.requestId === req.id);
  ws.reply(req, { ok: {} }); // late reply: ignored
  c.close();
});

test('hello refused: unauthorized', async () => {
  const c = newClient();
  const p = c.open('ws://gw/ws', 'bad');
  await until(() => FakeWebSocket.sockets.length > 0);
  const ws = FakeWebSocket.last;
  ws.open();
  const hello = await ws.request(1);
  ws.reply(hello, { error: { code: 'unauthorized', message: 'invalid or expired token' } });
  await assert.rejects(p, { code: 'unauthorized', requestId: hello.id });
  assert.equal(c.state, 'open');
  c.close();
});

test('requests made before the welcome wait for it', async () => {
  const c = newClient();
  const pOpen = c.open('ws://gw/ws', 'tok');
  await until(() => FakeWebSocket.sockets.length > 0);
  const ws = FakeWebSocket.last;
  const pJoin = c.join('r1'); // before the socket is even open
  ws.open();
  const hello = await ws.request(1);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(ws.sent.length, 1, 'join must wait for the welcome');
  ws.reply(hello, { welcome: WELCOME });
  await pOpen;
  const join = await ws.request(2);
  ws.reply(join, { ok: {} });
  await pJoin;
  c.close();
});

test('publish: auto client_msg_id, string body, ack fields', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const p = c.publish('r1', { body: 'héllo', meta: { a: '1' } });
  const req = await ws.request(2);
  const pub = req.publish;
  assert.equal(pub.room, 'r1');
  assert.match(pub.clientMsgId, /^[0-9a-f]{32}$/);
  assert.equal(pub.kind, 'text');
  assert.equal(new TextDecoder().decode(pub.body), 'héllo');
  assert.deepEqual(pub.meta, [{ key: 'a', value: '1' }]);
  ws.reply(req, { ack: { room: 'r1', seq: 2n ** 53n + 2n, tsUs: 1800000000000000 } });
  const ack = await p;
  assert.deepEqual(ack, { room: 'r1', seq: 2n ** 53n + 2n, tsUs: 1800000000000000, duplicate: false, clientMsgId: pub.clientMsgId });
  // the body limit from the welcome is enforced before sending
  await assert.rejects(c.publish('r1', { body: 'x'.repeat(17) }), { code: 'too_large' });
  c.close();
});

test('publish retries unavailable with the same client_msg_id', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const p = c.publish('r1', { clientMsgId: 'cm-1', kind: 'event', body: new Uint8Array([1, 2]) });
  const first = await ws.request(2);
  ws.reply(first, { error: { code: 'unavailable', message: 'leader moved', leaderHint: 'x' } });
  const second = await ws.request(3);
  assert.notEqual(second.id, first.id);
  assert.equal(second.publish.clientMsgId, 'cm-1');
  assert.deepEqual(second.publish.body, new Uint8Array([1, 2]));
  ws.reply(second, { ack: { room: 'r1', seq: 5, tsUs: 1, duplicate: true } });
  const ack = await p;
  assert.equal(ack.seq, 5);
  assert.equal(ack.duplicate, true);
  // non-retryable errors are not retried
  const p2 = c.publish('r1', { body: 'x' });
  const r = await ws.request(4);
  ws.reply(r, { error: { code: 'room_closed', message: 'closed' } });
  await assert.rejects(p2, { code: 'room_closed' });
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(ws.sent.length, 4);
  c.close();
});

test('events are dispatched by type', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const seen = [];
  for (const t of ['typing', 'read', 'presence', 'closed', 'goodbye', 'error']) {
    c.on(t, (d) => seen.push([t, d]));
  }
  ws.push(
    { event: { room: 'r1', typing: { user: 'bob', role: 'agent', active: true } } },
    { event: { room: 'r1', read: { user: 'bob', seq: 3 } } },
    { event: { room: 'r1', presence: { user: 'bob', role: 'agent', online: true } } },
    { event: { room: 'r1', closed: { reason: 'solved', tsUs: 9 } } },
    { error: { code: 'forbidden', message: 'subscription ended: catch-up refused' } },
    { goodbye: { code: 'none', reason: 'idle' } },
  );
  assert.deepEqual(seen.slice(0, 4), [
    ['typing', { room: 'r1', user: 'bob', role: 'agent', active: true }],
    ['read', { room: 'r1', user: 'bob', seq: 3 }],
    ['presence', { room: 'r1', user: 'bob', role: 'agent', online: true, joined: false, left: false }],
    ['closed', { room: 'r1', reason: 'solved', tsUs: 9 }],
  ]);
  assert.equal(seen[4][0], 'error');
  assert.equal(seen[4][1].code, 'forbidden');
  assert.deepEqual(seen[5], ['goodbye', { code: 'none', reason: 'idle' }]);
  c.close();
});

test('subscribe delivers in order and drops duplicates', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const got = [];
  const viaEvent = [];
  c.on('message', (m) => viaEvent.push(m.seq));
  const p = c.subscribe('r1', 0, (m) => got.push([m.seq, m.text]));
  const req = await ws.request(2);
  assert.deepEqual(req.subscribe, { room: 'r1', sinceSeq: 0 });
  ws.reply(req, { subscribed: { room: 'r1', lastSeq: 2 } });
  ws.push(msg('r1', 1), msg('r1', 2), msg('r1', 2), msg('r1', 1), msg('r1', 3), msg('r2', 1));
  assert.deepEqual(await p, { room: 'r1', lastSeq: 2 });
  assert.deepEqual(got, [[1, 'm1'], [2, 'm2'], [3, 'm3']]);
  assert.deepEqual(viaEvent, [1, 2, 3]); // r2 has no subscription: dropped
  assert.equal(c.lastSeq('r1'), 3);
  assert.equal(c.stats.duplicatesDropped, 2);
  const pu = c.unsubscribe('r1');
  const u = await ws.request(3);
  assert.deepEqual(u.unsubscribe, { room: 'r1' });
  ws.reply(u, { ok: {} });
  await pu;
  ws.push(msg('r1', 4));
  assert.equal(got.length, 3);
  c.close();
});

test('reconnect: hello again, resubscribe from the last delivered seq, no duplicates', async () => {
  const c = newClient();
  const ws1 = await openClient(c, 'tok-A');
  const got = [];
  const events = [];
  c.on('disconnect', (d) => events.push(['disconnect', d.willReconnect]));
  c.on('reconnect', (d) => events.push(['reconnect', d.welcome.session]));
  const ps = c.subscribe('r1', 10, (m) => got.push(m.seq));
  const pr2 = c.subscribe('r2', 0, (m) => got.push(`r2:${m.seq}`));
  const s1 = await ws1.request(2);
  const s2 = await ws1.request(3);
  assert.equal(s1.subscribe.sinceSeq, 10);
  ws1.reply(s1, { subscribed: { room: 'r1', lastSeq: 12 } });
  ws1.reply(s2, { subscribed: { room: 'r2', lastSeq: 0 } });
  await ps;
  await pr2;
  ws1.push(msg('r1', 11), msg('r1', 12), msg('r1', 13));

  // A request in flight when the connection drops fails as unavailable.
  const pInfo = c.presence('r1');
  await ws1.request(4);
  FakeWebSocket.refuse = 2; // the first two attempts fail: backoff, then retry
  ws1.drop();
  await assert.rejects(pInfo, { code: 'unavailable' });
  assert.equal(c.state, 'reconnecting');
  await until(() => FakeWebSocket.sockets.length === 4, 'third connection attempt');
  const ws2 = FakeWebSocket.last;
  ws2.open();
  const hello = await ws2.request(1);
  assert.equal(hello.hello.token, 'tok-A');
  ws2.reply(hello, { welcome: { ...WELCOME, session: 's2' } });
  const r1 = await ws2.request(2);
  const r2 = await ws2.request(3);
  const subs = Object.fromEntries([r1, r2].map((f) => [f.subscribe.room, f]));
  assert.equal(subs.r1.subscribe.sinceSeq, 13);
  assert.equal(subs.r2.subscribe.sinceSeq, 0);
  ws2.reply(subs.r1, { subscribed: { room: 'r1', lastSeq: 15 } });
  ws2.reply(subs.r2, { subscribed: { room: 'r2', lastSeq: 1 } });
  // The gateway (or a duplicate in the feed) replays old seqs: dropped.
  ws2.push(msg('r1', 12), msg('r1', 13), msg('r1', 14), msg('r2', 1), msg('r1', 14), msg('r1', 15));
  assert.deepEqual(got, [11, 12, 13, 14, 'r2:1', 15]);
  assert.deepEqual(events, [['disconnect', true], ['reconnect', 's2']]);
  assert.equal(c.stats.reconnects, 1);
  c.close();
});

test('publish in flight during a disconnect is retried after reconnect with the same id', async () => {
  const c = newClient();
  const ws1 = await openClient(c);
  const p = c.publish('r1', { clientMsgId: 'keep-me', body: 'hi' });
  const first = await ws1.request(2);
  ws1.drop(); // ack lost with the connection
  await until(() => FakeWebSocket.sockets.length === 2, 'reconnect');
  const ws2 = FakeWebSocket.last;
  ws2.open();
  const hello = await ws2.request(1);
  ws2.reply(hello, { welcome: WELCOME });
  const again = await ws2.request(2);
  assert.equal(again.body, 'publish');
  assert.equal(again.publish.clientMsgId, first.publish.clientMsgId);
  ws2.reply(again, { ack: { room: 'r1', seq: 1, tsUs: 2, duplicate: true } });
  assert.deepEqual(await p, { room: 'r1', seq: 1, tsUs: 2, duplicate: true, clientMsgId: 'keep-me' });
  c.close();
});

test('goodbye unauthorized stops reconnecting; close() fails pending requests', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const disc = [];
  c.on('disconnect', (d) => disc.push(d));
  ws.push({ goodbye: { code: 'unauthorized', reason: 'token expired' } });
  ws.drop(1000);
  assert.equal(disc.length, 1);
  assert.equal(disc[0].willReconnect, false);
  assert.equal(disc[0].reason, 'token expired');
  assert.equal(c.state, 'idle');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeWebSocket.sockets.length, 1);
  await assert.rejects(c.join('r1'), { code: 'unavailable' });

  const c2 = newClient();
  const ws2 = await openClient(c2);
  const p = c2.history('r1', { beforeSeq: 9, limit: 5 });
  const h = await ws2.request(2);
  assert.deepEqual(h.history, { room: 'r1', beforeSeq: 9, afterSeq: 0, limit: 5, oldestFirst: false, maxBytes: 0 });
  c2.close();
  await assert.rejects(p, { code: 'closed' });
  assert.equal(ws2.closedByClient.code, 1000);
  await assert.rejects(c2.ping(), { code: 'closed' });
});

test('history and presence results', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const ph = c.history('r1', { afterSeq: 2, oldestFirst: true, limit: 2 });
  const h = await ws.request(2);
  ws.reply(h, { history: { room: 'r1', more: true, messages: [msg('r1', 3).event.message, msg('r1', 4, 'four').event.message] } });
  const page = await ph;
  assert.equal(page.more, true);
  assert.deepEqual(page.messages.map((m) => [m.seq, m.text, m.role, m.sender]), [[3, 'm3', 'agent', 'bob'], [4, 'four', 'agent', 'bob']]);
  const pp = c.presence('r1');
  const pr = await ws.request(3);
  ws.reply(pr, { presence: { room: 'r1', members: [{ user: 'ann', role: 'customer', online: true, readSeq: 4, joined: true }] } });
  assert.deepEqual((await pp).members[0], { user: 'ann', role: 'customer', online: true, readSeq: 4, joined: true });
  const pping = c.ping();
  const pg = await ws.request(4);
  assert.ok(pg.ping.tsUs > 1.6e15);
  ws.reply(pg, { pong: { tsUs: pg.ping.tsUs, serverTimeUs: 7 } });
  const pong = await pping;
  assert.equal(pong.serverTimeUs, 7);
  assert.ok(pong.rttMs >= 0);
  c.close();
});

test('a failed connect that only reports an error (no close event) still retries', async () => {
  const c = newClient();
  const ws1 = await openClient(c);
  FakeWebSocket.refuse = 2;
  FakeWebSocket.refuseWith = 'error';
  ws1.drop();
  await until(() => FakeWebSocket.sockets.length === 4, 'third attempt');
  const ws2 = FakeWebSocket.last;
  ws2.open();
  const hello = await ws2.request(1);
  ws2.reply(hello, { welcome: WELCOME });
  await until(() => c.state === 'ready', 'ready');
  c.close();
});

test('an error after open without a close event counts as a lost connection', async () => {
  const c = newClient();
  const ws1 = await openClient(c);
  const lost = new Promise((r) => c.once('disconnect', r));
  ws1.onerror({}); // no close follows
  const d = await lost;
  assert.equal(d.willReconnect, true);
  await until(() => FakeWebSocket.sockets.length === 2, 'reconnect attempt');
  c.close();
});

test('tokenRefresh is called ahead of the expiry and the new token is sent as refresh', async () => {
  let calls = 0;
  const c = newClient({ tokenRefresh: async () => `tok${++calls}`, refreshAheadMs: 60000 });
  const p = c.open('ws://gw/ws', 'tok0');
  await until(() => FakeWebSocket.sockets.length > 0);
  const ws = FakeWebSocket.last;
  ws.open();
  const hello = await ws.request(1);
  const exp = Math.floor(Date.now() / 1000) + 2;
  ws.reply(hello, { welcome: { ...WELCOME, tokenExpS: exp } });
  const w = await p;
  assert.equal(w.tokenExpS, exp);
  // Asked at half the remaining life, well before the expiry.
  const req = await (async () => {
    await until(() => ws.sent.length >= 2, 'refresh request', 3000);
    return ws.sent[1];
  })();
  assert.ok(Date.now() < exp * 1000);
  assert.equal(req.body, 'refresh');
  assert.equal(req.refresh.token, 'tok1');
  ws.reply(req, { refreshed: { tokenExpS: exp + 600 } });
  await until(() => c.welcome.tokenExpS === exp + 600, 'new expiry');
  assert.equal(c.token, 'tok1'); // a reconnect says hello with it
  assert.equal(calls, 1);
  c.close();
});

test('refresh(token) resolves with the new expiry; a refusal rejects with the reason', async () => {
  const c = newClient();
  const ws = await openClient(c);
  const p = c.refresh('other');
  const req = await ws.request(2);
  ws.reply(req, { error: { code: 'unauthorized', message: 'refresh refused: the token\'s tenant, user, role or room scope differs' } });
  await assert.rejects(p, (err) => err.code === 'unauthorized' && /differs/.test(err.message));
  assert.equal(c.token, 'tok');
  const p2 = c.refresh('tok2');
  const req2 = await ws.request(3);
  ws.reply(req2, { refreshed: { tokenExpS: 1900000000 } });
  assert.equal(await p2, 1900000000);
  assert.equal(c.token, 'tok2');
  c.close();
});

test('retryable errors carry notApplied and retryAfterMs', async () => {
  const c = newClient({ publishRetries: 0 });
  const ws = await openClient(c);
  const p = c.closeRoom('r1', 'x');
  const req = await ws.request(2);
  ws.reply(req, { error: { code: 'rate_limited', message: 'publish_per_sec 20 exceeded (burst 40): retry in 40 ms', notApplied: true, retryAfterMs: 40 } });
  await assert.rejects(p, (err) => err.code === 'rate_limited' && err.notApplied === true && err.retryAfterMs === 40);
  c.close();
});
