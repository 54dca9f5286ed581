// A message timeline: messages kept in seq order whatever order they arrive
// in (history pages, live feed), optimistic "sending" entries for the
// user's own messages, and a "Seen" receipt on the last message the other
// side has read.
import { h, fmtTime, fmtDateTime, nearBottom, roleLabel } from './common.js';

export class Conversation {
  /**
   * @param {HTMLElement} el scroll container
   * @param {{ me: string, names?: boolean }} opts names: show sender names on others' messages
   */
  constructor(el, { me, names = true } = {}) {
    this.el = el;
    this.me = me;
    this.names = names;
    this.bySeq = new Map(); // seq (Number) -> { msg, node }
    this.order = []; // sorted seqs
    this.pending = new Map(); // clientMsgId -> node
    this.seenNode = null;
    this.readBy = 0;
    this.topSlot = h('div'); // holds the "load earlier" control
    this.el.replaceChildren(this.topSlot);
  }

  get size() {
    return this.order.length;
  }

  get minSeq() {
    return this.order.length ? this.order[0] : 0;
  }

  get maxSeq() {
    return this.order.length ? this.order[this.order.length - 1] : 0;
  }

  setTop(node) {
    this.topSlot.replaceChildren(...(node ? [node] : []));
  }

  clear(emptyNode) {
    this.bySeq.clear();
    this.order = [];
    this.pending.clear();
    this.seenNode = null;
    this.el.replaceChildren(this.topSlot);
    if (emptyNode) this.el.append(emptyNode);
  }

  _emptyNode() {
    return this.el.querySelector('.empty');
  }

  /** Adds a message (a ParleyClient message). Returns false when already shown. */
  add(msg, { scroll = true } = {}) {
    const seq = Number(msg.seq);
    if (this.bySeq.has(seq)) return false;
    this._emptyNode()?.remove();
    const stick = nearBottom(this.el);
    const node = this._render(msg);
    // Replace the optimistic entry of our own message.
    const pend = msg.clientMsgId && this.pending.get(msg.clientMsgId);
    if (pend) {
      pend.remove();
      this.pending.delete(msg.clientMsgId);
    }
    // Ordered insert.
    let i = this.order.length;
    while (i > 0 && this.order[i - 1] > seq) i--;
    const nextSeq = this.order[i];
    this.order.splice(i, 0, seq);
    this.bySeq.set(seq, { msg, node });
    if (nextSeq !== undefined) {
      this.el.insertBefore(node, this.bySeq.get(nextSeq).node);
    } else {
      const firstPending = this.pending.values().next().value;
      if (firstPending) this.el.insertBefore(node, firstPending);
      else this.el.append(node);
    }
    this._refreshWho(i);
    this._refreshWho(i + 1);
    this._updateSeen();
    if (scroll && (stick || msg.sender === this.me)) this.scrollToEnd();
    return true;
  }

  /** Adds older messages without moving the view. */
  prepend(msgs) {
    const before = this.el.scrollHeight;
    const top = this.el.scrollTop;
    for (const m of msgs) this.add(m, { scroll: false });
    this.el.scrollTop = top + (this.el.scrollHeight - before);
  }

  /** An optimistic entry for a message being sent. */
  addPending(clientMsgId, text) {
    this._emptyNode()?.remove();
    const status = h('span', {}, 'Sending…');
    const node = h('div.msg.mine.pending', { dataset: { cmid: clientMsgId } },
      h('div.bubble', {}, text),
      h('div.meta', {}, status));
    node._status = status;
    this.pending.set(clientMsgId, node);
    this.el.append(node);
    this.scrollToEnd();
  }

  /** The publish was acknowledged but the live copy has not arrived yet. */
  ackPending(clientMsgId, ack) {
    const node = this.pending.get(clientMsgId);
    if (!node) return;
    node.classList.remove('pending');
    node._status.textContent = fmtTime(ack.tsUs);
  }

  failPending(clientMsgId, text, retry) {
    const node = this.pending.get(clientMsgId);
    if (!node) return;
    node.classList.remove('pending');
    node.classList.add('failed');
    node._status.replaceChildren(`Not sent: ${text} · `,
      h('button.link.small', { type: 'button', onclick: retry }, 'Retry'));
  }

  retrying(clientMsgId) {
    const node = this.pending.get(clientMsgId);
    if (!node) return;
    node.classList.remove('failed');
    node.classList.add('pending');
    node._status.textContent = 'Sending…';
  }

  /** The highest seq read by someone other than me. */
  setReadBy(seq) {
    this.readBy = Math.max(this.readBy, Number(seq) || 0);
    this._updateSeen();
  }

  scrollToEnd() {
    this.el.scrollTop = this.el.scrollHeight;
  }

  _render(msg) {
    const mine = msg.sender === this.me;
    if (msg.kind === 'system' || msg.kind === 'event') {
      return h(`div.msg.${msg.kind}`, { dataset: { seq: String(msg.seq) } },
        h('div.bubble', { title: fmtDateTime(msg.tsUs) }, msg.text));
    }
    const who = h('div.who', {}, `${msg.sender}${msg.role && msg.role !== 'customer' ? ` · ${roleLabel(msg.role)}` : ''}`);
    const meta = h('div.meta', {}, h('span', { title: fmtDateTime(msg.tsUs) }, fmtTime(msg.tsUs)));
    const node = h(`div.msg${mine ? '.mine' : ''}`, { dataset: { seq: String(msg.seq) } },
      !mine && this.names ? who : null,
      h('div.bubble', {}, msg.text),
      meta);
    node._who = !mine && this.names ? who : null;
    node._meta = meta;
    node._sender = msg.sender;
    return node;
  }

  // Shows a sender name only at the start of a run of the same sender.
  _refreshWho(i) {
    const seq = this.order[i];
    if (seq === undefined) return;
    const cur = this.bySeq.get(seq).node;
    if (!cur._who) return;
    const prevSeq = this.order[i - 1];
    const prev = prevSeq !== undefined ? this.bySeq.get(prevSeq).node : null;
    cur._who.classList.toggle('hidden', !!prev && prev._sender === cur._sender);
  }

  _updateSeen() {
    let target = null;
    for (let i = this.order.length - 1; i >= 0; i--) {
      const seq = this.order[i];
      if (seq > this.readBy) continue;
      const { msg, node } = this.bySeq.get(seq);
      if (msg.sender === this.me) {
        target = node;
        break;
      }
    }
    if (this.seenNode && this.seenNode !== target) this.seenNode.remove();
    if (target && (!this.seenNode || this.seenNode.parentNode !== target._meta)) {
      this.seenNode = h('span.seen', {}, '· Seen');
      target._meta.append(this.seenNode);
    } else if (!target) {
      this.seenNode = null;
    }
  }
}
