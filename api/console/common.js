// What every console page shares: building DOM, the REST client, the token, the live socket.
//
// Markup is only ever built with createElement and textContent (the pages run under Trusted
// Types, so a string can never become markup). The token lives in sessionStorage: it survives a
// reload of the tab (an agent mid-shift keeps their chats), is never shared with other tabs or
// written to disk by the page, is never in a URL, and is never sent by the browser on its own
// (no cookie: nothing for a cross-site request to ride on).

/** Build an element: el("button", {class: "x", onclick: f, "aria-label": "y"}, "text", child). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Replace a node's children, keeping keyboard focus on the element with the same data-key. */
export function replaceChildren(node, ...children) {
  const focused = document.activeElement;
  const key = focused && node.contains(focused) ? focused.dataset.key : undefined;
  node.replaceChildren(...children.flat());
  if (key) node.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One REST call; throws ApiError with the server's message on any error answer. */
export async function api(method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "network", "the server cannot be reached; check your connection");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error;
    throw new ApiError(
      response.status,
      error ? error.code : "http_" + response.status,
      error ? error.message : `${response.status} ${response.statusText}`,
    );
  }
  return { data, next: response.headers.get("X-Next-Cursor") };
}

/** Every page of a list (lists are paged by X-Next-Cursor). */
export async function all(path, token) {
  const items = [];
  let cursor = null;
  do {
    const separator = path.includes("?") ? "&" : "?";
    const page = await api("GET", `${path}${separator}limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { token });
    items.push(...page.data);
    cursor = page.next;
  } while (cursor);
  return items;
}

/** The signed-in user of one page kind, kept in this tab's sessionStorage. */
export class Session {
  constructor(kind) {
    this.key = `switchboard.${kind}`;
  }
  get token() {
    return sessionStorage.getItem(`${this.key}.token`);
  }
  get user() {
    const raw = sessionStorage.getItem(`${this.key}.user`);
    return raw ? JSON.parse(raw) : null;
  }
  save(token, user) {
    sessionStorage.setItem(`${this.key}.token`, token);
    sessionStorage.setItem(`${this.key}.user`, JSON.stringify(user));
  }
  get(name) {
    return sessionStorage.getItem(`${this.key}.${name}`);
  }
  set(name, value) {
    if (value === null) sessionStorage.removeItem(`${this.key}.${name}`);
    else sessionStorage.setItem(`${this.key}.${name}`, value);
  }
  clear() {
    for (const name of Object.keys(sessionStorage)) {
      if (name.startsWith(`${this.key}.`)) sessionStorage.removeItem(name);
    }
  }
}

const PING_EVERY_MS = 15000;
const PONG_WITHIN_MS = 10000;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];

/**
 * The page's /ws connection: authenticated with the `bearer, <token>` subprotocol, kept alive
 * with pings (a silent network is noticed within 25 s), and reconnected with backoff after any
 * drop. `onOpen` runs on every (re)connection: that is where a page reloads and resumes.
 * States: "connecting", "live", "reconnecting", "signed-out".
 */
export class Live {
  constructor({ token, onFrame, onOpen, onState }) {
    this.token = token;
    this.onFrame = onFrame;
    this.onOpen = onOpen;
    this.onState = onState;
    this.socket = null;
    this.attempt = 0;
    this.stopped = false;
    this.timer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    window.addEventListener("online", () => this.retryNow());
  }

  start() {
    this.stopped = false;
    this.onState("connecting");
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.clearPings();
    if (this.socket) this.socket.close(1000, "signed out");
    this.socket = null;
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Send a frame now; false when there is no open connection (the caller keeps it). */
  send(frame) {
    if (!this.open) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  connect() {
    const url = new URL("/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url, ["bearer", this.token]);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.onState("live");
      this.schedulePing();
      this.onOpen();
    });
    socket.addEventListener("message", (event) => {
      this.schedulePing();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.clearPings();
      if (this.stopped) return;
      if (event.code === 4401) {
        this.stopped = true;
        this.onState("signed-out", event.reason);
        return;
      }
      this.onState("reconnecting", event.reason);
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      this.timer = setTimeout(() => this.connect(), delay * (0.75 + Math.random() / 2));
    });
  }

  retryNow() {
    if (this.stopped || this.socket) return;
    clearTimeout(this.timer);
    this.connect();
  }

  schedulePing() {
    this.clearPings();
    this.pingTimer = setTimeout(() => {
      if (!this.send({ type: "ping" })) return;
      this.pongTimer = setTimeout(() => this.socket && this.socket.close(4000, "no answer"), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  clearPings() {
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
  }
}

const STATE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  "signed-out": "Signed out",
};

/** Show the connection's state in an aria-live element. */
export function showState(node, state, reason) {
  node.dataset.state = state;
  node.textContent = STATE_TEXT[state] + (state === "reconnecting" && reason ? ` (${reason})` : "");
}

/** Wire a sign-in form: calls `signIn(email, password)` and shows its error. */
export function signInForm(form, signIn) {
  const error = $(".form-error", form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = $("button[type=submit]", form);
    button.disabled = true;
    try {
      await signIn(form.elements.email.value.trim(), form.elements.password.value);
      form.reset();
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      button.disabled = false;
    }
  });
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** A fresh client message id: what makes a resend after a reconnect safe. */
export function newClientMsgId() {
  // getRandomValues, unlike randomUUID, also works on a plain-http address other than localhost.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "c-" + Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Announce something to screen readers and show it in the page's notice area. */
export function notify(node, text, kind = "info") {
  const item = el("li", { class: `notice ${kind}` }, text);
  node.prepend(item);
  while (node.children.length > 5) node.lastElementChild.remove();
}
