// Drives stock socket.io-client sockets for the Python tests: one JSON command per stdin line,
// one JSON line per thing a socket sees on stdout. Nothing here waits on its own; every
// wait is the Python side's (bounded there), except acks, which time out here.
//
// Commands: {op: "connect", name, url, opts}, {op: "emit", name, event, args, ack, ref},
//           {op: "close", name}, {op: "exit"}.
// Output:   {name, event, ...}: "open" {transport}, "upgrade" {transport}, "connect" {id},
//           "connect_error" {message}, "disconnect" {reason}, "ack" {ref, args | timeout},
//           and every server event as {name, event, args}.
"use strict";

const readline = require("node:readline");
const { io } = require("socket.io-client");

const ACK_TIMEOUT_MS = 10000;
const sockets = new Map();

function out(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

function connect({ name, url, opts }) {
  const socket = io(url, { reconnection: false, timeout: ACK_TIMEOUT_MS, forceNew: true, ...opts });
  sockets.set(name, socket);
  socket.io.on("open", () => {
    const engine = socket.io.engine;
    out({ name, event: "open", transport: engine.transport.name });
    engine.on("upgrade", (transport) => out({ name, event: "upgrade", transport: transport.name }));
  });
  socket.on("connect", () => out({ name, event: "connect", id: socket.id }));
  socket.on("connect_error", (error) => out({ name, event: "connect_error", message: error.message }));
  socket.on("disconnect", (reason) => out({ name, event: "disconnect", reason }));
  socket.onAny((event, ...args) => out({ name, event, args }));
}

function emit({ name, event, args = [], ack = false, ref = null }) {
  const socket = sockets.get(name);
  if (!ack) {
    socket.emit(event, ...args);
    return;
  }
  socket.timeout(ACK_TIMEOUT_MS).emit(event, ...args, (error, ...answer) => {
    out(error ? { name, event: "ack", ref, timeout: true } : { name, event: "ack", ref, args: answer });
  });
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line);
  switch (command.op) {
    case "connect":
      connect(command);
      break;
    case "emit":
      emit(command);
      break;
    case "close":
      sockets.get(command.name).disconnect();
      break;
    case "exit":
      for (const socket of sockets.values()) socket.disconnect();
      process.exit(0);
  }
});
lines.on("close", () => process.exit(0));
out({ name: null, event: "ready" });
