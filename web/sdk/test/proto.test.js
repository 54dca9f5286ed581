import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encode, decode, encodeClientFrame, decodeClientFrame, encodeServerFrame, decodeServerFrame,
  ProtoError, SCHEMA, CLIENT_BODIES, SERVER_BODIES, toBigInt, fromBigInt,
} from '../src/proto.js';

const hex = (u8) => Buffer.from(u8).toString('hex');
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'));

// Byte vectors below were worked out by hand from the proto3 wire format
// and cross-checked with `protoc --encode` against proto/parley.proto.
test('ClientFrame{id:1, ping{ts_us:5}} bytes', () => {
  // 08 01        field 1 (id), varint 1
  // 72 02        field 14 (ping), length 2
  //   08 05      field 1 (ts_us), varint 5
  const b = encodeClientFrame({ id: 1, ping: { tsUs: 5 } });
  assert.equal(hex(b), '080172020805');
  assert.deepEqual(decodeClientFrame(b), { id: 1, body: 'ping', ping: { tsUs: 5 } });
});

test('ClientFrame publish with meta, two-byte id and enum', () => {
  const b = encodeClientFrame({
    id: 300,
    publish: { room: 'r1', clientMsgId: 'c', kind: 'event', body: 'hi', meta: [{ key: 'k', value: 'v' }] },
  });
  assert.equal(hex(b), '08ac0232150a0272311201631801220268692a060a016b120176');
  const d = decodeClientFrame(b);
  assert.equal(d.body, 'publish');
  assert.equal(d.id, 300);
  assert.equal(d.publish.kind, 'event');
  assert.deepEqual(d.publish.body, new Uint8Array([0x68, 0x69]));
  assert.deepEqual(d.publish.meta, [{ key: 'k', value: 'v' }]);
  // meta given as a plain object encodes the same
  const b2 = encodeClientFrame({
    id: 300, publish: { room: 'r1', clientMsgId: 'c', kind: 1, body: new Uint8Array([0x68, 0x69]), meta: { k: 'v' } },
  });
  assert.equal(hex(b2), hex(b));
});

test('empty oneof members are still written (status, ok)', () => {
  assert.equal(hex(encodeClientFrame({ id: 2, status: {} })), '08028a0100');
  assert.equal(hex(encodeClientFrame({ id: 2, body: 'status' })), '08028a0100');
  const ok = encodeServerFrame({ id: 5, ok: {} });
  assert.equal(hex(ok), '08052a00');
  assert.deepEqual(decodeServerFrame(ok), { id: 5, body: 'ok', ok: {} });
});

test('uint64 max and values above 2^53 survive', () => {
  const b = encodeClientFrame({ id: 7, subscribe: { room: 'x', sinceSeq: 18446744073709551615n } });
  assert.equal(hex(b), '08073a0e0a017810ffffffffffffffffff01');
  const d = decodeClientFrame(b);
  assert.equal(d.subscribe.sinceSeq, 18446744073709551615n);

  const ev = unhex('6a250a017212200a0172108180808080808010188080e2c4f2a299032203616e6e28023a02c3a9');
  const f = decodeServerFrame(ev);
  assert.equal(f.id, 0);
  assert.equal(f.body, 'event');
  assert.equal(f.event.ev, 'message');
  const m = f.event.message;
  assert.equal(m.seq, 9007199254740993n); // 2^53 + 1: a BigInt, exact
  assert.equal(m.tsUs, 1800000000000000); // safe: a Number
  assert.equal(m.sender, 'ann');
  assert.equal(m.role, 'agent');
  assert.equal(m.kind, 'text');
  assert.equal(new TextDecoder().decode(m.body), 'é');
  assert.deepEqual(m.meta, []);
  assert.equal(m.clientMsgId, '');
  assert.equal(hex(encodeServerFrame(f)), hex(ev));
});

test('int64 negatives and packed repeated int64', () => {
  const b = unhex('080352150a0172321028ffffffffffffffffff013a0301ac02');
  const f = decodeServerFrame(b);
  assert.equal(f.body, 'roomInfo');
  assert.equal(f.roomInfo.stats.waitUs, -1);
  assert.deepEqual(f.roomInfo.stats.turnResponseUs, [1, 300]);
  assert.equal(hex(encodeServerFrame(f)), hex(b));
  // unpacked encoding of the same repeated field is accepted too
  const unpacked = unhex('3801' + '38ac02'); // field 7 varint 1, field 7 varint 300
  assert.deepEqual(decode('RoomStats', unpacked).turnResponseUs, [1, 300]);
  for (const v of [-(2n ** 63n), 2n ** 63n - 1n, -9007199254740993n, -5]) {
    const d = decode('Ping', encode('Ping', { tsUs: v }));
    assert.equal(toBigInt(d.tsUs), toBigInt(v));
  }
  assert.throws(() => encode('Ping', { tsUs: 2n ** 63n }), ProtoError);
  assert.throws(() => encode('Subscribe', { sinceSeq: -1 }), ProtoError);
});

test('error frame bytes and enum names', () => {
  const b = encodeServerFrame({ id: 4, error: { code: 'room_closed', message: 'closed' } });
  assert.equal(hex(b), '0804720a08051206636c6f736564');
  assert.deepEqual(decodeServerFrame(b), {
    id: 4, body: 'error',
    error: { code: 'room_closed', message: 'closed', leaderHint: '', notApplied: false, retryAfterMs: 0 },
  });
  // An enum number the SDK does not know decodes to the number.
  assert.equal(decode('Error', unhex('0863')).code, 99);
});

test('64-bit varint boundaries', () => {
  const cases = [0n, 1n, 127n, 128n, 16383n, 16384n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n,
    2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n];
  for (const v of cases) {
    const d = decode('Read', encode('Read', { room: 'r', seq: v }));
    assert.equal(toBigInt(d.seq), v, `seq ${v}`);
    assert.equal(typeof d.seq, v <= 2n ** 53n - 1n ? 'number' : 'bigint');
  }
  assert.equal(hex(encode('Read', { seq: 2n ** 64n - 1n })), '10ffffffffffffffffff01');
  assert.equal(hex(encode('Read', { seq: '128' })), '108001');
  assert.equal(fromBigInt(5n), 5);
  // varints longer than 10 bytes are refused
  assert.throws(() => decode('Read', unhex('10ffffffffffffffffffff01')), ProtoError);
});

test('unknown fields of every wire type are skipped', () => {
  const known = encode('Ack', { room: 'r', seq: 42, tsUs: 1700000000000000, duplicate: true });
  const unknown = unhex([
    '2801', // field 5 varint 1
    '30ffffffffffffffffff01', // field 6 varint, 10 bytes
    '390102030405060708', // field 7 fixed64
    '420568656c6c6f', // field 8 length-delimited "hello"
    '4d01020304', // field 9 fixed32
    '53' + '0801' + '1a0161' + '53' + '0802' + '54' + '54', // field 10 group with a nested group 10
    'f8ffffff0f07', // field 536870911 (max) varint 7
  ].join(''));
  const mixed = new Uint8Array(known.length + unknown.length);
  mixed.set(unknown);
  mixed.set(known, unknown.length);
  const d = decode('Ack', mixed);
  assert.deepEqual(d, { room: 'r', seq: 42, tsUs: 1700000000000000, duplicate: true });
  // in a nested position too
  const inner = encode('Subscribed', { room: 'r', lastSeq: 9 });
  const withUnknown = new Uint8Array([...inner, 0x7a, 0x01, 0x00]); // field 15 bytes
  const frame = new Uint8Array([0x08, 0x09, 0x32, withUnknown.length, ...withUnknown, 0xa0, 0x06, 0x01]); // + field 100
  assert.deepEqual(decodeServerFrame(frame), { id: 9, body: 'subscribed', subscribed: { room: 'r', lastSeq: 9 } });
});

test('malformed input throws ProtoError, never loops', () => {
  const bad = [
    '0a05616263', // string longer than the buffer
    '08', // truncated varint
    '0b0801', // unterminated group
    '0c', // stray end group
    '0f', // wire type 7
    '00', // field number 0
    '0a', // missing length
    '3a', // subscribe oneof without length
    '1801', // ClientFrame.hello (field 3 = create_room) as varint: wire type mismatch
    '09000000', // truncated fixed64
  ];
  for (const h of bad) assert.throws(() => decodeClientFrame(unhex(h)), ProtoError, h);
});

test('every ClientFrame body round-trips', () => {
  const bodies = {
    hello: { token: 'tok', client: 'js' },
    createRoom: { idempotencyKey: 'k', meta: [{ key: 'a', value: 'b' }] },
    join: { room: 'r' },
    leave: { room: 'r' },
    publish: { room: 'r', clientMsgId: 'c', kind: 'system', body: new Uint8Array([0, 255]), meta: [] },
    subscribe: { room: 'r', sinceSeq: 12 },
    unsubscribe: { room: 'r' },
    history: { room: 'r', beforeSeq: 10, afterSeq: 0, limit: 50, oldestFirst: true, maxBytes: 4096 },
    typing: { room: 'r', active: true },
    read: { room: 'r', seq: 3 },
    presence: { room: 'r' },
    closeRoom: { room: 'r', reason: 'solved' },
    ping: { tsUs: 123 },
    roomInfo: { room: 'r' },
    listRooms: { limit: 10, after: 'r0' },
    status: {},
    report: { days: 30 },
    refresh: { token: 'tok2' },
  };
  assert.deepEqual(Object.keys(bodies).sort(), [...CLIENT_BODIES].sort());
  for (const [name, body] of Object.entries(bodies)) {
    const d = decodeClientFrame(encodeClientFrame({ id: 77, body: name, [name]: body }));
    assert.equal(d.body, name);
    assert.equal(d.id, 77);
    assert.deepEqual(d[name], body, name);
  }
});

test('every ServerFrame body round-trips', () => {
  const message = {
    room: 'r', seq: 5, tsUs: 1800000000000001, sender: 'u', role: 'customer', kind: 'text',
    body: new Uint8Array([104, 105]), meta: [{ key: 'lang', value: 'fr' }], clientMsgId: 'm1',
  };
  const member = { user: 'bob', role: 'agent', online: true, readSeq: 4, joined: true };
  const stats = {
    createdUs: 1, firstCustomerMsgUs: 2, firstAgentJoinUs: 3, firstAgentMsgUs: 4, waitUs: 5,
    firstResponseUs: 6, turnResponseUs: [7, 8], turns: 2, customerMsgs: 3, agentMsgs: 2, botMsgs: 1,
    closedUs: 9, handleUs: 10, pendingCustomerUs: 0,
  };
  const bodies = {
    welcome: {
      session: 's', serverTimeUs: 1800000000000000, tenant: 'acme', user: 'ann', role: 'customer',
      limits: {
        frameBytesMax: 65536, bodyBytesMax: 16384, publishPerSec: 20, subscriptionsMax: 64, idleMs: 60000,
        historyLimitMax: 500, clientMsgIdBytesMax: 64, idempotencyKeyBytesMax: 128, metaEntriesMax: 16,
        metaBytesMax: 256, reasonBytesMax: 256, reportDaysMax: 366, sendQueueBytesMax: 1048576,
        inflightMax: 1024, tokenBytesMax: 1024, publishBurst: 40,
      },
      tokenExpS: 1800000600,
    },
    refreshed: { tokenExpS: 1800000900 },
    roomCreated: { room: 'r', existed: true },
    report: {
      days: [{
        tenant: 'acme', day: 20779, date: '2026-11-22', roomsCreated: 3, roomsClosed: 2,
        messages: 40, waitUsSum: 9000000, waitN: 2, firstResponseUsSum: 4000000,
        firstResponseN: 2, handleUsSum: 600000000, handleN: 2,
      }],
    },
    ack: { room: 'r', seq: 2n ** 60n, tsUs: 1, duplicate: true },
    ok: {},
    subscribed: { room: 'r', lastSeq: 4 },
    history: { room: 'r', messages: [message, { ...message, seq: 6 }], more: true },
    presence: { room: 'r', members: [member, { ...member, user: 'ann', role: 'customer', online: false }] },
    pong: { tsUs: 1, serverTimeUs: 2 },
    roomInfo: {
      room: 'r', tenant: 'acme', closed: true, lastSeq: 6, members: [member], stats,
      meta: [{ key: 'topic', value: 'billing' }], closeReason: 'done',
    },
    roomList: { rooms: ['a', 'b'], more: false },
    status: {
      node: 'gw', connections: 3, subscriptions: 2, uptimeUs: 99,
      groups: [{
        group: 1, address: 'tcp://x', reachable: true, rooms: 5, lastIndex: 9, mapUsedBytes: 10,
        mapSizeBytes: 2n ** 60n, durability: 'sync', role: 'leader',
        nodeId: 2, term: 7, commit: 9, applied: 9, leaderId: 2, lag: 0, voters: 3,
        repairing: false, confVoters: [1, 2, 3], confLearners: [4],
      }],
    },
    event: { room: 'r', ev: 'message', message },
    error: { code: 'unavailable', message: 'retry', leaderHint: 'tcp://y', notApplied: true, retryAfterMs: 0 },
    goodbye: { code: 'overloaded', reason: 'slow consumer' },
  };
  assert.deepEqual(Object.keys(bodies).sort(), [...SERVER_BODIES].sort());
  for (const [name, body] of Object.entries(bodies)) {
    const d = decodeServerFrame(encodeServerFrame({ id: 3, [name]: body }));
    assert.equal(d.body, name);
    assert.deepEqual(d[name], body, name);
  }
  const events = {
    message,
    typing: { user: 'u', role: 'agent', active: true },
    read: { user: 'u', seq: 9 },
    presence: { user: 'u', role: 'bot', online: true, joined: true, left: false },
    closed: { reason: 'bye', tsUs: 5 },
  };
  for (const [name, value] of Object.entries(events)) {
    const d = decodeServerFrame(encodeServerFrame({ event: { room: 'r', [name]: value } }));
    assert.deepEqual(d.event, { room: 'r', ev: name, [name]: value }, name);
  }
});

test('defaults are filled and the last oneof member wins', () => {
  assert.deepEqual(decode('Member', new Uint8Array(0)), { user: '', role: 'none', online: false, readSeq: 0, joined: false });
  assert.deepEqual(decode('RoomInfo', new Uint8Array(0)).stats, null);
  const two = new Uint8Array([...encodeServerFrame({ id: 1, ok: {} }), ...encodeServerFrame({ pong: { tsUs: 2 } })]);
  const d = decodeServerFrame(two);
  assert.equal(d.body, 'pong');
  assert.equal(d.ok, undefined);
  assert.equal(d.id, 1);
});

test('schema field numbers match proto/parley.proto', async () => {
  // Parses the .proto when the repo is present and compares numbers/names.
  const { readFile } = await import('node:fs/promises');
  const url = new URL('../../../proto/parley.proto', import.meta.url);
  let text;
  try {
    text = await readFile(url, 'utf8');
  } catch {
    return; // the SDK may be used outside the repo
  }
  const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
  const re = /message\s+(\w+)\s*\{(\}|[\s\S]*?\n\})/g;
  let m;
  let checked = 0;
  while ((m = re.exec(text))) {
    const [, name, bodyText] = m;
    const protoFields = [...bodyText.matchAll(/^\s*(?:repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;/gm)]
      .map(([, , fname, num]) => [Number(num), camel(fname)]);
    if (!SCHEMA[name]) continue;
    const ours = SCHEMA[name].map(([num, fname]) => [num, fname]);
    assert.deepEqual(ours, protoFields, name);
    checked++;
  }
  assert.ok(checked >= 40, `checked ${checked} messages`);
});
