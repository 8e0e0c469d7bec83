// The admin's floor view: every agent (status, connections, load against max load, idle time,
// chats) and the queue in serving order, live from the `floor` frames of /ws; counters from the
// statistics endpoint; reassign, close, set max load, force away, and the activity history.

import { $, Live, Session, api, duration, el, replaceChildren, showState, signInForm } from "./common.js";

const session = new Session("admin");
const agents = new Map(); // id -> agent as in the last floor frame, with `at` (when received)
let queue = [];
let queueLength = 0;
let live = null;
let statsTimer = null;
let statsDue = 0;

const STATS_EVERY_MS = 2000;
const COUNTERS = [
  ["queuedChats", "Waiting"],
  ["openChats", "Open chats"],
  ["pendingChats", "Pending"],
  ["resolvedChats", "Resolved"],
  ["agentsOnline", "Agents online"],
  ["agentsAvailable", "Available"],
  ["agentsBusy", "Busy"],
  ["agentsAway", "Away"],
  ["customers", "Customers"],
];

function start() {
  $("#sign-in").hidden = true;
  $("#floor").hidden = false;
  for (const id of ["#connection", "#whoami", "#sign-out"]) $(id).hidden = false;
  $("#whoami").textContent = session.user.email;
  live = new Live({
    token: session.token,
    onFrame,
    onOpen: () => {
      live.send({ type: "floor.watch" });
      refreshStats();
    },
    onState: (state, reason) => {
      showState($("#connection"), state, reason);
      if (state === "signed-out") signOut(reason || "your session ended");
    },
  });
  live.start();
  setInterval(tick, 1000);
}

function onFrame(frame) {
  if (frame.type === "floor") applyFloor(frame);
  else if (frame.type === "error") say(frame.message, "error");
}

function applyFloor(frame) {
  const at = performance.now();
  if (frame.full) agents.clear();
  for (const agent of frame.agents) agents.set(agent.id, { ...agent, at });
  for (const id of frame.removedAgents) agents.delete(id);
  if (frame.queue !== null) queue = frame.queue.map((entry) => ({ ...entry, at }));
  queueLength = frame.queueLength;
  renderAgents(frame.full ? null : new Set(frame.agents.map((agent) => agent.id)));
  if (frame.queue !== null) renderQueue();
  refreshStatsSoon();
}

// --- agents --------------------------------------------------------------------------------

function renderAgents(changed) {
  const list = $("#agents");
  const ordered = [...agents.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  const cards = ordered.map((agent) => {
    const existing = list.querySelector(`li[data-agent-id="${agent.id}"]`);
    if (existing && changed && !changed.has(agent.id)) return existing;
    return agentCard(agent, existing);
  });
  replaceChildren(list, cards);
}

function agentCard(agent, existing) {
  // A max load being typed survives an update of the card.
  const typing = existing?.querySelector("input:focus");
  const maxId = `max-load-${agent.id}`;
  const status = el("span", { class: `badge status-${agent.status}` }, agent.status);
  const presence = agent.connections
    ? `${agent.connections} connection${agent.connections === 1 ? "" : "s"}`
    : "offline";
  const input = el("input", {
    id: maxId,
    name: "maxLoad",
    type: "number",
    min: 1,
    max: 100,
    required: true,
    value: typing ? typing.value : String(agent.maxLoad),
    "data-key": `max-${agent.id}`,
  });
  const form = el(
    "form",
    { class: "max-load", method: "post", novalidate: true, onsubmit: (event) => setMaxLoad(event, agent.id, input) },
    el("label", { for: maxId }, "Max load"),
    input,
    el("button", { type: "submit", "data-key": `set-max-${agent.id}` }, "Set"),
  );
  const card = el(
    "li",
    { class: "agent-card", "data-agent-id": agent.id, "data-status": agent.status },
    el("div", { class: "card-head" }, el("h3", {}, agent.name), status),
    el("p", { class: "email" }, agent.email),
    el("p", { class: "presence", "data-connections": agent.connections }, presence),
    el(
      "div",
      { class: "load" },
      el("span", { class: "load-label" }, `Load ${agent.load} / ${agent.maxLoad}`),
      el("meter", {
        min: 0,
        max: agent.maxLoad,
        low: Math.max(agent.maxLoad - 1, 0.5),
        high: agent.maxLoad,
        optimum: 0,
        value: Math.min(agent.load, agent.maxLoad),
        "aria-label": `Load ${agent.load} of ${agent.maxLoad}`,
      }),
    ),
    el("p", { class: "idle" }, "Idle ", el("span", { "data-seconds": agent.idleSeconds, "data-at": agent.at }, duration(agent.idleSeconds))),
    el("h4", {}, "Chats"),
    agent.chats.length
      ? el("ul", { class: "agent-chats" }, agent.chats.map((chat) => chatItem(chat, agent)))
      : el("p", { class: "empty" }, "No open chats"),
    form,
    el(
      "div",
      { class: "actions" },
      agent.status !== "away"
        ? el("button", { type: "button", "data-key": `away-${agent.id}`, onclick: () => forceAway(agent) }, "Force away")
        : null,
      el(
        "button",
        { type: "button", "data-key": `history-${agent.id}`, onclick: () => showHistory("agent", agent.id, agent.name) },
        "History",
      ),
    ),
  );
  return card;
}

function chatItem(chat, agent) {
  return el(
    "li",
    { "data-chat-id": chat.id },
    el("span", { class: "title" }, chat.title),
    el("span", { class: `priority ${chat.priority}` }, chat.priority),
    chatActions(chat.id, chat.title, agent.id),
  );
}

function chatActions(chatId, title, agentId) {
  return el(
    "span",
    { class: "actions" },
    el(
      "button",
      { type: "button", "data-key": `reassign-${chatId}`, onclick: () => openReassign(chatId, title, agentId) },
      agentId ? "Reassign" : "Assign",
    ),
    el("button", { type: "button", "data-key": `close-${chatId}`, onclick: (event) => closeChat(event.currentTarget, chatId, title) }, "Close"),
    el("button", { type: "button", "data-key": `chat-history-${chatId}`, onclick: () => showHistory("chat", chatId, title) }, "History"),
  );
}

// --- the queue -----------------------------------------------------------------------------

function renderQueue() {
  const rows = queue.map((entry) =>
    el(
      "tr",
      { "data-chat-id": entry.chatId },
      el("td", {}, String(entry.position)),
      el("td", {}, entry.title, entry.requeued ? el("span", { class: "tag" }, "lost its agent") : null),
      el("td", {}, el("span", { class: `priority ${entry.priority}` }, entry.priority)),
      el("td", {}, el("span", { class: `priority ${entry.effectivePriority}` }, entry.effectivePriority)),
      el("td", {}, el("span", { "data-seconds": entry.waitingSeconds, "data-at": entry.at }, duration(entry.waitingSeconds))),
      el("td", {}, chatActions(entry.chatId, entry.title, null)),
    ),
  );
  replaceChildren($("#queue tbody"), rows);
  $("#queue-length").textContent = `(${queueLength})`;
  $("#queue-empty").hidden = queueLength > 0;
  $("#queue").hidden = queueLength === 0;
  const more = $("#queue-more");
  more.hidden = queueLength <= queue.length;
  more.textContent = `… and ${queueLength - queue.length} more waiting`;
}

/** Ages count on between updates, from what the server said when. */
function tick() {
  const now = performance.now();
  for (const node of document.querySelectorAll("[data-seconds]")) {
    node.textContent = duration(Number(node.dataset.seconds) + (now - Number(node.dataset.at)) / 1000);
  }
}

// --- counters ------------------------------------------------------------------------------

function refreshStatsSoon() {
  if (statsTimer !== null) return;
  const wait = Math.max(0, statsDue - performance.now());
  statsTimer = setTimeout(() => {
    statsTimer = null;
    refreshStats();
  }, wait);
}

async function refreshStats() {
  statsDue = performance.now() + STATS_EVERY_MS;
  try {
    const { data } = await api("GET", "/admin/dashboard/statistics", { token: session.token });
    const items = COUNTERS.flatMap(([key, label]) => [
      el("div", { class: "counter", "data-counter": key }, el("dt", {}, label), el("dd", {}, String(data[key]))),
    ]);
    $("#counters").replaceChildren(...items);
  } catch (error) {
    failed(error);
  }
}

// --- actions -------------------------------------------------------------------------------

/** Tell the admin how an action went (an error in red, announced at once). */
function say(text, kind = "ok") {
  $("#alert").textContent = text;
  $("#alert").dataset.kind = kind;
}

function failed(error) {
  if (error.status === 401) signOut("your session ended");
  else say(error.message, "error");
}

async function setMaxLoad(event, agentId, input) {
  event.preventDefault();
  const maxLoad = Number(input.value);
  try {
    await api("PUT", `/admin/agents/${agentId}/max-load`, { token: session.token, body: { maxLoad } });
    say(`Max load of ${agents.get(agentId)?.name ?? agentId} set to ${maxLoad}.`);
  } catch (error) {
    failed(error);
  }
}

async function forceAway(agent) {
  try {
    await api("PUT", `/admin/agents/${agent.id}/status`, { token: session.token, body: { status: "away" } });
    say(`${agent.name} is away; their open chats were re-queued.`);
  } catch (error) {
    failed(error);
  }
}

async function closeChat(button, chatId, title) {
  if (button.dataset.confirm !== "yes") {
    button.dataset.confirm = "yes";
    button.textContent = "Confirm close";
    setTimeout(() => {
      button.dataset.confirm = "";
      button.textContent = "Close";
    }, 5000);
    return;
  }
  try {
    await api("POST", `/admin/chats/${chatId}/close`, { token: session.token });
    say(`"${title}" is closed.`);
  } catch (error) {
    failed(error);
  }
}

/** Who may take a chat now: available, connected, below max load (and not its agent). */
function eligible(currentAgentId) {
  return [...agents.values()]
    .filter((agent) => agent.id !== currentAgentId && agent.status === "available" && agent.connections > 0 && agent.load < agent.maxLoad)
    .sort((a, b) => a.load - b.load || a.name.localeCompare(b.name));
}

let reassigning = null;

function openReassign(chatId, title, agentId) {
  reassigning = chatId;
  const choices = eligible(agentId);
  $("#reassign-title").textContent = agentId ? "Reassign chat" : "Assign chat";
  $("#reassign-chat").textContent = `"${title}"${agentId ? `, now with ${agents.get(agentId)?.name ?? "its agent"}` : ", waiting"}`;
  $("#reassign-agent").replaceChildren(
    ...choices.map((agent) => el("option", { value: agent.id }, `${agent.name} (${agent.load}/${agent.maxLoad})`)),
  );
  $("#reassign-agent").hidden = choices.length === 0;
  $("label[for=reassign-agent]").hidden = choices.length === 0;
  $("#reassign-none").hidden = choices.length > 0;
  $("#reassign-confirm").disabled = choices.length === 0;
  $("#reassign-error").textContent = "";
  $("#reassign-dialog").showModal();
}

async function confirmReassign(event) {
  event.preventDefault();
  const agentId = $("#reassign-agent").value;
  if (!reassigning || !agentId) return;
  try {
    await api("POST", `/admin/chats/${reassigning}/reassign`, { token: session.token, body: { agentId } });
    $("#reassign-dialog").close();
    say(`Reassigned to ${agents.get(agentId)?.name ?? agentId}.`);
  } catch (error) {
    if (error.status === 401) failed(error);
    else {
      // The server names agents by id; the admin knows them by name.
      $("#reassign-error").textContent = `Refused: ${withNames(error.message)}`;
    }
  }
}

// --- history -------------------------------------------------------------------------------

let historyNext = null;

async function showHistory(kind, id, label) {
  $("#history-title").textContent = `History of ${kind === "chat" ? `"${label}"` : label}`;
  $("#history").replaceChildren();
  historyNext = `/admin/${kind === "chat" ? "chats" : "agents"}/${id}/history?limit=50`;
  $("#history-dialog").showModal();
  await loadHistory();
}

async function loadHistory() {
  if (!historyNext) return;
  try {
    const { data, next } = await api("GET", historyNext, { token: session.token });
    const base = historyNext.split("&cursor=")[0];
    historyNext = next ? `${base}&cursor=${encodeURIComponent(next)}` : null;
    $("#history").append(...data.map(historyItem));
    if (!data.length && !$("#history").children.length) $("#history").append(el("li", {}, "Nothing recorded yet."));
  } catch (error) {
    $("#history").append(el("li", { class: "form-error" }, error.message));
    historyNext = null;
  }
  $("#history-more").hidden = historyNext === null;
}

function nameOf(id) {
  return id ? agents.get(id)?.name ?? id : "nobody";
}

/** Reasons name agents by id; show the names the floor knows. */
function withNames(text) {
  let named = text;
  for (const agent of agents.values()) named = named.replaceAll(agent.id, agent.name);
  return named;
}

function historyItem(entry) {
  const when = new Date(entry.at).toLocaleString();
  let what;
  if (entry.kind === "assignment") what = `${nameOf(entry.from)} → ${nameOf(entry.to)}`;
  else if (entry.from || entry.to) what = `${entry.kind.replace("_", " ")}: ${entry.from ?? "—"} → ${entry.to ?? "—"}`;
  else what = entry.kind.replace("_", " ");
  const by = entry.actor === "admin" ? "an admin" : entry.actor === "self" ? "themself" : "the system";
  return el(
    "li",
    {},
    el("time", { datetime: entry.at }, when),
    el("span", { class: "what" }, what),
    el("span", { class: "why" }, `by ${by}: ${withNames(entry.reason)}`),
  );
}

// --- session -------------------------------------------------------------------------------

function signOut(why) {
  const token = session.token;
  live?.stop();
  session.clear();
  if (token && !why) api("POST", "/admin/auth/logout", { token }).catch(() => {});
  location.reload();
}

function wire() {
  signInForm($("#sign-in-form"), async (email, password) => {
    const { data } = await api("POST", "/admin/auth/login", { body: { email, password } });
    session.save(data.token, data.user);
    start();
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#reassign-form").addEventListener("submit", confirmReassign);
  $("#reassign-cancel").addEventListener("click", () => $("#reassign-dialog").close());
  $("#history-close").addEventListener("click", () => $("#history-dialog").close());
  $("#history-more").addEventListener("click", loadHistory);
  if (session.token) start();
  else $("#sign-in").hidden = false;
}

wire();
