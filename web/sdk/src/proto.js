// Minimal proto3 wire-format codec for the Parley client protocol
// (proto/parley.proto): ClientFrame (client -> gateway) and ServerFrame
// (gateway -> client) with every nested message they carry.
//
// Conventions
// - Field names are the proto names in lowerCamelCase (ts_us -> tsUs).
// - Decoded messages always carry every field (proto3 defaults fill the
//   absent ones): '' for strings, false, 0, an empty Uint8Array, [] for
//   repeated fields. Sub-messages that are absent are null.
// - 64-bit integers (uint64, int64) decode to a Number when the value is a
//   safe integer (|v| <= 2^53 - 1) and to a BigInt otherwise. Encoders accept
//   Number or BigInt (or a decimal string). Seqs and microsecond timestamps
//   (~1.8e15) are Numbers in practice; `toBigInt` normalizes either form.
// - Enums decode to lower-case names ('agent', 'text', 'room_closed'); the
//   zero value of Role and ErrorCode is 'none'. Encoders accept the name or
//   the number. Unknown enum numbers decode to the number.
// - A oneof is a property naming the case plus the member itself:
//   { id: 1, body: 'ping', ping: { tsUs: 5 } }. When encoding, `body` may be
//   omitted: the first member present is used.
// - Unknown fields of every wire type (varint, 64-bit, length-delimited,
//   groups, 32-bit) are skipped. A known field with the wrong wire type, a
//   truncated field or a varint longer than 10 bytes throws a ProtoError.

export class ProtoError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtoError';
  }
}

// ---- enums ----

export const Role = Object.freeze(['none', 'customer', 'agent', 'bot', 'observer', 'service']);
export const Kind = Object.freeze(['text', 'event', 'system']);
export const ErrorCode = Object.freeze([
  'none', 'bad_request', 'unauthorized', 'forbidden', 'not_found', 'room_closed',
  'too_large', 'rate_limited', 'overloaded', 'unavailable', 'internal',
]);

const ENUMS = { Role, Kind, ErrorCode };

function enumToNumber(names, v, what) {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number') return v | 0;
  if (typeof v === 'string') {
    const i = names.indexOf(v.toLowerCase());
    if (i >= 0) return i;
    // Accept the proto spellings too: ROLE_NONE, E_NONE.
    if (/^(role_none|e_none)$/i.test(v)) return 0;
  }
  throw new ProtoError(`unknown enum value ${String(v)}`);
}

function enumToName(names, n) {
  return n >= 0 && n < names.length ? names[n] : n;
}

// ---- schema ----
// Each message: list of [fieldNumber, name, type, options].
// type: 'string' | 'bytes' | 'bool' | 'uint32' | 'uint64' | 'int64' |
//       'enum:<Name>' | '<MessageName>'
// options: { repeated: true } | { oneof: '<name>' }

const R = { repeated: true };

export const SCHEMA = {
  MetaEntry: [[1, 'key', 'string'], [2, 'value', 'string']],
  Message: [
    [1, 'room', 'string'], [2, 'seq', 'uint64'], [3, 'tsUs', 'int64'],
    [4, 'sender', 'string'], [5, 'role', 'enum:Role'], [6, 'kind', 'enum:Kind'],
    [7, 'body', 'bytes'], [8, 'meta', 'MetaEntry', R], [9, 'clientMsgId', 'string'],
  ],
  Limits: [
    [1, 'frameBytesMax', 'uint32'], [2, 'bodyBytesMax', 'uint32'],
    [3, 'publishPerSec', 'uint32'], [4, 'subscriptionsMax', 'uint32'],
    [5, 'idleMs', 'uint32'], [6, 'historyLimitMax', 'uint32'],
    [7, 'clientMsgIdBytesMax', 'uint32'], [8, 'idempotencyKeyBytesMax', 'uint32'],
    [9, 'metaEntriesMax', 'uint32'], [10, 'metaBytesMax', 'uint32'],
    [11, 'reasonBytesMax', 'uint32'], [12, 'reportDaysMax', 'uint32'],
    [13, 'sendQueueBytesMax', 'uint32'], [14, 'inflightMax', 'uint32'],
    [15, 'tokenBytesMax', 'uint32'], [16, 'publishBurst', 'uint32'],
  ],
  // requests
  Hello: [[1, 'token', 'string'], [2, 'client', 'string']],
  CreateRoom: [[1, 'idempotencyKey', 'string'], [2, 'meta', 'MetaEntry', R]],
  Join: [[1, 'room', 'string']],
  Leave: [[1, 'room', 'string']],
  Publish: [
    [1, 'room', 'string'], [2, 'clientMsgId', 'string'], [3, 'kind', 'enum:Kind'],
    [4, 'body', 'bytes'], [5, 'meta', 'MetaEntry', R],
  ],
  Subscribe: [[1, 'room', 'string'], [2, 'sinceSeq', 'uint64']],
  Unsubscribe: [[1, 'room', 'string']],
  History: [
    [1, 'room', 'string'], [2, 'beforeSeq', 'uint64'], [3, 'afterSeq', 'uint64'],
    [4, 'limit', 'uint32'], [5, 'oldestFirst', 'bool'], [6, 'maxBytes', 'uint32'],
  ],
  Typing: [[1, 'room', 'string'], [2, 'active', 'bool']],
  Read: [[1, 'room', 'string'], [2, 'seq', 'uint64']],
  Presence: [[1, 'room', 'string']],
  CloseRoom: [[1, 'room', 'string'], [2, 'reason', 'string']],
  Ping: [[1, 'tsUs', 'int64']],
  RoomInfoRequest: [[1, 'room', 'string']],
  ListRooms: [[1, 'limit', 'uint32'], [2, 'after', 'string']],
  StatusRequest: [],
  ReportRequest: [[1, 'days', 'uint32']],
  Refresh: [[1, 'token', 'string']],
  ClientFrame: [
    [1, 'id', 'uint64'],
    [2, 'hello', 'Hello', { oneof: 'body' }],
    [3, 'createRoom', 'CreateRoom', { oneof: 'body' }],
    [4, 'join', 'Join', { oneof: 'body' }],
    [5, 'leave', 'Leave', { oneof: 'body' }],
    [6, 'publish', 'Publish', { oneof: 'body' }],
    [7, 'subscribe', 'Subscribe', { oneof: 'body' }],
    [8, 'unsubscribe', 'Unsubscribe', { oneof: 'body' }],
    [9, 'history', 'History', { oneof: 'body' }],
    [10, 'typing', 'Typing', { oneof: 'body' }],
    [11, 'read', 'Read', { oneof: 'body' }],
    [12, 'presence', 'Presence', { oneof: 'body' }],
    [13, 'closeRoom', 'CloseRoom', { oneof: 'body' }],
    [14, 'ping', 'Ping', { oneof: 'body' }],
    [15, 'roomInfo', 'RoomInfoRequest', { oneof: 'body' }],
    [16, 'listRooms', 'ListRooms', { oneof: 'body' }],
    [17, 'status', 'StatusRequest', { oneof: 'body' }],
    [18, 'report', 'ReportRequest', { oneof: 'body' }],
    [19, 'refresh', 'Refresh', { oneof: 'body' }],
  ],
  // replies and events
  Welcome: [
    [1, 'session', 'string'], [2, 'serverTimeUs', 'int64'], [3, 'limits', 'Limits'],
    [4, 'tenant', 'string'], [5, 'user', 'string'], [6, 'role', 'enum:Role'],
    [7, 'tokenExpS', 'int64'],
  ],
  Refreshed: [[1, 'tokenExpS', 'int64']],
  RoomCreated: [[1, 'room', 'string'], [2, 'existed', 'bool']],
  Ack: [[1, 'room', 'string'], [2, 'seq', 'uint64'], [3, 'tsUs', 'int64'], [4, 'duplicate', 'bool']],
  Ok: [],
  Subscribed: [[1, 'room', 'string'], [2, 'lastSeq', 'uint64']],
  HistoryPage: [[1, 'room', 'string'], [2, 'messages', 'Message', R], [3, 'more', 'bool']],
  Member: [
    [1, 'user', 'string'], [2, 'role', 'enum:Role'], [3, 'online', 'bool'],
    [4, 'readSeq', 'uint64'], [5, 'joined', 'bool'],
  ],
  PresenceList: [[1, 'room', 'string'], [2, 'members', 'Member', R]],
  Pong: [[1, 'tsUs', 'int64'], [2, 'serverTimeUs', 'int64']],
  RoomStats: [
    [1, 'createdUs', 'int64'], [2, 'firstCustomerMsgUs', 'int64'],
    [3, 'firstAgentJoinUs', 'int64'], [4, 'firstAgentMsgUs', 'int64'],
    [5, 'waitUs', 'int64'], [6, 'firstResponseUs', 'int64'],
    [7, 'turnResponseUs', 'int64', R], [8, 'turns', 'uint32'],
    [9, 'customerMsgs', 'uint64'], [10, 'agentMsgs', 'uint64'], [11, 'botMsgs', 'uint64'],
    [12, 'closedUs', 'int64'], [13, 'handleUs', 'int64'], [14, 'pendingCustomerUs', 'int64'],
  ],
  RoomInfo: [
    [1, 'room', 'string'], [2, 'tenant', 'string'], [3, 'closed', 'bool'],
    [4, 'lastSeq', 'uint64'], [5, 'members', 'Member', R], [6, 'stats', 'RoomStats'],
    [7, 'meta', 'MetaEntry', R], [8, 'closeReason', 'string'],
  ],
  RoomList: [[1, 'rooms', 'string', R], [2, 'more', 'bool']],
  GroupStatus: [
    [1, 'group', 'uint32'], [2, 'address', 'string'], [3, 'reachable', 'bool'],
    [4, 'rooms', 'uint64'], [5, 'lastIndex', 'uint64'], [6, 'mapUsedBytes', 'uint64'],
    [7, 'mapSizeBytes', 'uint64'], [8, 'durability', 'string'], [9, 'role', 'string'],
    [10, 'nodeId', 'uint64'], [11, 'term', 'uint64'], [12, 'commit', 'uint64'],
    [13, 'applied', 'uint64'], [14, 'leaderId', 'uint64'], [15, 'lag', 'uint64'],
    [16, 'voters', 'uint32'], [17, 'repairing', 'bool'],
    [18, 'confVoters', 'uint64', R], [19, 'confLearners', 'uint64', R],
  ],
  StatusReply: [
    [1, 'node', 'string'], [2, 'connections', 'uint32'], [3, 'subscriptions', 'uint32'],
    [4, 'groups', 'GroupStatus', R], [5, 'uptimeUs', 'int64'],
  ],
  TenantDay: [
    [1, 'tenant', 'string'], [2, 'day', 'uint32'], [3, 'date', 'string'],
    [4, 'roomsCreated', 'uint64'], [5, 'roomsClosed', 'uint64'], [6, 'messages', 'uint64'],
    [7, 'waitUsSum', 'int64'], [8, 'waitN', 'uint64'],
    [9, 'firstResponseUsSum', 'int64'], [10, 'firstResponseN', 'uint64'],
    [11, 'handleUsSum', 'int64'], [12, 'handleN', 'uint64'],
  ],
  Report: [[1, 'days', 'TenantDay', R]],
  TypingEvent: [[1, 'user', 'string'], [2, 'role', 'enum:Role'], [3, 'active', 'bool']],
  ReadEvent: [[1, 'user', 'string'], [2, 'seq', 'uint64']],
  PresenceEvent: [
    [1, 'user', 'string'], [2, 'role', 'enum:Role'], [3, 'online', 'bool'],
    [4, 'joined', 'bool'], [5, 'left', 'bool'],
  ],
  ClosedEvent: [[1, 'reason', 'string'], [2, 'tsUs', 'int64']],
  Event: [
    [1, 'room', 'string'],
    [2, 'message', 'Message', { oneof: 'ev' }],
    [3, 'typing', 'TypingEvent', { oneof: 'ev' }],
    [4, 'read', 'ReadEvent', { oneof: 'ev' }],
    [5, 'presence', 'PresenceEvent', { oneof: 'ev' }],
    [6, 'closed', 'ClosedEvent', { oneof: 'ev' }],
  ],
  Error: [
    [1, 'code', 'enum:ErrorCode'], [2, 'message', 'string'], [3, 'leaderHint', 'string'],
    [4, 'notApplied', 'bool'], [5, 'retryAfterMs', 'uint32'],
  ],
  Goodbye: [[1, 'code', 'enum:ErrorCode'], [2, 'reason', 'string']],
  ServerFrame: [
    [1, 'id', 'uint64'],
    [2, 'welcome', 'Welcome', { oneof: 'body' }],
    [3, 'roomCreated', 'RoomCreated', { oneof: 'body' }],
    [4, 'ack', 'Ack', { oneof: 'body' }],
    [5, 'ok', 'Ok', { oneof: 'body' }],
    [6, 'subscribed', 'Subscribed', { oneof: 'body' }],
    [7, 'history', 'HistoryPage', { oneof: 'body' }],
    [8, 'presence', 'PresenceList', { oneof: 'body' }],
    [9, 'pong', 'Pong', { oneof: 'body' }],
    [10, 'roomInfo', 'RoomInfo', { oneof: 'body' }],
    [11, 'roomList', 'RoomList', { oneof: 'body' }],
    [12, 'status', 'StatusReply', { oneof: 'body' }],
    [13, 'event', 'Event', { oneof: 'body' }],
    [14, 'error', 'Error', { oneof: 'body' }],
    [15, 'goodbye', 'Goodbye', { oneof: 'body' }],
    [16, 'report', 'Report', { oneof: 'body' }],
    [17, 'refreshed', 'Refreshed', { oneof: 'body' }],
  ],
};

const SCALAR_TYPES = new Set(['string', 'bytes', 'bool', 'uint32', 'uint64', 'int64']);

// Compiled form: per message, fields by number and by name, oneof groups.
const COMPILED = {};
for (const [msgName, fields] of Object.entries(SCHEMA)) {
  const byNum = new Map();
  const oneofs = {};
  const list = fields.map(([num, name, type, opts = {}]) => {
    let kind = type;
    let enumNames = null;
    if (type.startsWith('enum:')) {
      kind = 'enum';
      enumNames = ENUMS[type.slice(5)];
    } else if (!SCALAR_TYPES.has(type)) {
      kind = 'message';
    }
    const f = {
      num, name, type, kind, enumNames,
      repeated: !!opts.repeated, oneof: opts.oneof || null,
      msg: kind === 'message' ? type : null,
      wire: wireTypeOf(kind),
    };
    byNum.set(num, f);
    if (f.oneof) (oneofs[f.oneof] ||= []).push(f);
    return f;
  });
  COMPILED[msgName] = { name: msgName, fields: list, byNum, oneofs };
}
for (const m of Object.values(COMPILED)) {
  for (const f of m.fields) {
    if (f.kind === 'message' && !COMPILED[f.msg]) throw new Error(`schema: unknown type ${f.msg}`);
  }
}

function wireTypeOf(kind) {
  switch (kind) {
    case 'string': case 'bytes': case 'message': return 2;
    default: return 0; // bool, uint32, uint64, int64, enum
  }
}

// ---- 64-bit helpers ----

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = -MAX_SAFE;

/** Converts a Number, BigInt or decimal string to a BigInt (0n for null/undefined). */
export function toBigInt(v) {
  if (v === undefined || v === null || v === '') return 0n;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new ProtoError(`not an integer: ${v}`);
    return BigInt(v);
  }
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  throw new ProtoError(`not an integer: ${String(v)}`);
}

/** A BigInt as a Number when it is a safe integer, else the BigInt itself. */
export function fromBigInt(b) {
  return b <= MAX_SAFE && b >= MIN_SAFE ? Number(b) : b;
}

// ---- writer ----

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: false });

class Writer {
  constructor() {
    this.buf = new Uint8Array(64);
    this.len = 0;
  }
  ensure(n) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
  }
  byte(b) {
    this.ensure(1);
    this.buf[this.len++] = b;
  }
  // Unsigned varint of a non-negative Number below 2^32 (fast path).
  varint32(n) {
    this.ensure(5);
    n >>>= 0;
    while (n > 0x7f) {
      this.buf[this.len++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.len++] = n;
  }
  // Varint of a 64-bit value given as BigInt (negative = two's complement).
  varint64(b) {
    let v = BigInt.asUintN(64, b);
    this.ensure(10);
    while (v > 0x7fn) {
      this.buf[this.len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.len++] = Number(v);
  }
  tag(num, wire) {
    this.varint32(((num << 3) | wire) >>> 0);
  }
  bytes(u8) {
    this.varint32(u8.length);
    this.ensure(u8.length);
    this.buf.set(u8, this.len);
    this.len += u8.length;
  }
  finish() {
    return this.buf.slice(0, this.len);
  }
}

function toBytes(v) {
  if (v === undefined || v === null) return new Uint8Array(0);
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return textEncoder.encode(v);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  throw new ProtoError('bytes field needs a Uint8Array, ArrayBuffer or string');
}

function isDefault(f, v) {
  if (v === undefined || v === null) return true;
  switch (f.kind) {
    case 'string': return v === '';
    case 'bytes': return toBytes(v).length === 0;
    case 'bool': return !v;
    case 'enum': return enumToNumber(f.enumNames, v) === 0;
    case 'uint32': return Number(v) === 0;
    case 'uint64': case 'int64': return toBigInt(v) === 0n;
    default: return false;
  }
}

function writeScalarValue(w, f, v) {
  switch (f.kind) {
    case 'string': w.bytes(textEncoder.encode(String(v))); break;
    case 'bytes': w.bytes(toBytes(v)); break;
    case 'bool': w.byte(v ? 1 : 0); break;
    case 'uint32': {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new ProtoError(`${f.name}: not a uint32: ${v}`);
      w.varint32(n);
      break;
    }
    case 'enum': {
      const n = enumToNumber(f.enumNames, v);
      if (n < 0) w.varint64(BigInt(n)); else w.varint32(n);
      break;
    }
    case 'uint64': {
      const b = toBigInt(v);
      if (b < 0n || b > 0xffffffffffffffffn) throw new ProtoError(`${f.name}: not a uint64: ${v}`);
      w.varint64(b);
      break;
    }
    case 'int64': {
      const b = toBigInt(v);
      if (b < -(1n << 63n) || b >= (1n << 63n)) throw new ProtoError(`${f.name}: not an int64: ${v}`);
      w.varint64(b);
      break;
    }
    default: throw new ProtoError(`bad scalar kind ${f.kind}`);
  }
}

function writeMessage(w, msgName, obj) {
  const m = COMPILED[msgName];
  obj = obj || {};
  // Which oneof members to encode: the named case, else the first present.
  const oneofChoice = {};
  for (const [group, members] of Object.entries(m.oneofs)) {
    const named = obj[group];
    let chosen = null;
    if (typeof named === 'string') {
      chosen = members.find((f) => f.name === named);
      if (!chosen) throw new ProtoError(`${msgName}.${group}: unknown case ${named}`);
    } else {
      chosen = members.find((f) => obj[f.name] !== undefined && obj[f.name] !== null) || null;
    }
    oneofChoice[group] = chosen;
  }
  for (const f of m.fields) {
    const v = obj[f.name];
    if (f.oneof) {
      if (oneofChoice[f.oneof] !== f) continue;
      // A oneof member is always written, even when empty.
      w.tag(f.num, 2);
      const sub = new Writer();
      writeMessage(sub, f.msg, v || {});
      w.bytes(sub.finish());
      continue;
    }
    if (f.repeated) {
      if (v === undefined || v === null) continue;
      const arr = Array.isArray(v) ? v : (f.msg === 'MetaEntry' ? metaToArray(v) : [v]);
      if (arr.length === 0) continue;
      if (f.kind === 'message') {
        for (const item of arr) {
          w.tag(f.num, 2);
          const sub = new Writer();
          writeMessage(sub, f.msg, item);
          w.bytes(sub.finish());
        }
      } else if (f.wire === 0) {
        // packed (proto3 default for repeated scalar numerics)
        const sub = new Writer();
        for (const item of arr) writeScalarValue(sub, f, item);
        w.tag(f.num, 2);
        w.bytes(sub.finish());
      } else {
        for (const item of arr) {
          w.tag(f.num, f.wire);
          writeScalarValue(w, f, item);
        }
      }
      continue;
    }
    if (f.kind === 'message') {
      if (v === undefined || v === null) continue;
      w.tag(f.num, 2);
      const sub = new Writer();
      writeMessage(sub, f.msg, v);
      w.bytes(sub.finish());
      continue;
    }
    if (isDefault(f, v)) continue;
    w.tag(f.num, f.wire);
    writeScalarValue(w, f, v);
  }
}

/** Plain object {k: v} (or Map) -> [{key, value}]. Arrays pass through. */
export function metaToArray(meta) {
  if (!meta) return [];
  if (Array.isArray(meta)) return meta;
  const entries = meta instanceof Map ? [...meta.entries()] : Object.entries(meta);
  return entries.map(([key, value]) => ({ key: String(key), value: String(value) }));
}

/** [{key, value}] -> plain object (later keys win). */
export function metaToObject(arr) {
  const o = {};
  for (const e of arr || []) o[e.key] = e.value;
  return o;
}

// ---- reader ----

class Reader {
  constructor(u8, pos = 0, end = u8.length) {
    this.buf = u8;
    this.pos = pos;
    this.end = end;
  }
  eof() {
    return this.pos >= this.end;
  }
  need(n) {
    if (this.pos + n > this.end) throw new ProtoError('truncated message');
  }
  // Varint as BigInt (full 64 bits).
  varint64() {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      this.need(1);
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    throw new ProtoError('varint longer than 10 bytes');
  }
  // Varint truncated to its low 32 bits, as an unsigned Number.
  varint32() {
    let result = 0;
    let i = 0;
    for (; i < 5; i++) {
      this.need(1);
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * 2 ** (7 * i);
      if (b < 0x80) return result >>> 0 === result ? result : result % 2 ** 32;
    }
    // Longer varints (e.g. negative int32): keep the low 32 bits, consume the rest.
    for (; i < 10; i++) {
      this.need(1);
      if (this.buf[this.pos++] < 0x80) return result % 2 ** 32;
    }
    throw new ProtoError('varint longer than 10 bytes');
  }
  lengthDelimited() {
    const n = this.varint32();
    this.need(n);
    const start = this.pos;
    this.pos += n;
    return [start, this.pos];
  }
  skip(wire, fieldNum, depth = 0) {
    switch (wire) {
      case 0: this.varint64(); return;
      case 1: this.need(8); this.pos += 8; return;
      case 2: this.lengthDelimited(); return;
      case 5: this.need(4); this.pos += 4; return;
      case 3: {
        if (depth > 64) throw new ProtoError('groups nested too deeply');
        for (;;) {
          if (this.eof()) throw new ProtoError('unterminated group');
          const tag = this.varint32();
          const w = tag & 7;
          const num = tag >>> 3;
          if (w === 4) {
            if (num !== fieldNum) throw new ProtoError('mismatched end group');
            return;
          }
          this.skip(w, num, depth + 1);
        }
      }
      case 4: throw new ProtoError('unexpected end group');
      default: throw new ProtoError(`invalid wire type ${wire}`);
    }
  }
}

function defaultValue(f) {
  if (f.repeated) return [];
  switch (f.kind) {
    case 'string': return '';
    case 'bytes': return new Uint8Array(0);
    case 'bool': return false;
    case 'uint32': case 'uint64': case 'int64': return 0;
    case 'enum': return enumToName(f.enumNames, 0);
    default: return null;
  }
}

function newMessage(msgName) {
  const m = COMPILED[msgName];
  const o = {};
  for (const group of Object.keys(m.oneofs)) o[group] = null;
  for (const f of m.fields) {
    if (f.oneof) continue;
    o[f.name] = defaultValue(f);
  }
  return o;
}

function readScalarValue(r, f) {
  switch (f.kind) {
    case 'string': {
      const [s, e] = r.lengthDelimited();
      return textDecoder.decode(r.buf.subarray(s, e));
    }
    case 'bytes': {
      const [s, e] = r.lengthDelimited();
      return r.buf.slice(s, e);
    }
    case 'bool': return r.varint64() !== 0n;
    case 'uint32': return r.varint32();
    case 'enum': return enumToName(f.enumNames, r.varint32() | 0);
    case 'uint64': return fromBigInt(r.varint64());
    case 'int64': return fromBigInt(BigInt.asIntN(64, r.varint64()));
    default: throw new ProtoError(`bad scalar kind ${f.kind}`);
  }
}

function readMessage(r, msgName, target, depth) {
  if (depth > 32) throw new ProtoError('messages nested too deeply');
  const m = COMPILED[msgName];
  const o = target || newMessage(msgName);
  while (!r.eof()) {
    const tag = r.varint32();
    const wire = tag & 7;
    const num = tag >>> 3;
    if (num === 0) throw new ProtoError('field number 0');
    const f = m.byNum.get(num);
    if (!f) {
      r.skip(wire, num);
      continue;
    }
    if (f.kind === 'message') {
      if (wire !== 2) throw new ProtoError(`${msgName}.${f.name}: wire type ${wire}, want 2`);
      const [s, e] = r.lengthDelimited();
      const sub = new Reader(r.buf, s, e);
      if (f.repeated) {
        o[f.name].push(readMessage(sub, f.msg, null, depth + 1));
      } else if (f.oneof) {
        const prev = o[f.oneof] === f.name ? o[f.name] : null;
        for (const other of m.oneofs[f.oneof]) if (other !== f) delete o[other.name];
        o[f.oneof] = f.name;
        o[f.name] = readMessage(sub, f.msg, prev, depth + 1);
      } else {
        // Repeated occurrences of a singular message field merge.
        o[f.name] = readMessage(sub, f.msg, o[f.name], depth + 1);
      }
      continue;
    }
    if (f.repeated && f.wire === 0 && wire === 2) {
      // packed
      const [s, e] = r.lengthDelimited();
      const sub = new Reader(r.buf, s, e);
      while (!sub.eof()) o[f.name].push(readScalarValue(sub, f));
      continue;
    }
    if (wire !== f.wire) throw new ProtoError(`${msgName}.${f.name}: wire type ${wire}, want ${f.wire}`);
    const v = readScalarValue(r, f);
    if (f.repeated) o[f.name].push(v);
    else o[f.name] = v;
  }
  return o;
}

// ---- public API ----

/** Encodes `obj` as the message type `msgName` (a key of SCHEMA). */
export function encode(msgName, obj) {
  if (!COMPILED[msgName]) throw new ProtoError(`unknown message type ${msgName}`);
  const w = new Writer();
  writeMessage(w, msgName, obj);
  return w.finish();
}

/** Decodes `bytes` (Uint8Array or ArrayBuffer) as the message type `msgName`. */
export function decode(msgName, bytes) {
  if (!COMPILED[msgName]) throw new ProtoError(`unknown message type ${msgName}`);
  const u8 = toBytes(bytes);
  return readMessage(new Reader(u8), msgName, null, 0);
}

export const encodeClientFrame = (f) => encode('ClientFrame', f);
export const decodeClientFrame = (b) => decode('ClientFrame', b);
export const encodeServerFrame = (f) => encode('ServerFrame', f);
export const decodeServerFrame = (b) => decode('ServerFrame', b);

/** Names of the oneof cases of ClientFrame.body and ServerFrame.body. */
export const CLIENT_BODIES = Object.freeze(COMPILED.ClientFrame.oneofs.body.map((f) => f.name));
export const SERVER_BODIES = Object.freeze(COMPILED.ServerFrame.oneofs.body.map((f) => f.name));
