// ParleyClient: a WebSocket client for the Parley gateway.
//
// One socket, request ids, one promise per request (requests may be
// pipelined), events for live traffic, automatic reconnect with backoff,
// and client-side resume of subscriptions without duplicates.

import { encodeClientMessage, FrameSplitter, FrameError, DEFAULT_FRAME_BYTES_MAX } from './frame.js';
import { decodeServerFrame, metaToArray, metaToObject, toBigInt, fromBigInt, ProtoError } from './proto.js';

export const VERSION = '0.1.0';

/** Wire error codes (proto ErrorCode) plus the client-side ones. */
export const ERROR_CODES = Object.freeze([
  'bad_request', 'unauthorized', 'forbidden', 'not_found', 'room_closed',
  'too_large', 'rate_limited', 'overloaded', 'unavailable', 'internal',
  // client side:
  'timeout', // no reply within requestTimeoutMs (retryable)
  'closed', // the client was closed with close()
  'protocol', // the gateway sent bytes that do not decode
]);

const RETRYABLE = new Set(['unavailable', 'timeout']);

export class ParleyError extends Error {
  constructor(code, message, { requestId = 0, leaderHint = '', room, notApplied = false, retryAfterMs = 0 } = {}) {
    super(message || code);
    this.name = 'ParleyError';
    this.code = code;
    this.requestId = requestId;
    this.retryable = RETRYABLE.has(code);
    // The request was certainly not applied: sending it again is safe.
    this.notApplied = Boolean(notApplied);
    // rate_limited: when the gateway will accept it again.
    if (retryAfterMs > 0) this.retryAfterMs = retryAfterMs;
    if (leaderHint) this.leaderHint = leaderHint;
    if (room !== undefined) this.room = room;
  }
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** A random id usable as client_msg_id or idempotency key (32 hex digits). */
export function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID().replace(/-/g, '');
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function toClientMessage(m, room) {
  return {
    room: m.room || room,
    seq: m.seq,
    tsUs: m.tsUs,
    sender: m.sender,
    role: m.role,
    kind: m.kind,
    body: m.body,
    text: textDecoder.decode(m.body),
    meta: metaToObject(m.meta),
    clientMsgId: m.clientMsgId,
  };
}

function toBodyBytes(body) {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (typeof body === 'string') return textEncoder.encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError('body must be a string, Uint8Array or ArrayBuffer');
}

const WS_OPEN = 1;

/**
 * States: 'idle' (no socket), 'connecting', 'open' (socket open, no session
 * yet), 'ready' (hello accepted), 'reconnecting', 'closed' (close() called).
 */
export class ParleyClient {
  /**
   * @param {object} [opts]
   * @param {Function} [opts.WebSocket] WebSocket constructor (default: globalThis.WebSocket)
   * @param {string} [opts.url] default URL for connect()
   * @param {boolean} [opts.reconnect=true] reconnect and resume after a lost connection
   * @param {{initialMs?:number, maxMs?:number, factor?:number}} [opts.backoff]
   * @param {number} [opts.requestTimeoutMs=15000]
   * @param {number} [opts.publishRetries=8] retries of a publish failing with a retryable error
   * @param {number} [opts.pingIntervalMs] keepalive interval (default: a third of Welcome.limits.idle_ms)
   * @param {string} [opts.clientName] sent in Hello.client
   * @param {() => Promise<string>|string} [opts.tokenRefresh] supplies a new token (same tenant,
   *   user, role and room scope) before the current one expires; without it the gateway closes
   *   the connection with goodbye "token expired" at the token's expiry
   * @param {number} [opts.refreshAheadMs=30000] how long before the expiry tokenRefresh is called
   *   (at most half the token's remaining life)
   * @param {{setTimeout:Function, clearTimeout:Function}} [opts.timers]
   */
  constructor(opts = {}) {
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;
    this.url = opts.url || null;
    this.reconnect = opts.reconnect !== false;
    this.backoff = { initialMs: 250, maxMs: 10000, factor: 2, ...(opts.backoff || {}) };
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 15000;
    this.publishRetries = opts.publishRetries ?? 8;
    this.pingIntervalMs = opts.pingIntervalMs;
    this.tokenRefresh = opts.tokenRefresh || null;
    this.refreshAheadMs = opts.refreshAheadMs ?? 30000;
    this.clientName = opts.clientName || `@parley/client/${VERSION}`;
    const timers = opts.timers || globalThis;
    this._setTimeout = (fn, ms) => timers.setTimeout(fn, ms);
    this._clearTimeout = (t) => timers.clearTimeout(t);

    this.state = 'idle';
    this.welcome = null;
    this.token = null;
    this._ws = null;
    this._splitter = null;
    this._nextId = 0;
    this._pending = new Map(); // request id -> {resolve, reject, timer, expect}
    this._subs = new Map(); // room -> {room, lastSeq: BigInt, onMessage}
    this._listeners = new Map(); // type -> Set<fn>
    this._readyWaiters = new Set();
    this._pingTimer = null;
    this._refreshTimer = null;
    this._reconnectTimer = null;
    this._generation = 0; // bumps on every new socket
    this._goodbye = null;
    this._recvChain = Promise.resolve();
    this.stats = { duplicatesDropped: 0, reconnects: 0 };
  }

  // ---------------------------------------------------------------- events

  /** Adds a listener; returns a function that removes it. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  once(type, fn) {
    const off = this.on(type, (d) => {
      off();
      fn(d);
    });
    return off;
  }

  _emit(type, detail) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(detail);
      } catch (err) {
        // A failing listener must not break the connection.
        globalThis.console?.error?.('parley: listener for', type, 'threw', err);
      }
    }
  }

  // ------------------------------------------------------------ connection

  get ready() {
    return this.state === 'ready';
  }

  /** Opens the WebSocket. Resolves once it is open (state 'open'). */
  async connect(url = this.url) {
    if (!url) throw new ParleyError('bad_request', 'connect: no url');
    if (this.state !== 'idle' && this.state !== 'closed') {
      throw new ParleyError('bad_request', `connect: client is ${this.state}`);
    }
    this.url = url;
    this.state = 'connecting';
    try {
      await this._openSocket(url);
    } catch (err) {
      if (this.state === 'connecting') this.state = 'idle';
      throw err;
    }
    this.state = 'open';
  }

  /** Authenticates the connection; resolves with the Welcome. */
  async hello(token) {
    const welcome = await this._request('hello', { token, client: this.clientName }, {
      expect: 'welcome', beforeReady: true,
    });
    this.token = token;
    this._onWelcome(welcome);
    return welcome;
  }

  /** connect(url) then hello(token). */
  async open(url, token) {
    await this.connect(url);
    return this.hello(token);
  }

  /** Closes the connection for good: pending requests fail with code 'closed'. */
  close(reason = 'closed by client') {
    if (this.state === 'closed') return;
    const wasConnected = this._ws !== null;
    this.state = 'closed';
    this._generation++;
    this._stopPing();
    this._stopRefresh();
    if (this._reconnectTimer !== null) this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._failPending(new ParleyError('closed', reason));
    this._failReadyWaiters(new ParleyError('closed', reason));
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      try {
        ws.close(1000, reason.slice(0, 120));
      } catch {
        /* already closing */
      }
    }
    if (wasConnected) this._emit('disconnect', { code: 1000, reason, willReconnect: false });
  }

  _openSocket(url) {
    const WS = this.WebSocket;
    if (typeof WS !== 'function') {
      return Promise.reject(new ParleyError('unavailable',
        'no WebSocket implementation: pass one as the WebSocket option'));
    }
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WS(url);
      } catch (err) {
        reject(new ParleyError('unavailable', `cannot open ${url}: ${err.message}`));
        return;
      }
      ws.binaryType = 'arraybuffer';
      const gen = ++this._generation;
      let opened = false;
      let ended = false;
      this._ws = ws;
      this._splitter = new FrameSplitter({ maxFrameBytes: DEFAULT_FRAME_BYTES_MAX });
      this._goodbye = null;
      // Ends this socket once, whichever of error/close says so first.
      const end = (ev) => {
        if (ended || gen !== this._generation) return;
        ended = true;
        if (!opened) {
          this._ws = null;
          this._detach(ws);
          try { ws.close(); } catch { /* not open */ }
          reject(new ParleyError('unavailable', `cannot connect to ${url}` +
            (ev && ev.code ? ` (close code ${ev.code})` : '')));
          return;
        }
        this._onSocketLost(ws, ev || {});
      };
      ws.onopen = () => {
        if (gen !== this._generation) return;
        opened = true;
        resolve();
      };
      ws.onerror = () => {
        // Browsers follow an error with a close event; some WebSocket
        // implementations do not, so do not wait for it for long.
        if (!opened) {
          end({ code: 1006 });
          return;
        }
        this._setTimeout(() => end({ code: 1006, reason: 'socket error' }), 1000);
      };
      ws.onclose = (ev) => end(ev);
      ws.onmessage = (ev) => {
        if (gen !== this._generation) return;
        this._onData(ev.data, gen);
      };
    });
  }

  _detach(ws) {
    ws.onopen = ws.onclose = ws.onmessage = ws.onerror = null;
  }

  _onData(data, gen) {
    if (typeof data === 'string') {
      this._protocolError(new FrameError('text WebSocket message; binary frames expected'));
      return;
    }
    if (data && typeof data.arrayBuffer === 'function' && !(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) {
      // A Blob (binaryType not honoured): keep arrival order.
      this._recvChain = this._recvChain.then(() => data.arrayBuffer()).then((buf) => {
        if (gen === this._generation) this._onBytes(buf);
      });
      return;
    }
    this._onBytes(data);
  }

  _onBytes(buf) {
    let payloads;
    try {
      payloads = this._splitter.push(buf);
    } catch (err) {
      this._protocolError(err);
      return;
    }
    for (const p of payloads) {
      let f;
      try {
        f = decodeServerFrame(p);
      } catch (err) {
        this._protocolError(err);
        return;
      }
      this._onFrame(f);
    }
  }

  _protocolError(err) {
    const e = new ParleyError('protocol', `undecodable data from the gateway: ${err.message}`);
    this._emit('error', e);
    // Drop the connection; the reconnect logic takes over.
    try {
      this._ws?.close(4000, 'protocol error');
    } catch {
      /* ignore */
    }
  }

  _onWelcome(welcome) {
    this.welcome = welcome;
    this.state = 'ready';
    const lim = welcome.limits;
    if (lim && lim.frameBytesMax > 0 && this._splitter) {
      // Frames from the gateway obey the same bound plus headroom for events.
      this._splitter.maxFrameBytes = Math.max(DEFAULT_FRAME_BYTES_MAX, lim.frameBytesMax * 2);
    }
    this._startPing();
    this._scheduleRefresh(welcome.tokenExpS);
    for (const w of [...this._readyWaiters]) w.resolve();
    this._readyWaiters.clear();
  }

  _onSocketLost(ws, ev) {
    if (this._ws === ws) this._ws = null;
    this._detach(ws);
    this._stopPing();
    this._stopRefresh();
    if (this.state === 'reconnecting') {
      // Lost during a reconnect attempt: failing its hello makes the
      // attempt schedule the next one.
      this._failPending(new ParleyError('unavailable', 'connection lost'));
      return;
    }
    const wasReady = this.state === 'ready';
    const goodbye = this._goodbye;
    const reason = goodbye ? goodbye.reason : (ev.reason || 'connection lost');
    this._failPending(new ParleyError('unavailable', `connection lost: ${reason}`));
    const fatal = goodbye && goodbye.code === 'unauthorized';
    const willReconnect = this.reconnect && this.token !== null && !fatal && this.state !== 'closed';
    if (this.state !== 'closed') this.state = willReconnect ? 'reconnecting' : 'idle';
    if (!willReconnect) {
      this._failReadyWaiters(new ParleyError(fatal ? 'unauthorized' : 'unavailable', `connection lost: ${reason}`));
    }
    this._emit('disconnect', { code: ev.code || 0, reason, goodbye, wasReady, willReconnect });
    if (willReconnect) this._scheduleReconnect(0);
  }

  _backoffMs(attempt) {
    const { initialMs, maxMs, factor } = this.backoff;
    const base = Math.min(maxMs, initialMs * factor ** attempt);
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  _scheduleReconnect(attempt) {
    const delay = this._backoffMs(attempt);
    this._reconnectTimer = this._setTimeout(() => {
      this._reconnectTimer = null;
      this._reconnectOnce(attempt);
    }, delay);
  }

  async _reconnectOnce(attempt) {
    if (this.state !== 'reconnecting') return;
    try {
      await this._openSocket(this.url);
      if (this.state !== 'reconnecting') return;
      const welcome = await this._request('hello', { token: this.token, client: this.clientName }, {
        expect: 'welcome', beforeReady: true,
      });
      if (this.state !== 'reconnecting') return;
      this._onWelcome(welcome);
    } catch (err) {
      if (this.state !== 'reconnecting') return;
      if (err.code === 'unauthorized' || err.code === 'forbidden') {
        // The token no longer works: stop, tell the application.
        this.state = 'idle';
        const ws = this._ws;
        this._ws = null;
        if (ws) {
          this._detach(ws);
          try { ws.close(1000, 'unauthorized'); } catch { /* ignore */ }
        }
        this._failReadyWaiters(err);
        this._emit('error', err);
        this._emit('disconnect', { code: 0, reason: err.message, willReconnect: false });
        return;
      }
      // The socket may be open but hello failed: drop it quietly and retry.
      const ws = this._ws;
      if (ws) {
        this._ws = null;
        this._detach(ws);
        try { ws.close(1000, 'retry'); } catch { /* ignore */ }
      }
      this._scheduleReconnect(attempt + 1);
      return;
    }
    this.stats.reconnects++;
    this._emit('reconnect', { attempt: attempt + 1, welcome: this.welcome });
    this._resubscribeAll(this._generation);
  }

  _resubscribeAll(gen) {
    for (const sub of this._subs.values()) this._resubscribe(sub, gen, 0);
  }

  async _resubscribe(sub, gen, attempt) {
    if (gen !== this._generation || this._subs.get(sub.room) !== sub) return;
    try {
      await this._request('subscribe', { room: sub.room, sinceSeq: sub.lastSeq }, { expect: 'subscribed' });
    } catch (err) {
      if (gen !== this._generation || this._subs.get(sub.room) !== sub) return;
      if (err.retryable) {
        this._setTimeout(() => this._resubscribe(sub, gen, attempt + 1), this._backoffMs(attempt));
        return;
      }
      this._subs.delete(sub.room);
      err.room = sub.room;
      this._emit('error', err);
    }
  }

  _startPing() {
    this._stopPing();
    const idle = this.welcome?.limits?.idleMs || 0;
    const every = this.pingIntervalMs ?? (idle > 0 ? Math.max(1000, Math.floor(idle / 3)) : 25000);
    if (!(every > 0)) return;
    const tick = () => {
      this._pingTimer = this._setTimeout(tick, every);
      if (this.state === 'ready') this.ping().catch(() => {});
    };
    this._pingTimer = this._setTimeout(tick, every);
  }

  _stopPing() {
    if (this._pingTimer !== null) this._clearTimeout(this._pingTimer);
    this._pingTimer = null;
  }

  /**
   * Replaces the connection's token (same tenant, user, role and room scope) and moves its
   * expiry; resolves with the new expiry in Unix seconds. The new token is also the one a
   * reconnect says hello with.
   */
  async refresh(token) {
    const r = await this._request('refresh', { token }, { expect: 'refreshed' });
    this.token = token;
    if (this.welcome) this.welcome.tokenExpS = r.tokenExpS;
    this._scheduleRefresh(r.tokenExpS);
    return r.tokenExpS;
  }

  // Asks tokenRefresh refreshAheadMs before expS (at most half the time left); a failed
  // refresh is tried again a second later while the token lasts.
  _scheduleRefresh(expS, retry = false) {
    this._stopRefresh();
    const exp = Number(expS || 0) * 1000;
    if (!this.tokenRefresh || !(exp > 0)) return;
    const left = exp - Date.now();
    if (left <= 0) return;
    const delay = retry ? Math.min(1000, left / 2) : left - Math.min(this.refreshAheadMs, left / 2);
    const gen = this._generation;
    this._refreshTimer = this._setTimeout(async () => {
      this._refreshTimer = null;
      if (gen !== this._generation || this.state !== 'ready') return;
      try {
        await this.refresh(await this.tokenRefresh());
      } catch (err) {
        if (gen !== this._generation || this.state !== 'ready') return;
        this._emit('error', err);
        this._scheduleRefresh(expS, true);
      }
    }, Math.max(0, delay));
  }

  _stopRefresh() {
    if (this._refreshTimer !== null) this._clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  _failPending(err) {
    const pending = [...this._pending.entries()];
    this._pending.clear();
    for (const [id, p] of pending) {
      this._clearTimeout(p.timer);
      const e = new ParleyError(err.code, err.message, { requestId: id });
      p.reject(e);
    }
  }

  _failReadyWaiters(err) {
    for (const w of [...this._readyWaiters]) w.reject(err);
    this._readyWaiters.clear();
  }

  _whenReady(timeoutMs) {
    if (this.state === 'ready') return Promise.resolve();
    if (this.state === 'idle' || this.state === 'closed') {
      return Promise.reject(new ParleyError(this.state === 'closed' ? 'closed' : 'unavailable', 'not connected'));
    }
    return new Promise((resolve, reject) => {
      const w = {
        resolve: () => {
          this._clearTimeout(w.timer);
          resolve();
        },
        reject: (e) => {
          this._clearTimeout(w.timer);
          reject(e);
        },
        timer: null,
      };
      w.timer = this._setTimeout(() => {
        this._readyWaiters.delete(w);
        reject(new ParleyError('timeout', 'not connected in time'));
      }, timeoutMs);
      this._readyWaiters.add(w);
    });
  }

  // -------------------------------------------------------------- requests

  async _request(bodyName, body, { expect, beforeReady = false, timeoutMs = this.requestTimeoutMs } = {}) {
    if (this.state === 'closed') throw new ParleyError('closed', 'client closed');
    if (!beforeReady && this.state !== 'ready') await this._whenReady(timeoutMs);
    const ws = this._ws;
    if (!ws || (ws.readyState !== undefined && ws.readyState !== WS_OPEN)) {
      throw new ParleyError('unavailable', 'not connected');
    }
    const id = ++this._nextId;
    const bytes = encodeClientMessage({ id, body: bodyName, [bodyName]: body });
    return new Promise((resolve, reject) => {
      const timer = this._setTimeout(() => {
        if (this._pending.delete(id)) {
          reject(new ParleyError('timeout', `${bodyName}: no reply in ${timeoutMs} ms`, { requestId: id }));
        }
      }, timeoutMs);
      this._pending.set(id, { resolve, reject, timer, expect, bodyName });
      try {
        ws.send(bytes);
      } catch (err) {
        this._pending.delete(id);
        this._clearTimeout(timer);
        reject(new ParleyError('unavailable', `send failed: ${err.message}`, { requestId: id }));
      }
    });
  }

  _onFrame(f) {
    const id = typeof f.id === 'bigint' ? -1 : f.id;
    if (id !== 0) {
      const p = this._pending.get(id);
      if (!p) return; // a reply after its timeout
      this._pending.delete(id);
      this._clearTimeout(p.timer);
      if (f.body === 'error') {
        const e = f.error;
        p.reject(new ParleyError(e.code === 'none' ? 'internal' : String(e.code), e.message,
          { requestId: id, leaderHint: e.leaderHint, notApplied: e.notApplied, retryAfterMs: e.retryAfterMs }));
      } else if (p.expect && f.body !== p.expect) {
        p.reject(new ParleyError('internal', `${p.bodyName}: unexpected reply ${f.body}`, { requestId: id }));
      } else {
        p.resolve(f.body ? f[f.body] : {});
      }
      return;
    }
    switch (f.body) {
      case 'event':
        this._onEvent(f.event);
        break;
      case 'goodbye':
        this._goodbye = { code: f.goodbye.code, reason: f.goodbye.reason };
        this._emit('goodbye', this._goodbye);
        break;
      case 'error':
        this._emit('error', new ParleyError(String(f.error.code), f.error.message));
        break;
      default:
        break;
    }
  }

  _onEvent(ev) {
    const room = ev.room;
    switch (ev.ev) {
      case 'message': {
        const sub = this._subs.get(room);
        if (!sub) return; // a straggler after unsubscribe
        const seq = toBigInt(ev.message.seq);
        if (seq <= sub.lastSeq) {
          this.stats.duplicatesDropped++;
          return;
        }
        sub.lastSeq = seq;
        const msg = toClientMessage(ev.message, room);
        if (sub.onMessage) {
          try {
            sub.onMessage(msg);
          } catch (err) {
            globalThis.console?.error?.('parley: onMessage threw', err);
          }
        }
        this._emit('message', msg);
        break;
      }
      case 'typing':
        this._emit('typing', { room, user: ev.typing.user, role: ev.typing.role, active: ev.typing.active });
        break;
      case 'read':
        this._emit('read', { room, user: ev.read.user, seq: ev.read.seq });
        break;
      case 'presence': {
        const p = ev.presence;
        this._emit('presence', { room, user: p.user, role: p.role, online: p.online, joined: p.joined, left: p.left });
        break;
      }
      case 'closed':
        this._emit('closed', { room, reason: ev.closed.reason, tsUs: ev.closed.tsUs });
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------- API

  /** Creates a room; a retry with the same idempotencyKey returns the same room. */
  async createRoom({ idempotencyKey = randomId(), meta } = {}) {
    const r = await this._request('createRoom', { idempotencyKey, meta: metaToArray(meta) }, { expect: 'roomCreated' });
    return { room: r.room, existed: r.existed, idempotencyKey };
  }

  async join(room) {
    await this._request('join', { room }, { expect: 'ok' });
  }

  async leave(room) {
    await this._request('leave', { room }, { expect: 'ok' });
  }

  /**
   * Publishes a message. Resolves once the message is durable:
   * { room, seq, tsUs, duplicate, clientMsgId }. Retries retryable failures
   * (unavailable, timeout, lost connection) with the same clientMsgId, so a
   * message is stored at most once.
   */
  async publish(room, { clientMsgId = randomId(), kind = 'text', body, meta } = {}) {
    const bytes = toBodyBytes(body);
    const max = this.welcome?.limits?.bodyBytesMax || 0;
    if (max > 0 && bytes.length > max) {
      throw new ParleyError('too_large', `body of ${bytes.length} bytes exceeds ${max}`);
    }
    const req = { room, clientMsgId, kind, body: bytes, meta: metaToArray(meta) };
    for (let attempt = 0; ; attempt++) {
      try {
        const ack = await this._request('publish', req, { expect: 'ack' });
        return { room: ack.room || room, seq: ack.seq, tsUs: ack.tsUs, duplicate: ack.duplicate, clientMsgId };
      } catch (err) {
        if (!err.retryable || attempt >= this.publishRetries || this.state === 'closed') throw err;
        await new Promise((r) => this._setTimeout(r, this._backoffMs(attempt)));
      }
    }
  }

  /**
   * Subscribes to a room's messages after sinceSeq (history, then live).
   * onMessage(msg) gets each message once, in seq order; the 'message' event
   * fires too. After a reconnect the subscription resumes from the last
   * delivered seq and anything at or below it is dropped. Subscribing again
   * to a subscribed room only replaces the handler.
   * Resolves with { room, lastSeq } (the room head when it started).
   */
  async subscribe(room, sinceSeq = 0, onMessage = null) {
    if (typeof sinceSeq === 'function') {
      onMessage = sinceSeq;
      sinceSeq = 0;
    }
    const existing = this._subs.get(room);
    if (existing) {
      existing.onMessage = onMessage;
      return { room, lastSeq: fromBigInt(existing.lastSeq), already: true };
    }
    const sub = { room, lastSeq: toBigInt(sinceSeq), onMessage };
    this._subs.set(room, sub);
    try {
      const r = await this._request('subscribe', { room, sinceSeq: sub.lastSeq }, { expect: 'subscribed' });
      return { room, lastSeq: r.lastSeq };
    } catch (err) {
      if (this._subs.get(room) === sub) this._subs.delete(room);
      throw err;
    }
  }

  async unsubscribe(room) {
    const had = this._subs.delete(room);
    if (had && this.state === 'ready') await this._request('unsubscribe', { room }, { expect: 'ok' });
  }

  /** The last seq delivered on a subscription (Number, or BigInt above 2^53), or null. */
  lastSeq(room) {
    const sub = this._subs.get(room);
    return sub ? fromBigInt(sub.lastSeq) : null;
  }

  /** Rooms with an active subscription. */
  subscriptions() {
    return [...this._subs.keys()];
  }

  /**
   * A page of history. beforeSeq: newest-first page of seqs < beforeSeq.
   * afterSeq (or oldestFirst): oldest-first page of seqs > afterSeq.
   * Neither: the newest page, newest-first. Resolves with { room, messages, more }.
   */
  async history(room, { beforeSeq = 0, afterSeq = 0, limit = 0, oldestFirst = false } = {}) {
    const p = await this._request('history', { room, beforeSeq, afterSeq, limit, oldestFirst }, { expect: 'history' });
    return { room: p.room || room, messages: p.messages.map((m) => toClientMessage(m, room)), more: p.more };
  }

  async typing(room, active = true) {
    await this._request('typing', { room, active }, { expect: 'ok' });
  }

  async read(room, seq) {
    await this._request('read', { room, seq }, { expect: 'ok' });
  }

  /** Members of a room: { room, members: [{ user, role, online, readSeq, joined }] }. */
  async presence(room) {
    const p = await this._request('presence', { room }, { expect: 'presence' });
    return { room: p.room || room, members: p.members };
  }

  async closeRoom(room, reason = '') {
    await this._request('closeRoom', { room, reason }, { expect: 'ok' });
  }

  /** Room state and consultation statistics (RoomInfo; meta as a plain object). */
  async roomInfo(room) {
    const r = await this._request('roomInfo', { room }, { expect: 'roomInfo' });
    return { ...r, meta: metaToObject(r.meta) };
  }

  /** Rooms of the caller's tenant: { rooms, more }; page with { after: lastRoom }. */
  async listRooms({ limit = 0, after = '' } = {}) {
    const r = await this._request('listRooms', { limit, after }, { expect: 'roomList' });
    return { rooms: r.rooms, more: r.more };
  }

  /** Cluster status as the gateway sees it (StatusReply). */
  async status() {
    return this._request('status', {}, { expect: 'status' });
  }

  /** The tenant's statistics for the last `days` days, per UTC day
   * (Report: { days: [TenantDay] }); staff and service tokens only. */
  async report(days = 7) {
    return this._request('report', { days }, { expect: 'report' });
  }

  /** Round trip: { tsUs, serverTimeUs, rttMs }. */
  async ping() {
    const t0 = Date.now();
    const p = await this._request('ping', { tsUs: t0 * 1000 }, { expect: 'pong' });
    return { tsUs: p.tsUs, serverTimeUs: p.serverTimeUs, rttMs: Date.now() - t0 };
  }
}

export { ProtoError };
