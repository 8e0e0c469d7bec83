// One chat's transcript on a page, kept by the client rules of the protocol (README, "Resume"):
// messages are applied by seq, each once, in order; a gap asks the server to resume from the
// last seq held; a message is sent with a client message id and kept until its ack, and sent
// again under the same id after a reconnect, so a drop neither loses nor duplicates it.

import { all, clock, el, newClientMsgId } from "./common.js";

const RANK = { sent: 0, delivered: 1, seen: 2 };
const RECEIPT = { sent: "Sent", delivered: "Delivered", seen: "Seen" };

export class Thread {
  /**
   * @param chatId the chat
   * @param live the page's Live socket
   * @param isMine (message) => whether this page's user wrote it
   * @param historyPath REST path of the chat's messages, for a reload the resume cannot answer
   * @param token for that reload
   * @param labels {mine, theirs}: who wrote a message, for screen readers
   */
  constructor({ chatId, live, isMine, historyPath, token, labels }) {
    this.chatId = chatId;
    this.live = live;
    this.isMine = isMine;
    this.historyPath = historyPath;
    this.token = token;
    this.labels = labels;
    this.lastSeq = 0; // every message up to here is shown, in order
    this.early = new Map(); // seq -> message that arrived past a gap
    this.pending = new Map(); // clientMsgId -> {content, seq, node}
    this.receipts = new Map(); // seq -> the receipt element of my message
    this.theirsRead = 0; // my messages up to this seq were seen ...
    this.theirsDelivered = 0; // ... or delivered
    this.seenSent = 0; // the last `read` I sent
    this.lastTheirs = 0; // seq of the other side's latest message
    this.resuming = false;
    this.root = el("ol", { class: "messages", "aria-label": "Conversation", "data-chat-id": chatId });
  }

  /** Apply a message from a `message` frame or a resume; returns how many of theirs are new. */
  receive(message) {
    if (message.seq <= this.lastSeq || this.early.has(message.seq)) return 0; // seen already
    if (message.seq > this.lastSeq + 1) {
      this.early.set(message.seq, message);
      this.resume(); // a hole below it: fetch what is missing
      return 0;
    }
    let fresh = this.append(message);
    while (this.early.has(this.lastSeq + 1)) {
      const next = this.early.get(this.lastSeq + 1);
      this.early.delete(next.seq);
      fresh += this.append(next);
    }
    return fresh;
  }

  append(message) {
    this.lastSeq = message.seq;
    const mine = this.isMine(message);
    if (mine) this.settle(message);
    else this.lastTheirs = message.seq;
    const receipt = mine ? el("span", { class: "receipt" }) : null;
    if (receipt) {
      this.receipts.set(message.seq, receipt);
      this.showReceipt(message.seq, message.status);
    }
    this.root.append(
      el(
        "li",
        { class: `message ${mine ? "mine" : "theirs"}`, "data-seq": message.seq },
        el("span", { class: "visually-hidden" }, `${mine ? this.labels.mine : this.labels.theirs}: `),
        el("p", { class: "body" }, message.content),
        el("p", { class: "meta" }, el("time", { datetime: message.createdAt }, clock(message.createdAt)), receipt),
      ),
    );
    this.root.lastElementChild.scrollIntoView({ block: "nearest" });
    return mine ? 0 : 1;
  }

  /** My stored message arrived: its pending copy goes (matched by ack, else by content). */
  settle(message) {
    for (const [id, item] of this.pending) {
      if (item.seq === message.seq || (item.seq === null && item.content === message.content)) {
        item.node.remove();
        this.pending.delete(id);
        return;
      }
    }
  }

  /** Ask for every message after the last one held (after a gap, and on every reconnect). */
  resume() {
    if (this.resuming) return;
    this.resuming = this.live.send({ type: "resume", chatId: this.chatId, afterSeq: this.lastSeq });
  }

  /** The answer to a resume: done, or reload over REST when it could not be answered. */
  async resumed(frame) {
    this.resuming = false;
    if (frame.recovered) {
      if (this.early.size) this.resume();
      return;
    }
    const messages = await all(`${this.historyPath}/${this.chatId}`, this.token);
    for (const message of messages) this.receive(message);
  }

  /** The connection came back: resume, then send what was never acknowledged. */
  reconnected() {
    this.resuming = false;
    this.resume();
    this.flush();
  }

  send(content) {
    const id = newClientMsgId();
    const node = el(
      "li",
      { class: "message mine pending", "data-client-msg-id": id },
      el("span", { class: "visually-hidden" }, `${this.labels.mine}: `),
      el("p", { class: "body" }, content),
      el("p", { class: "meta" }, el("span", { class: "receipt" }, "Sending…")),
    );
    this.pending.set(id, { content, seq: null, node });
    this.root.append(node);
    node.scrollIntoView({ block: "nearest" });
    this.flush();
  }

  /** Send every message not yet acknowledged (same ids: the server stores each once). */
  flush() {
    for (const [id, item] of this.pending) {
      if (item.seq !== null) continue;
      if (!this.live.send({ type: "message.send", chatId: this.chatId, clientMsgId: id, content: item.content })) return;
    }
  }

  ack(frame) {
    const item = this.pending.get(frame.clientMsgId);
    if (!item) return;
    item.seq = frame.seq;
    if (frame.seq <= this.lastSeq) {
      item.node.remove();
      this.pending.delete(frame.clientMsgId);
    } else if (frame.seq > this.lastSeq + 1) {
      this.resume();
    }
  }

  /** An `error` answering one of my sends: that message was refused and will not be resent. */
  refused(clientMsgId, message) {
    const item = this.pending.get(clientMsgId);
    if (!item) return false;
    this.pending.delete(clientMsgId);
    item.node.classList.add("failed");
    item.node.querySelector(".receipt").textContent = `Not sent: ${message}`;
    return true;
  }

  /** A `read` frame from the other side: my messages up to seq were delivered or seen. */
  read(frame) {
    if (frame.status === "seen") this.theirsRead = Math.max(this.theirsRead, frame.seq);
    this.theirsDelivered = Math.max(this.theirsDelivered, frame.seq);
    for (const seq of this.receipts.keys()) this.showReceipt(seq);
  }

  showReceipt(seq, status = "sent") {
    let best = status;
    if (seq <= this.theirsDelivered && RANK[best] < RANK.delivered) best = "delivered";
    if (seq <= this.theirsRead) best = "seen";
    const node = this.receipts.get(seq);
    if (RANK[best] > RANK[node.dataset.status ?? "sent"] || !node.dataset.status) {
      node.dataset.status = best;
      node.textContent = RECEIPT[best];
    }
  }

  /** Tell the other side I have seen their messages (when this chat is on screen). */
  markSeen() {
    if (this.lastTheirs > this.seenSent && this.live.send({ type: "read", chatId: this.chatId, seq: this.lastSeq })) {
      this.seenSent = this.lastTheirs;
    }
  }
}

/** Typing notices: `on` when the user types, `off` after a pause or on sending. */
export class TypingSignal {
  constructor(send) {
    this.send = send;
    this.on = false;
    this.timer = null;
  }
  typed() {
    if (!this.on) this.on = this.send(true);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.stop(), 3000);
  }
  stop() {
    clearTimeout(this.timer);
    if (this.on) this.send(false);
    this.on = false;
  }
}

/** Show "… is typing" for a while after a `typing` frame (the other side may vanish). */
export class TypingNotice {
  constructor(node) {
    this.node = node;
    this.timer = null;
  }
  show(on, who) {
    clearTimeout(this.timer);
    this.node.textContent = on ? `${who} is typing…` : "";
    if (on) this.timer = setTimeout(() => (this.node.textContent = ""), 8000);
  }
}


/** The message box: Enter sends (Shift+Enter for a new line), typing is signalled. */
export function wireComposer(form, typingSignal, currentThread) {
  const box = form.elements.message;
  box.addEventListener("input", () => typingSignal().typed());
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = box.value.trim();
    const thread = currentThread();
    if (!content || !thread) return;
    typingSignal().stop();
    thread.send(content);
    box.value = "";
  });
}
