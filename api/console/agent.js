// The agent's desk: status, assigned chats with unread counts, the live conversation with
// typing and seen receipts, resolve or set pending. After a drop the page reconnects, reloads
// its chats, resumes each from the last seq it shows and resends what was not acknowledged.

import { $, Live, Session, all, api, el, notify, replaceChildren, showState, signInForm } from "./common.js";
import { Thread, TypingNotice, TypingSignal, wireComposer } from "./conversation.js";

const session = new Session("agent");
const chats = new Map(); // chat id -> {chat, thread, unread}
// Counts the pushes that add or take away a chat, so that a reload's list, asked for before one
// of them, does not undo it (a chat assigned while the list was on its way is kept).
let pushes = 0;
const changedAt = new Map(); // chat id -> the push count when a push last added or dropped it
let live = null;
let selected = null;
let typingNotice = null;
let typingSignal = null;

const STATUS_TEXT = {
  available: "You are available: new chats come to you.",
  busy: "You are busy: at your maximum load, no new chats until one ends.",
  away: "You are away: no new chats.",
};

function start() {
  const user = session.user;
  $("#sign-in").hidden = true;
  $("#desk").hidden = false;
  for (const id of ["#connection", "#whoami", "#sign-out"]) $(id).hidden = false;
  $("#whoami").textContent = `${user.name} (${user.email})`;
  typingNotice = new TypingNotice($("#typing"));
  typingSignal = new TypingSignal((on) => selected !== null && live.send({ type: "typing", chatId: selected, on }));
  live = new Live({
    token: session.token,
    onFrame,
    onOpen: () => reload().catch(failed),
    onState: (state, reason) => {
      showState($("#connection"), state, reason);
      if (state === "signed-out") signOut(reason || "your session ended; sign in again");
    },
  });
  live.start();
}

function failed(error) {
  if (error.status === 401) signOut("your session ended; sign in again");
  else notify($("#notices"), error.message, "error");
}

/** On every (re)connection: status and chats from REST, then resume each chat. */
async function reload() {
  const token = session.token;
  const asked = pushes;
  const stats = await api("GET", "/dashboard/statistics", { token });
  showStatus(stats.data.status);
  const open = await all("/chats/agent?status=open", token);
  const ids = new Set(open.map((chat) => chat.id));
  const newer = (id) => (changedAt.get(id) ?? -1) >= asked;
  for (const id of [...chats.keys()]) {
    if (!ids.has(id) && !newer(id)) drop(id, `"${chats.get(id).chat.title}" is no longer yours`);
  }
  for (const chat of open) {
    if (!chats.has(chat.id) && newer(chat.id)) continue; // taken away since the list was asked for
    const entry = chats.get(chat.id) ?? add(chat, chat.agentUnreadCount);
    entry.chat = chat;
    entry.thread.reconnected();
  }
  if (selected === null && chats.size) select(chats.keys().next().value);
  renderList();
}

function add(chat, unread = 0) {
  const thread = new Thread({
    chatId: chat.id,
    live,
    isMine: (message) => message.senderId === session.user.id,
    historyPath: "/messages/agent",
    token: session.token,
    labels: { mine: "You", theirs: "Customer" },
  });
  const entry = { chat, thread, unread };
  chats.set(chat.id, entry);
  return entry;
}

function drop(chatId, why) {
  const entry = chats.get(chatId);
  if (!entry) return;
  chats.delete(chatId);
  notify($("#notices"), why);
  if (selected === chatId) {
    selected = null;
    const next = chats.keys().next();
    if (!next.done) select(next.value);
    else renderConversation();
  }
  renderList();
}

function onFrame(frame) {
  const entry = frame.chatId ? chats.get(frame.chatId) : undefined;
  switch (frame.type) {
    case "message":
      if (!entry) return;
      if (entry.thread.receive(frame.message) && !seenNow(entry)) entry.unread += 1;
      if (seenNow(entry)) entry.thread.markSeen();
      renderList();
      return;
    case "ack":
      entry?.thread.ack(frame);
      return;
    case "resumed":
      entry?.thread.resumed(frame).catch(failed);
      return;
    case "chat.assigned": {
      changedAt.set(frame.chat.id, pushes++);
      const fresh = !chats.has(frame.chat.id);
      const added = chats.get(frame.chat.id) ?? add(frame.chat);
      added.chat = frame.chat;
      if (fresh) {
        added.thread.resume();
        notify($("#notices"), `New chat: "${frame.chat.title}"`);
      }
      if (selected === null) select(frame.chat.id);
      renderList();
      return;
    }
    case "chat.unassigned":
      changedAt.set(frame.chatId, pushes++);
      if (entry) drop(frame.chatId, `"${entry.chat.title}" was reassigned: ${frame.reason}`);
      return;
    case "chat.status":
      if (frame.status !== "open") changedAt.set(frame.chatId, pushes++);
      if (entry && frame.status !== "open") drop(frame.chatId, `"${entry.chat.title}" is ${frame.status}`);
      return;
    case "agent.status":
      showStatus(frame.status, frame.reason);
      return;
    case "typing":
      if (frame.chatId === selected) typingNotice.show(frame.on, "The customer");
      return;
    case "read":
      entry?.thread.read(frame);
      return;
    case "error":
      for (const { thread } of chats.values()) if (thread.refused(frame.ref, frame.message)) return;
      notify($("#notices"), frame.message, "error");
      return;
    default:
  }
}

function seenNow(entry) {
  return entry.chat.id === selected && document.visibilityState === "visible";
}

function showStatus(status, reason) {
  for (const input of document.querySelectorAll("input[name=status]")) {
    input.checked = input.value === (status === "busy" ? "available" : status);
  }
  $("#status-text").textContent = STATUS_TEXT[status] + (reason && status !== "available" ? ` (${reason})` : "");
  $("#status-text").dataset.status = status;
}

function renderList() {
  const items = [...chats.values()].map(({ chat, unread }) =>
    el(
      "li",
      {},
      el(
        "button",
        {
          type: "button",
          class: "chat-item",
          "data-key": `chat-${chat.id}`,
          "data-chat-id": chat.id,
          "aria-current": chat.id === selected ? "true" : false,
          onclick: () => select(chat.id),
        },
        el("span", { class: "title" }, chat.title),
        el("span", { class: `priority ${chat.priority}` }, chat.priority),
        unread ? el("span", { class: "unread", "aria-label": `${unread} unread` }, String(unread)) : null,
      ),
    ),
  );
  replaceChildren($("#chat-list"), items);
  $("#no-chats").hidden = chats.size > 0;
}

function select(chatId) {
  selected = chatId;
  const entry = chats.get(chatId);
  entry.unread = 0;
  entry.thread.markSeen();
  typingNotice.show(false);
  renderConversation();
  renderList();
}

function renderConversation() {
  const entry = selected ? chats.get(selected) : null;
  $("#chat-title").textContent = entry ? entry.chat.title : "No chat selected";
  $("#transcript").replaceChildren(...(entry ? [entry.thread.root] : []));
  for (const control of [$("#resolve"), $("#set-pending"), $("#message"), $("#composer button")]) {
    control.disabled = !entry;
  }
}

async function setChatStatus(status) {
  const chatId = selected;
  if (!chatId) return;
  try {
    await api("PUT", `/chats/agent/${chatId}/${status}`, { token: session.token });
    drop(chatId, `"${chats.get(chatId)?.chat.title ?? "The chat"}" is ${status}`);
  } catch (error) {
    failed(error);
  }
}

function signOut(why) {
  const token = session.token;
  live?.stop();
  live = null;
  session.clear();
  chats.clear();
  selected = null;
  if (token && !why) api("POST", "/auth/logout", { token }).catch(() => {});
  location.reload();
}

function wire() {
  signInForm($("#sign-in-form"), async (email, password) => {
    const { data } = await api("POST", "/auth/login", { body: { email, password } });
    if (data.user.role !== "agent") {
      throw new Error(`${data.user.email} is not an agent: an admin must approve the account first`);
    }
    session.save(data.token, data.user);
    start();
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#status-choice").addEventListener("change", (event) => {
    if (!live.send({ type: "status.set", status: event.target.value })) {
      notify($("#notices"), "Not connected: your status will not change until the connection is back", "error");
    }
  });
  $("#resolve").addEventListener("click", () => setChatStatus("resolved"));
  $("#set-pending").addEventListener("click", () => setChatStatus("pending"));
  wireComposer($("#composer"), () => typingSignal, () => (selected ? chats.get(selected).thread : null));
  document.addEventListener("visibilitychange", () => {
    const entry = selected && chats.get(selected);
    if (entry && seenNow(entry)) entry.thread.markSeen();
  });
  if (session.token) start();
  else $("#sign-in").hidden = false;
}

wire();
