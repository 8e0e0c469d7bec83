"""The stock Node.js Socket.IO client, installed once into `.node/` at the repository root
(git-ignored) for the interop tests (tests/sio) and the Socket.IO benchmark."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / ".node"
SOCKET_IO_CLIENT = "4.8.1"  # pinned: the interop tests speak to exactly this client
INSTALL_SECONDS = 300


class NodeMissing(Exception):
    """Node.js or npm is not installed; the message says which."""


def install() -> Path:
    """The node_modules folder holding the pinned client; npm runs only when it is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        raise NodeMissing(
            f"{missing} not found on PATH: the Socket.IO interop tests and benchmark need "
            f"Node.js and npm to run the stock socket.io-client {SOCKET_IO_CLIENT}"
        )
    modules = NODE_DIR / "node_modules"
    manifest = modules / "socket.io-client" / "package.json"
    NODE_DIR.mkdir(exist_ok=True)
    # `make test` runs two pytest workers, each of which may find the client missing on a fresh
    # clone: one installs while the other waits, then finds it there. Two npm runs into one
    # folder at once can leave it half-written.
    with (NODE_DIR / ".install-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(manifest):
            return modules
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(NODE_DIR),
                f"socket.io-client@{SOCKET_IO_CLIENT}",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ],
            check=True,
            capture_output=True,
            timeout=INSTALL_SECONDS,
        )
    return modules


def _installed(manifest: Path) -> bool:
    return manifest.exists() and json.loads(manifest.read_text())["version"] == SOCKET_IO_CLIENT


def node_env(modules: Path) -> dict[str, str]:
    """The environment a Node script finds the client in (`require("socket.io-client")`)."""
    return {**os.environ, "NODE_PATH": str(modules)}
