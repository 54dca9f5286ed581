// Customer chat widget: sign in with a token, start or continue a
// conversation, chat with typing indicator and read receipts.
import {
  $, h, gatewayUrl, readHash, writeHash, newClient, bindConnection, errorText, toast,
  typingSender, typingTracker, typingText, randomKey,
} from './common.js';
import { Conversation } from './conversation.js';

const client = newClient();
const conn = bindConnection(client, $('#conn'));
const hash = readHash();

let me = '';
let room = '';
let conv = null;
let closed = false;
let lastReadSent = 0;
const readPositions = new Map(); // user -> seq, others only

const typingOut = typingSender((active) => {
  if (room && !closed) client.typing(room, active).catch(() => {});
});
const typingIn = typingTracker((users) => {
  const line = $('#typing');
  line.replaceChildren();
  const text = typingText(users);
  if (text) line.append(h('span.typing-dots', {}, text));
});

// ---- setup ----

$('#token').value = hash.get('token') || sessionStorage.getItem('parley.customer.token') || '';
$('#room-id').value = hash.get('room') || '';

function setupError(err) {
  const box = $('#setup-error');
  box.textContent = err ? errorText(err) : '';
  box.classList.toggle('hidden', !err);
}

function busy(on) {
  for (const id of ['#start', '#open']) $(id).disabled = on;
}

async function ensureSession() {
  const token = $('#token').value.trim();
  if (!token) throw Object.assign(new Error('Paste an access token first'), { code: 'unauthorized' });
  if (client.state === 'ready' && client.token === token) return;
  if (client.state !== 'idle' && client.state !== 'closed') client.close('new token');
  conn.connecting();
  try {
    const w = await client.open(gatewayUrl(), token);
    me = w.user;
    sessionStorage.setItem('parley.customer.token', token);
    conn.connected();
    $('#head-sub').textContent = `Signed in as ${w.user}`;
  } catch (err) {
    conn.offline();
    client.close('hello failed');
    throw err;
  }
}

$('#start').addEventListener('click', async () => {
  setupError(null);
  busy(true);
  try {
    await ensureSession();
    // The key makes a retried click return the same room.
    const key = sessionStorage.getItem('parley.customer.pendingKey') || randomKey();
    sessionStorage.setItem('parley.customer.pendingKey', key);
    const { room: id } = await client.createRoom({
      idempotencyKey: key,
      meta: { topic: $('#topic').value, channel: 'web', page: location.pathname },
    });
    sessionStorage.removeItem('parley.customer.pendingKey');
    await openRoom(id);
  } catch (err) {
    setupError(err);
  } finally {
    busy(false);
  }
});

$('#open').addEventListener('click', async () => {
  setupError(null);
  const id = $('#room-id').value.trim();
  if (!id) {
    setupError({ code: 'bad_request', message: 'enter a conversation id' });
    return;
  }
  busy(true);
  try {
    await ensureSession();
    await openRoom(id);
  } catch (err) {
    setupError(err);
  } finally {
    busy(false);
  }
});

// ---- conversation ----

async function openRoom(id) {
  // Joining an open room the customer created is harmless; a closed room
  // can still be read.
  try {
    await client.join(id);
  } catch (err) {
    if (err.code !== 'room_closed') throw err;
  }
  const [info, pres] = await Promise.all([client.roomInfo(id), client.presence(id)]);
  room = id;
  closed = info.closed;
  readPositions.clear();
  conv = new Conversation($('#messages'), { me, names: true });
  conv.clear(h('div.empty', {}, h('strong', {}, 'Hello!'),
    'Tell us what happened and an agent will join you shortly.'));
  for (const m of pres.members) if (m.user !== me) noteRead(m.user, m.readSeq);
  $('#room-label').textContent = `Conversation ${id}`;
  $('#setup').classList.add('hidden');
  $('#chat').classList.remove('hidden');
  writeHash({ room: id });
  setClosed(info.closed, info.closeReason);
  await client.subscribe(id, 0, onMessage);
  $('#input').focus();
}

function onMessage(msg) {
  conv.add(msg);
  if (msg.sender !== me) {
    typingIn.update(msg.sender, false);
    markRead();
  }
}

function markRead() {
  if (!room || document.visibilityState !== 'visible') return;
  const seq = conv.maxSeq;
  if (seq > lastReadSent) {
    lastReadSent = seq;
    client.read(room, seq).catch(() => {});
  }
}
document.addEventListener('visibilitychange', markRead);

function noteRead(user, seq) {
  const n = Number(seq) || 0;
  if (n > (readPositions.get(user) || 0)) readPositions.set(user, n);
  conv?.setReadBy(Math.max(0, ...readPositions.values()));
}

function setClosed(isClosed, reason) {
  closed = isClosed;
  const banner = $('#chat-banner');
  banner.classList.toggle('hidden', !isClosed);
  banner.textContent = isClosed ? `This conversation was closed${reason ? `: ${reason}` : ''}.` : '';
  $('#input').disabled = isClosed;
  $('#send').disabled = isClosed;
  $('#input').placeholder = isClosed ? 'This conversation is closed' : 'Type your message…';
  if (isClosed) typingIn.clear();
}

async function send(text, clientMsgId = randomKey()) {
  conv.addPending(clientMsgId, text);
  try {
    const ack = await client.publish(room, { clientMsgId, body: text });
    conv.ackPending(clientMsgId, ack);
  } catch (err) {
    conv.failPending(clientMsgId, errorText(err), () => {
      conv.retrying(clientMsgId);
      resend(text, clientMsgId);
    });
    if (err.code === 'room_closed') setClosed(true, '');
  }
}

async function resend(text, clientMsgId) {
  try {
    const ack = await client.publish(room, { clientMsgId, body: text });
    conv.ackPending(clientMsgId, ack);
  } catch (err) {
    conv.failPending(clientMsgId, errorText(err), () => {
      conv.retrying(clientMsgId);
      resend(text, clientMsgId);
    });
  }
}

$('#composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('#input');
  const text = input.value.trim();
  if (!text || closed) return;
  input.value = '';
  typingOut.stop();
  send(text);
});

$('#input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('#composer').requestSubmit();
  }
});
$('#input').addEventListener('input', () => typingOut.input());

$('#copy-link').addEventListener('click', async () => {
  const url = `${location.origin}${location.pathname}#room=${encodeURIComponent(room)}`;
  try {
    await navigator.clipboard.writeText(url);
    toast('Link copied (sign in again with your token to continue)');
  } catch {
    toast(url);
  }
});

$('#leave').addEventListener('click', async () => {
  if (room) await client.unsubscribe(room).catch(() => {});
  room = '';
  lastReadSent = 0;
  typingIn.clear();
  writeHash({ room: null });
  $('#room-id').value = '';
  $('#chat').classList.add('hidden');
  $('#setup').classList.remove('hidden');
});

// ---- live events ----

client.on('typing', (t) => {
  if (t.room === room && t.user !== me) typingIn.update(t.user, t.active);
});
client.on('read', (r) => {
  if (r.room === room && r.user !== me) noteRead(r.user, r.seq);
});
client.on('presence', (p) => {
  if (p.room !== room || p.user === me || !conv) return;
  if (p.joined) toast(`${p.user} joined the conversation`);
  if (p.online === false && !p.joined && !p.left) typingIn.update(p.user, false);
});
client.on('closed', (c) => {
  if (c.room === room) setClosed(true, c.reason);
});
client.on('error', (err) => toast(errorText(err), 'bad'));
client.on('disconnect', (d) => {
  if (!d.willReconnect && room) toast(`Disconnected: ${d.reason}`, 'bad');
});

// ---- start from the URL ----

if (hash.get('token') && hash.get('room')) {
  $('#open').click();
} else if (hash.get('token') && hash.get('new') === '1') {
  $('#start').click();
}
