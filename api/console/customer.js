// The demo customer (development mode): a shop token minted by /dev/customer-token, then the
// chat widget a shop would embed: open a chat, see the queue position and wait, talk to the
// agent, with typing and seen receipts, resuming after a drop like the agent's desk.

import { $, Live, Session, api, duration, el, notify, showState } from "./common.js";
import { Thread, TypingNotice, TypingSignal, wireComposer } from "./conversation.js";

const session = new Session("customer");
let live = null;
let chat = null; // the chat as last heard of
let thread = null;
let typingNotice = null;
let typingSignal = null;

function start() {
  $("#start").hidden = true;
  $("#chat").hidden = false;
  $("#connection").hidden = false;
  $("#leave").hidden = false;
  typingNotice = new TypingNotice($("#typing"));
  typingSignal = new TypingSignal((on) => chat !== null && live.send({ type: "typing", chatId: chat.id, on }));
  live = new Live({
    token: session.token,
    onFrame,
    onOpen,
    onState: (state, reason) => {
      showState($("#connection"), state, reason);
      if (state === "signed-out") leave();
    },
  });
  live.start();
}

/** On every (re)connection: find or open the chat, then resume it. */
function onOpen() {
  if (chat && chat.status === "resolved") return; // a new chat only when asked for
  live.send({
    type: "chat.open",
    title: session.get("title") || "Support chat",
    priority: session.get("priority") || "medium",
  });
}

function useChat(found) {
  if (!thread || thread.chatId !== found.id) {
    thread = new Thread({
      chatId: found.id,
      live,
      isMine: (message) => message.senderRole === "customer",
      historyPath: "/messages/customer",
      token: session.token,
      labels: { mine: "You", theirs: "Agent" },
    });
    $("#transcript").replaceChildren(thread.root);
  }
  chat = found;
  $("#chat-title").textContent = found.title;
  showChatState();
}

function showChatState(extra) {
  const state = $("#chat-state");
  const resolved = chat.status === "resolved";
  $("#message").disabled = resolved;
  $("#composer button").disabled = resolved;
  $("#new-chat").hidden = !resolved;
  if (extra) state.textContent = extra;
  else if (resolved) state.textContent = "This chat is closed. Thank you!";
  else if (chat.status === "open" && chat.agent) state.textContent = `You are chatting with ${chat.agent.name}.`;
  else if (chat.status === "pending" && chat.agent === null) state.textContent = "Waiting for the next agent…";
  else state.textContent = "Waiting for an agent…";
  state.dataset.status = chat.status;
}

function onFrame(frame) {
  switch (frame.type) {
    case "chat.opened":
      useChat(frame.chat);
      thread.reconnected();
      return;
    case "chat.assigned":
      if (chat && frame.chat.id === chat.id) useChat(frame.chat);
      return;
    case "chat.status":
      if (!chat || frame.chatId !== chat.id) return;
      chat = { ...chat, status: frame.status, agent: frame.status === "open" ? chat.agent : null };
      showChatState();
      return;
    case "queue.position":
      if (chat && frame.chatId === chat.id && chat.status !== "open") {
        showChatState(
          `You are number ${frame.position} in the queue; about ${duration(frame.etaSeconds)} to wait.`,
        );
        $("#chat-state").dataset.position = String(frame.position);
      }
      return;
    case "message":
      if (thread && frame.chatId === thread.chatId) {
        thread.receive(frame.message);
        if (document.visibilityState === "visible") thread.markSeen();
      }
      return;
    case "ack":
      if (thread && frame.chatId === thread.chatId) thread.ack(frame);
      return;
    case "resumed":
      if (thread && frame.chatId === thread.chatId) thread.resumed(frame).catch((error) => notify($("#notices"), error.message, "error"));
      return;
    case "typing":
      if (chat && frame.chatId === chat.id) typingNotice.show(frame.on, "The agent");
      return;
    case "read":
      if (thread && frame.chatId === thread.chatId) thread.read(frame);
      return;
    case "error":
      if (!(thread && thread.refused(frame.ref, frame.message))) notify($("#notices"), frame.message, "error");
      return;
    default:
  }
}

function leave() {
  live?.stop();
  session.clear();
  location.reload();
}

function wire() {
  $("#customer-id").value = `demo-${Math.random().toString(36).slice(2, 8)}`;
  const form = $("#start-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $(".form-error", form);
    error.textContent = "";
    try {
      const name = form.elements.name.value.trim();
      const customerId = form.elements.customerId.value.trim();
      const { data } = await api("POST", "/dev/customer-token", { body: { customerId, name } });
      session.save(data.token, { customerId, name });
      session.set("title", form.elements.subject.value.trim() || "Support chat");
      session.set("priority", form.elements.priority.value);
      start();
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  $("#leave").addEventListener("click", leave);
  $("#new-chat").addEventListener("click", () => {
    chat = null;
    thread = null;
    $("#transcript").replaceChildren();
    onOpen();
  });
  wireComposer($("#composer"), () => typingSignal, () => thread);
  document.addEventListener("visibilitychange", () => {
    if (thread && document.visibilityState === "visible") thread.markSeen();
  });
  if (session.token) start();
  else $("#start").hidden = false;
}

wire();
