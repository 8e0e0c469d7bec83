"""The stock client's install into `.node/`: `make test`'s two pytest workers may both find it
missing on a fresh clone; npm must then run once, not twice into one folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools._node import SOCKET_IO_CLIENT

# A stand-in for npm (unit test of the install's locking, not of npm): it logs its run, takes a
# moment, as a real install does, so that a second install started beside it finds the client
# still missing, then writes the manifest where `install` looks.
FAKE_NPM = f"""#!{sys.executable}
import json, pathlib, sys, time
prefix = pathlib.Path(sys.argv[sys.argv.index("--prefix") + 1])
with open(prefix.parent / "npm-runs.log", "a") as log:
    log.write("run\\n")
time.sleep(1)
package = prefix / "node_modules" / "socket.io-client"
package.mkdir(parents=True, exist_ok=True)
(package / "package.json").write_text(json.dumps({{"version": "{SOCKET_IO_CLIENT}"}}))
"""

INSTALL = """
import sys
from pathlib import Path
import tools._node as node
node.NODE_DIR = Path(sys.argv[1])
print(node.install())
"""


def test_two_installs_at_once_run_npm_once(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("npm", FAKE_NPM), ("node", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    root = Path(__file__).resolve().parents[2]
    installs = [
        subprocess.Popen(
            [sys.executable, "-c", INSTALL, str(tmp_path / "node")],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [install.communicate(timeout=60)[0] for install in installs]
    assert [install.returncode for install in installs] == [0, 0]
    assert {output.strip() for output in outputs} == {str(tmp_path / "node" / "node_modules")}
    assert (tmp_path / "npm-runs.log").read_text() == "run\n"
