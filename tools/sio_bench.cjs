// The client side of tools/bench_socketio.py: agents and customers as stock socket.io-client
// sockets in this one process, set up the way the original front ends do it (REST to go
// available and to open a chat, then joinNotification / joinChat), then the phases of the
// config: a closed loop (each customer sends its next message once the agent received the
// previous one) and fixed offered rates (open loop; latency from the scheduled send time, so a
// stall is not hidden), each once a line on stdin says the server has settled. With a `floor`
// URL (tools/_sio_floor.py: hypercorn and the bare protocol, no application), then the
// transport floor: the real sockets are closed, and once a line on
// stdin says the real server has stopped, the same numbers of agents and customers connect to
// the floor (websocket only, paired by the `query` option: customer n with agent n % agents)
// and run the same closed loop. Prints JSON lines: {progress}, {phase result}, {done}.
"use strict";

const fs = require("node:fs");
const { performance } = require("node:perf_hooks");
const { io } = require("socket.io-client");

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const ID_DIGITS = 12;
const ACK_MS = 30000;
const DRAIN_MS = 30000;
const SETTLE_MS = 60000;

const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const content = (n) => String(n).padStart(ID_DIGITS, "0").padEnd(config.size, "x");

// options: `auth` and `transports` for the real server, `query` and `transports` for the floor.
function connect(url, options) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { reconnection: false, timeout: ACK_MS, ...options });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
    socket.on("error", (error) => out({ error }));
  });
}

async function call(socket, event, ...args) {
  const answer = await socket.timeout(ACK_MS).emitWithAck(event, ...args);
  if (answer && answer.error) throw new Error(`${event}: ${answer.error.message}`);
  return answer;
}

async function rest(method, path, token, body) {
  const response = await fetch(config.url + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

// --- what is measured: message number -> when it was (due to be) sent ----------------------------

const inflight = new Map();
let nextNumber = 1;
const counts = { acked: 0, refused: 0, received: 0 };

function received({ message }) {
  if (message.senderRole !== "customer") return;
  counts.received += 1;
  const n = Number(message.content.slice(0, ID_DIGITS));
  const entry = inflight.get(n);
  if (entry !== undefined) {
    inflight.delete(n);
    entry(performance.now());
  }
}

// Resolves with the latency (ms) once the agent received it, or null after DRAIN_MS.
function send(customer, due) {
  const n = nextNumber++;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      inflight.delete(n);
      resolve(null);
    }, DRAIN_MS);
    inflight.set(n, (at) => {
      clearTimeout(timer);
      resolve(at - due);
    });
    customer.socket.emit("sendMessage", { chatId: customer.chatId, message: content(n) }, (ack) => {
      if (ack && ack.message) counts.acked += 1;
      else counts.refused += 1;
    });
  });
}

// --- set-up --------------------------------------------------------------------------------------

const connectReal = (token) => connect(config.url, { auth: { token }, transports: config.transports });

async function setup() {
  let assigned = 0;
  const joins = [];
  const sockets = [];
  for (const token of config.agents) {
    const socket = await connectReal(token);
    sockets.push(socket);
    socket.on("messageReceived", received);
    socket.on("chatCreated", (chat) => {
      assigned += 1;
      joins.push(call(socket, "joinChat", { chatId: chat.id, userType: "agent" }));
    });
    await call(socket, "joinNotification");
    await rest("PUT", "/profile/agent/available", token);
  }
  const customers = [];
  for (const token of config.customers) {
    const socket = await connectReal(token);
    sockets.push(socket);
    const chat = await rest("POST", "/chats/customer", token, { title: "bench" });
    if (!chat.agent) throw new Error("no agent had room for a bench chat");
    await call(socket, "joinChat", { chatId: chat.id, userType: "customer" });
    customers.push({ socket, chatId: chat.id });
    out({ progress: "setup", done: customers.length, total: config.customers.length });
  }
  const deadline = performance.now() + ACK_MS;
  while (assigned < customers.length) {
    if (performance.now() > deadline) throw new Error(`only ${assigned} chatCreated events`);
    await sleep(10);
  }
  await Promise.all(joins);
  return { customers, sockets };
}

// Resolves once stdin has a line: before a fixed rate, the server has finished what the phase
// before left it (delivery receipts written late); before the floor, the real server has
// stopped and the floor has the machine.
function goAhead(what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no go-ahead for ${what}`)), SETTLE_MS);
    process.stdin.resume();
    process.stdin.once("data", () => {
      clearTimeout(timer);
      process.stdin.pause();
      resolve();
    });
  });
}

// No REST and no joinChat: the floor pairs customer n with agent n % agents by the query.
async function setupFloor() {
  const floorSocket = (role, n) =>
    connect(config.floor, { query: { role, n: String(n) }, transports: ["websocket"] });
  for (let n = 0; n < config.agents.length; n++) {
    const socket = await floorSocket("agent", n);
    socket.on("messageReceived", received);
  }
  const customers = [];
  for (let n = 0; n < config.customers.length; n++) {
    // As long as a real chat id, so the frames are the same size.
    customers.push({ socket: await floorSocket("customer", n), chatId: String(n).padStart(24, "0") });
    out({ progress: "floor setup", done: customers.length, total: config.customers.length });
  }
  return customers;
}

// --- the phases ----------------------------------------------------------------------------------

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function ticker(phase, total) {
  const started = { ...counts };
  return setInterval(() => {
    out({ progress: phase, done: counts.received - started.received, total });
  }, 250);
}

// Warm up: conversations activated, caches and JIT filled; not measured.
async function warmUp(customers) {
  await Promise.all(customers.map((customer) => send(customer, performance.now())));
}

// phase: "closed loop" (the real server) or "floor"; its result record is {phase: phase, ...}.
async function closedLoop(customers, seconds, phase) {
  out({ phase: "measuring", loop: phase });
  const cpu = process.cpuUsage();
  const began = performance.now();
  const end = began + seconds * 1000;
  const before = { ...counts };
  let delivered = 0;
  const timer = ticker(phase, null);
  const loop = async (customer) => {
    while (performance.now() < end) {
      const latency = await send(customer, performance.now());
      if (latency === null) throw new Error("a message never reached its agent");
      if (performance.now() <= end) delivered += 1;
    }
  };
  await Promise.all(customers.flatMap((customer) => Array.from({ length: config.window }, () => loop(customer))));
  clearInterval(timer);
  out({
    phase,
    seconds,
    delivered,
    perSecond: delivered / seconds,
    clientCpuSeconds: (({ user, system }) => (user + system) / 1e6)(process.cpuUsage(cpu)),
    acked: counts.acked - before.acked,
    refused: counts.refused - before.refused,
  });
}

async function fixedRate(customers, rate, seconds) {
  const total = Math.round(rate * seconds);
  const start = performance.now() + 100;
  const before = { ...counts };
  const timer = ticker(`${rate}/s`, total);
  const waits = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const ahead = due - performance.now();
    if (ahead >= 1) await sleep(ahead);
    waits.push(send(customers[i % customers.length], due));
  }
  const latencies = (await Promise.all(waits)).filter((latency) => latency !== null);
  clearInterval(timer);
  latencies.sort((a, b) => a - b);
  out({
    phase: "fixed rate",
    rate,
    offered: total,
    delivered: latencies.length,
    acked: counts.acked - before.acked,
    refused: counts.refused - before.refused,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  });
}

async function main() {
  const { customers, sockets } = await setup();
  out({ phase: "ready", customers: customers.length, agents: config.agents.length });
  await warmUp(customers);
  await closedLoop(customers, config.seconds, "closed loop");
  for (const rate of config.rates) {
    out({ phase: "settle" });
    await goAhead(`the ${rate}/s phase`);
    await fixedRate(customers, rate, config.seconds);
  }
  if (config.floor) {
    for (const socket of sockets) socket.disconnect();
    out({ phase: "floor next" });
    await goAhead("the floor phase");
    const floor = await setupFloor();
    await warmUp(floor);
    await closedLoop(floor, config.seconds, "floor");
  }
  out({ phase: "done" });
  process.exit(0);
}

main().catch((error) => {
  out({ failed: String(error && error.stack ? error.stack : error) });
  process.exit(1);
});
