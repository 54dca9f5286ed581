// Helpers shared by the customer widget and the agent console.
import { ParleyClient, randomId } from '../sdk/src/index.js';

export const randomKey = randomId;

/** The gateway's WebSocket URL: same host as the page, path /ws (override with #ws=...). */
export function gatewayUrl() {
  const fromHash = readHash().get('ws');
  if (fromHash) return fromHash;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws`;
}

export function readHash() {
  return new URLSearchParams(location.hash.replace(/^#/, ''));
}

/** Updates keys of the URL hash without adding a history entry. */
export function writeHash(updates) {
  const p = readHash();
  for (const [k, v] of Object.entries(updates)) {
    if (v === null || v === undefined || v === '') p.delete(k);
    else p.set(k, v);
  }
  const s = p.toString();
  history.replaceState(null, '', s ? `#${s}` : location.pathname + location.search);
}

export function newClient() {
  return new ParleyClient({ clientName: `parley-web/${document.body.dataset.page || 'demo'}` });
}

/** Tiny element builder: h('div.cls#id', {attr}, children...). Text is never parsed as HTML. */
export function h(spec, attrs = {}, ...children) {
  const m = /^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
  const el = document.createElement((m && m[1]) || 'div');
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === '.') el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** Microseconds since the epoch -> "14:03". */
export function fmtTime(tsUs) {
  if (!tsUs) return '';
  return new Date(Number(tsUs) / 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function fmtDateTime(tsUs) {
  if (!tsUs) return '—';
  return new Date(Number(tsUs) / 1000).toLocaleString([], {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** Time of day with seconds when today, else a short date and time. */
export function fmtShort(tsUs) {
  if (!tsUs) return '—';
  const d = new Date(Number(tsUs) / 1000);
  if (d.toDateString() === new Date().toDateString()) {
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  return d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** A duration in microseconds -> "850 ms", "42 s", "3 min 05 s", "1 h 12 min". */
export function fmtDuration(us) {
  if (us === null || us === undefined || us === '') return '—';
  const n = Number(us);
  if (!Number.isFinite(n) || n < 0) return '—';
  const ms = n / 1000;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

export function nowUs() {
  return Date.now() * 1000;
}

export function initials(name) {
  const parts = String(name || '?').split(/[\s._@-]+/).filter(Boolean);
  return ((parts[0] || '?')[0] + (parts[1] ? parts[1][0] : '')).toUpperCase();
}

export function errorText(err) {
  if (!err) return 'unknown error';
  const code = err.code ? `${err.code.replace(/_/g, ' ')}` : '';
  const msg = err.message && err.message !== err.code ? err.message : '';
  return [code, msg].filter(Boolean).join(': ');
}

/** Transient notice in the corner. */
export function toast(text, kind = '') {
  let area = $('.toast-area');
  if (!area) {
    area = h('div.toast-area', { role: 'status', 'aria-live': 'polite' });
    document.body.append(area);
  }
  const t = h(`div.toast${kind ? `.${kind}` : ''}`, {}, text);
  area.append(t);
  setTimeout(() => t.remove(), kind === 'bad' ? 6000 : 3500);
}

/** Shows the client's connection state in a .conn element. */
export function bindConnection(client, el) {
  const dot = h('span.dot');
  const label = h('span', {}, 'Offline');
  el.replaceChildren(dot, label);
  const set = (cls, text) => {
    dot.className = `dot ${cls}`;
    label.textContent = text;
  };
  client.on('disconnect', (d) => set(d.willReconnect ? 'warn' : 'bad', d.willReconnect ? 'Reconnecting…' : 'Offline'));
  client.on('reconnect', () => set('ok', 'Connected'));
  return {
    connecting: () => set('warn', 'Connecting…'),
    connected: () => set('ok', 'Connected'),
    offline: () => set('bad', 'Offline'),
  };
}

/**
 * Typing signal for a composer: sends typing(true) at most every 3 s while
 * the user types and typing(false) after 4 s of quiet or on send.
 */
export function typingSender(sendFn) {
  let lastSent = 0;
  let active = false;
  let quietTimer = null;
  const stop = () => {
    clearTimeout(quietTimer);
    quietTimer = null;
    if (active) {
      active = false;
      sendFn(false);
    }
  };
  return {
    input() {
      const now = Date.now();
      if (!active || now - lastSent > 3000) {
        active = true;
        lastSent = now;
        sendFn(true);
      }
      clearTimeout(quietTimer);
      quietTimer = setTimeout(stop, 4000);
    },
    stop,
  };
}

/** Tracks who is typing in a room; entries expire if no stop arrives. */
export function typingTracker(onChange) {
  const who = new Map(); // user -> timer
  return {
    update(user, active) {
      clearTimeout(who.get(user));
      if (active) who.set(user, setTimeout(() => { who.delete(user); onChange([...who.keys()]); }, 8000));
      else who.delete(user);
      onChange([...who.keys()]);
    },
    clear() {
      for (const t of who.values()) clearTimeout(t);
      who.clear();
      onChange([]);
    },
  };
}

export function typingText(users) {
  if (users.length === 0) return '';
  if (users.length === 1) return `${users[0]} is typing`;
  return `${users.slice(0, -1).join(', ')} and ${users.at(-1)} are typing`;
}

/** Keeps a scroll container pinned to the bottom when it already was. */
export function nearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 60;
}

export function roleLabel(role) {
  return { customer: 'Customer', agent: 'Agent', bot: 'Bot', observer: 'Observer', service: 'Service' }[role] || role;
}
