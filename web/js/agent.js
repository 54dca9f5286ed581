// Agent console: the tenant's rooms, a live conversation with history,
// typing and read receipts, closing with a reason, and the room's
// consultation statistics.
import {
  $, h, gatewayUrl, readHash, writeHash, newClient, bindConnection, errorText, toast,
  typingSender, typingTracker, typingText, randomKey, fmtDuration, fmtDateTime, fmtShort, nowUs,
  initials, roleLabel,
} from './common.js';
import { Conversation } from './conversation.js';

const PAGE = 50; // history page size
const LIST_PAGE = 100; // rooms per listRooms request
const INFO_CONCURRENCY = 16;

const client = newClient();
const conn = bindConnection(client, $('#conn'));

let me = '';
let myRole = '';
let filter = 'open';
const rooms = new Map(); // room id -> RoomInfo (or { room, error })
let current = null; // { id, info, conv, gen, more, lastReadSent, readBy: Map }
let openGen = 0;

// ---- sign in ----

$('#token').value = readHash().get('token') || sessionStorage.getItem('parley.agent.token') || '';

$('#connect').addEventListener('click', connect);
$('#disconnect').addEventListener('click', () => {
  client.close('signed out');
  conn.offline();
  sessionStorage.removeItem('parley.agent.token');
  location.hash = '';
  location.reload();
});

async function connect() {
  const token = $('#token').value.trim();
  const errBox = $('#signin-error');
  errBox.classList.add('hidden');
  if (!token) {
    errBox.textContent = 'Paste an agent token first.';
    errBox.classList.remove('hidden');
    return;
  }
  $('#connect').disabled = true;
  conn.connecting();
  try {
    const w = await client.open(gatewayUrl(), token);
    me = w.user;
    myRole = w.role;
    sessionStorage.setItem('parley.agent.token', token);
    conn.connected();
    $('#signin').classList.add('hidden');
    $('#session').classList.remove('hidden');
    $('#me-avatar').textContent = initials(w.user);
    $('#me-name').textContent = w.user;
    $('#me-sub').textContent = `${roleLabel(w.role)} · ${w.tenant}`;
    $('#whoami').textContent = `${w.tenant}`;
    $('#refresh').disabled = false;
    $('#open-btn').disabled = false;
    if (w.role === 'customer') toast('This is a customer token: the console needs an agent, service or observer token.', 'bad');
    await refreshRooms();
    const want = readHash().get('room');
    if (want) openRoom(want);
  } catch (err) {
    conn.offline();
    client.close('hello failed');
    errBox.textContent = errorText(err);
    errBox.classList.remove('hidden');
    $('#connect').disabled = false;
  }
}

// ---- room list ----

for (const b of document.querySelectorAll('.filters button')) {
  b.addEventListener('click', () => {
    filter = b.dataset.filter;
    for (const o of document.querySelectorAll('.filters button')) o.classList.toggle('active', o === b);
    renderRooms();
  });
}

$('#refresh').addEventListener('click', () => refreshRooms());

$('#open-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = $('#open-id').value.trim();
  if (id) openRoom(id);
});

async function refreshRooms() {
  $('#refresh').disabled = true;
  try {
    const ids = [];
    let after = '';
    for (;;) {
      const page = await client.listRooms({ limit: LIST_PAGE, after });
      ids.push(...page.rooms);
      if (!page.more || page.rooms.length === 0) break;
      after = page.rooms[page.rooms.length - 1];
    }
    await loadInfos(ids);
    for (const id of [...rooms.keys()]) if (!ids.includes(id) && id !== current?.id) rooms.delete(id);
    renderRooms();
  } catch (err) {
    toast(`Rooms: ${errorText(err)}`, 'bad');
  } finally {
    $('#refresh').disabled = false;
  }
}

async function loadInfos(ids) {
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++];
      try {
        rooms.set(id, await client.roomInfo(id));
      } catch (err) {
        rooms.set(id, { room: id, error: err });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(INFO_CONCURRENCY, ids.length) }, worker));
}

// pending_customer_us is the time of the oldest unanswered customer text.
function pendingSince(stats) {
  const v = Number(stats?.pendingCustomerUs || 0);
  if (!v) return 0;
  return v > 1e14 ? v : nowUs() - v; // tolerate a duration from older brokers
}

// roomInfo's members carry stored state; presence() knows who is online now.
async function roomInfoLive(id) {
  const [info, pres] = await Promise.all([client.roomInfo(id), client.presence(id).catch(() => null)]);
  if (pres) {
    const online = new Map(pres.members.map((m) => [m.user, m.online]));
    info.members = info.members.map((m) => (online.has(m.user) ? { ...m, online: online.get(m.user) } : m));
  }
  return info;
}

function customerOf(info) {
  return info.members?.find((m) => m.role === 'customer')?.user || '';
}

function roomState(info) {
  if (info.error) return 'error';
  if (info.closed) return 'closed';
  if (pendingSince(info.stats)) return 'waiting';
  return 'open';
}

function statusPill(info) {
  const st = roomState(info);
  if (st === 'closed') return h('span.pill', {}, 'Closed');
  if (st === 'error') return h('span.pill.bad', {}, info.error.code || 'error');
  if (st === 'waiting') {
    return h('span.pill.warn', { dataset: { since: String(pendingSince(info.stats)) } },
      `Waiting ${fmtDuration(nowUs() - pendingSince(info.stats))}`);
  }
  return h('span.pill.ok', {}, 'Open');
}

function renderRooms() {
  const list = $('#rooms');
  const infos = [...rooms.values()].filter((i) => {
    if (i.room === current?.id) return true; // the open room stays in view
    const st = roomState(i);
    if (filter === 'all') return true;
    if (filter === 'open') return st === 'open' || st === 'waiting';
    return st === filter;
  });
  const rank = { waiting: 0, open: 1, error: 2, closed: 3 };
  infos.sort((a, b) => {
    const ra = rank[roomState(a)];
    const rb = rank[roomState(b)];
    if (ra !== rb) return ra - rb;
    if (ra === 0) return pendingSince(a.stats) - pendingSince(b.stats); // longest waiting first
    return Number(b.stats?.createdUs || 0) - Number(a.stats?.createdUs || 0) || (a.room < b.room ? 1 : -1);
  });
  if (infos.length === 0) {
    list.replaceChildren(h('div.empty', {}, h('strong', {}, 'No rooms'),
      filter === 'all' ? 'Your tenant has no rooms yet.' : `No ${filter} rooms right now.`));
    return;
  }
  list.replaceChildren(...infos.map((info) => {
    const topic = info.meta?.topic;
    const cust = customerOf(info);
    return h(`button.room-item${current?.id === info.room ? '.active' : ''}`, {
      type: 'button', onclick: () => openRoom(info.room), title: info.room,
    },
    h('div.line1', {}, h('span.rid.grow', {}, info.room),
      info.error ? null : h('span.faint', {}, `${info.lastSeq} msg`)),
    h('div.line2', {},
      h('span.topic.grow', {}, [cust, topic].filter(Boolean).join(' · ') || '—'),
      statusPill(info)));
  }));
}

// ---- conversation ----

const typingOut = typingSender((active) => {
  if (current && canWrite()) client.typing(current.id, active).catch(() => {});
});
const typingIn = typingTracker((users) => {
  const line = $('#typing');
  line.replaceChildren();
  const text = typingText(users);
  if (text) line.append(h('span.typing-dots', {}, text));
});

function amMember(info) {
  return !!info?.members?.some((m) => m.user === me && m.joined);
}

function canWrite() {
  const info = current?.info;
  if (!info || info.closed || myRole === 'observer' || myRole === 'customer') return false;
  return myRole === 'service' || amMember(info);
}

async function openRoom(id) {
  if (client.state !== 'ready' && client.state !== 'reconnecting') return;
  const gen = ++openGen;
  if (current && current.id !== id) {
    client.unsubscribe(current.id).catch(() => {});
  }
  typingIn.clear();
  typingOut.stop();
  $('#close-form').classList.add('hidden');
  const conv = new Conversation($('#messages'), { me, names: true });
  conv.clear(h('div.empty', {}, h('strong', {}, 'Loading…')));
  current = { id, info: null, conv, more: false, lastReadSent: 0, readBy: new Map() };
  writeHash({ room: id });
  $('#open-id').value = '';
  renderRooms();
  try {
    const info = await roomInfoLive(id);
    if (gen !== openGen) return;
    current.info = info;
    rooms.set(id, info);
    for (const m of info.members) if (m.user !== me) current.readBy.set(m.user, Number(m.readSeq) || 0);
    renderHeader();
    renderDetails();
    renderRooms();
    // Newest page first (newest-first order), then live from its last seq.
    const page = await client.history(id, { limit: PAGE });
    if (gen !== openGen) return;
    conv.clear(page.messages.length ? null : h('div.empty', {}, h('strong', {}, 'No messages yet'),
      'Messages appear here as soon as they are published.'));
    for (const m of [...page.messages].reverse()) conv.add(m, { scroll: false });
    conv.scrollToEnd();
    current.more = page.more;
    renderLoadOlder();
    updateSeen();
    await client.subscribe(id, conv.maxSeq, (m) => onMessage(id, m));
    markRead();
  } catch (err) {
    if (gen !== openGen) return;
    conv.clear(h('div.empty', {}, h('strong', {}, 'Cannot open this room'), errorText(err)));
    current.info = current.info || null;
    renderHeader(err);
  }
}

function renderLoadOlder() {
  const conv = current.conv;
  if (!current.more) {
    conv.setTop(conv.size ? h('div.day-sep', {}, 'Start of the conversation') : null);
    return;
  }
  const btn = h('button.small.load-older', { type: 'button' }, 'Load earlier messages');
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    const cur = current;
    try {
      const page = await client.history(cur.id, { beforeSeq: cur.conv.minSeq, limit: PAGE });
      if (cur !== current) return;
      cur.conv.prepend(page.messages);
      cur.more = page.more;
      renderLoadOlder();
    } catch (err) {
      toast(`History: ${errorText(err)}`, 'bad');
      btn.disabled = false;
    }
  });
  conv.setTop(btn);
}

function onMessage(id, msg) {
  if (!current || current.id !== id) return;
  current.conv.add(msg);
  if (msg.sender !== me) typingIn.update(msg.sender, false);
  markRead();
  scheduleInfo();
}

function markRead() {
  if (!current || !amMember(current.info) || document.visibilityState !== 'visible') return;
  const seq = current.conv.maxSeq;
  if (seq > current.lastReadSent) {
    current.lastReadSent = seq;
    client.read(current.id, seq).catch(() => {});
  }
}
document.addEventListener('visibilitychange', markRead);

function updateSeen() {
  if (!current) return;
  current.conv.setReadBy(Math.max(0, ...current.readBy.values()));
}

function renderHeader(err) {
  const info = current?.info;
  $('#conv-room').textContent = current ? current.id : 'No room selected';
  const status = $('#conv-status');
  status.replaceChildren(info ? statusPill(info) : (err ? h('span.pill.bad', {}, err.code || 'error') : ''));
  const cust = info ? customerOf(info) : '';
  const topic = info?.meta?.topic;
  $('#conv-sub').textContent = info
    ? [cust && `Customer ${cust}`, topic && `Topic ${topic}`, `opened ${fmtDateTime(info.stats?.createdUs)}`].filter(Boolean).join(' · ')
    : (err ? errorText(err) : '');
  const member = amMember(info);
  const canJoin = info && !info.closed && !member && myRole !== 'service' && myRole !== 'customer';
  $('#join').classList.toggle('hidden', !canJoin);
  $('#leave').classList.toggle('hidden', !(info && member && !info.closed));
  $('#close').classList.toggle('hidden', !(info && !info.closed && (myRole === 'agent' || myRole === 'service' || member)));
  const banner = $('#conv-banner');
  if (info?.closed) {
    banner.className = 'banner';
    banner.textContent = `Closed ${fmtDateTime(info.stats?.closedUs)}${info.closeReason ? ` — ${info.closeReason}` : ''}`;
  } else if (info && !canWrite() && myRole !== 'observer') {
    banner.className = 'banner info';
    banner.textContent = 'You are viewing this room. Join it to reply; the customer sees you join.';
  } else {
    banner.className = 'banner hidden';
  }
  const writable = canWrite();
  $('#input').disabled = !writable;
  $('#send').disabled = !writable;
  $('#input').placeholder = writable ? 'Reply to the customer…  (Enter to send, Shift+Enter for a new line)'
    : info?.closed ? 'This room is closed' : myRole === 'observer' ? 'Observers cannot write' : 'Join the room to reply';
}

$('#join').addEventListener('click', async () => {
  const cur = current;
  try {
    await client.join(cur.id);
    await refreshInfo();
    $('#input').focus();
  } catch (err) {
    toast(`Join: ${errorText(err)}`, 'bad');
  }
});

$('#leave').addEventListener('click', async () => {
  try {
    await client.leave(current.id);
    await refreshInfo();
  } catch (err) {
    toast(`Leave: ${errorText(err)}`, 'bad');
  }
});

$('#close').addEventListener('click', () => {
  $('#close-form').classList.remove('hidden');
  $('#close-reason').focus();
});
$('#close-cancel').addEventListener('click', () => $('#close-form').classList.add('hidden'));
$('#close-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const reason = $('#close-reason').value.trim() || 'resolved';
  try {
    await client.closeRoom(current.id, reason);
    $('#close-form').classList.add('hidden');
    $('#close-reason').value = '';
    await refreshInfo();
    toast(`Room ${current.id} closed`);
  } catch (err) {
    toast(`Close: ${errorText(err)}`, 'bad');
  }
});

$('#composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('#input');
  const text = input.value.trim();
  if (!text || !canWrite()) return;
  input.value = '';
  typingOut.stop();
  send(current, text, randomKey());
});
$('#input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('#composer').requestSubmit();
  }
});
$('#input').addEventListener('input', () => typingOut.input());

async function send(cur, text, clientMsgId, retry = false) {
  if (retry) cur.conv.retrying(clientMsgId);
  else cur.conv.addPending(clientMsgId, text);
  try {
    const ack = await client.publish(cur.id, { clientMsgId, body: text });
    cur.conv.ackPending(clientMsgId, ack);
  } catch (err) {
    cur.conv.failPending(clientMsgId, errorText(err), () => send(cur, text, clientMsgId, true));
  }
}

// ---- details panel ----

let infoTimer = null;
function scheduleInfo() {
  clearTimeout(infoTimer);
  infoTimer = setTimeout(() => refreshInfo().catch(() => {}), 400);
}

async function refreshInfo() {
  const cur = current;
  if (!cur) return;
  const info = await roomInfoLive(cur.id);
  if (cur !== current) return;
  cur.info = info;
  rooms.set(cur.id, info);
  renderHeader();
  renderDetails();
  renderRooms();
}

function setStat(id, value, live = false) {
  const el = $(id);
  el.textContent = value;
  el.classList.toggle('live', live);
  el.title = live ? 'still running' : '';
}

function renderDetails() {
  const info = current?.info;
  const s = info?.stats;
  if (!s) {
    for (const id of ['#st-wait', '#st-first', '#st-handle', '#st-pending', '#st-turns', '#st-avg']) setStat(id, '—');
    $('#turns').replaceChildren(h('span.hint', {}, 'No room selected.'));
    $('#room-kv').replaceChildren();
    $('#members').replaceChildren(h('span.hint', {}, '—'));
    return;
  }
  renderLiveStats();
  const turns = s.turnResponseUs.map(Number);
  setStat('#st-turns', String(s.turns || turns.length));
  setStat('#st-avg', turns.length ? fmtDuration(turns.reduce((a, b) => a + b, 0) / turns.length) : '—');
  const max = Math.max(1, ...turns);
  $('#turns').replaceChildren(...(turns.length
    ? turns.map((t, i) => h('div.turn', {},
      h('span.muted', {}, `#${i + 1}`),
      h('div.bar', {}, h('span', { style: { width: `${Math.max(2, (100 * t) / max)}%` } })),
      h('span.t', {}, fmtDuration(t))))
    : [h('span.hint', {}, 'No answered turns yet.')]));

  const kv = [
    ['Status', info.closed ? 'Closed' : 'Open'],
    ['Tenant', info.tenant],
    ['Messages', String(info.lastSeq)],
    ['Customer / agent / bot', `${s.customerMsgs} / ${s.agentMsgs} / ${s.botMsgs}`],
    ['Created', fmtShort(s.createdUs)],
    ['First customer message', fmtShort(s.firstCustomerMsgUs)],
    ['First agent join', fmtShort(s.firstAgentJoinUs)],
    ['First agent message', fmtShort(s.firstAgentMsgUs)],
  ];
  if (info.closed) {
    kv.push(['Closed', fmtShort(s.closedUs)]);
    kv.push(['Reason', info.closeReason || '—']);
  }
  for (const [k, v] of Object.entries(info.meta || {})) kv.push([`meta.${k}`, v]);
  $('#room-kv').replaceChildren(...kv.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));

  const members = [...info.members].sort((a, b) => Number(b.online) - Number(a.online) || a.user.localeCompare(b.user));
  $('#members').replaceChildren(...(members.length
    ? members.map((m) => h('div.member', {},
      h(`span.avatar.${m.role}`, {}, initials(m.user), h(`span.dot${m.online ? '.ok' : ''}`)),
      h('div.grow', {},
        h('div.name', {}, m.user === me ? `${m.user} (you)` : m.user),
        h('div.sub', {}, [roleLabel(m.role), m.online ? 'online' : 'offline', m.joined ? null : 'left',
          m.readSeq ? `read up to #${m.readSeq}` : null].filter(Boolean).join(' · ')))))
    : [h('span.hint', {}, 'No members yet.')]));
}

// Durations that are still running tick every second.
function renderLiveStats() {
  const s = current?.info?.stats;
  if (!s) return;
  const now = nowUs();
  const c1 = Number(s.firstCustomerMsgUs);
  const join = Number(s.firstAgentJoinUs);
  const ans = Number(s.firstAgentMsgUs);
  const closedUs = Number(s.closedUs);
  const end = closedUs || now;
  if (c1 && join) setStat('#st-wait', fmtDuration(s.waitUs));
  else if (c1) setStat('#st-wait', fmtDuration(end - c1), !closedUs);
  else setStat('#st-wait', '—');
  if (c1 && ans) setStat('#st-first', fmtDuration(s.firstResponseUs));
  else if (c1) setStat('#st-first', fmtDuration(end - c1), !closedUs);
  else setStat('#st-first', '—');
  if (closedUs && join) setStat('#st-handle', fmtDuration(s.handleUs));
  else if (join) setStat('#st-handle', fmtDuration(now - join), true);
  else setStat('#st-handle', '—');
  const since = pendingSince(s);
  setStat('#st-pending', since && !closedUs ? fmtDuration(now - since) : '—', !!since && !closedUs);
}

setInterval(() => {
  renderLiveStats();
  for (const pill of document.querySelectorAll('.pill.warn[data-since]')) {
    pill.textContent = `Waiting ${fmtDuration(nowUs() - Number(pill.dataset.since))}`;
  }
}, 1000);

// Keep the list fresh without a subscription to every room.
setInterval(() => {
  if (client.state === 'ready' && document.visibilityState === 'visible') refreshRooms();
}, 20000);

// ---- live events ----

client.on('typing', (t) => {
  if (current && t.room === current.id && t.user !== me) typingIn.update(t.user, t.active);
});
client.on('read', (r) => {
  if (!current || r.room !== current.id || r.user === me) return;
  current.readBy.set(r.user, Math.max(current.readBy.get(r.user) || 0, Number(r.seq) || 0));
  updateSeen();
  scheduleInfo();
});
client.on('presence', (p) => {
  if (!current || p.room !== current.id) return;
  if (p.user !== me && p.online === false) typingIn.update(p.user, false);
  scheduleInfo();
});
client.on('closed', (c) => {
  if (current && c.room === current.id) {
    typingIn.clear();
    scheduleInfo();
  }
});
client.on('reconnect', () => {
  toast('Reconnected');
  if (current) scheduleInfo();
});
client.on('error', (err) => toast(errorText(err), 'bad'));

renderDetails();
if ($('#token').value && readHash().get('token')) connect();
