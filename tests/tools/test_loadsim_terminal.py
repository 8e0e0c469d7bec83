"""`switchboard loadsim` as a person runs it: in a terminal (a pseudo-terminal here), where the
progress bar is drawn, so a path taken only on a TTY cannot break unseen; and its --plot, with
the warm-up shaded and the measured p50 and p99 drawn."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from tools._sim_report import Summary, draw

RUN_LIMIT = 180.0
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its stdin, stdout and stderr; its exit status and
    everything it wrote (escape sequences included)."""
    controller, terminal = os.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        argv, stdin=terminal, stdout=terminal, stderr=terminal, cwd=cwd, env=env
    )
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + RUN_LIMIT
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"still running after {RUN_LIMIT:.0f}s:\n{output.decode()[-2000:]}"
            ready, _, _ = select.select([controller], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process and its children are done
                break
            if not chunk:
                break
            output += chunk
        return process.wait(timeout=RUN_LIMIT), output.decode(errors="replace")
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_loadsim_in_a_terminal_draws_its_progress_and_plots(tmp_path: Path) -> None:
    plot = tmp_path / "steady.png"
    code, output = run_in_terminal(
        [
            sys.executable, "-m", "tools.cli", "loadsim", "steady", "--spawn",
            "--customers", "4", "--agents", "2", "--rate", "20", "--max-messages", "60",
            "--duration", "60", "--warmup", "1", "--plot", str(plot),
        ],
        tmp_path,
    )  # fmt: skip
    output = _ESCAPE.sub("", output)
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    assert "steady" in output
    assert "sent " in output  # the bar's own line, drawn while the load ran
    assert "no_message_lost" in output  # then the report
    assert f"plot written to {plot}" in output
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_the_plot_shades_the_warm_up_and_draws_p50_and_p99() -> None:
    timeline = [(t / 10, 0.002 + (t % 7) / 1000) for t in range(100)]
    latency = Summary(count=80, p50=4.0, p95=7.0, p99=8.5, max=9.0)
    figure = draw("steady", timeline, [(0.0, 0), (5.0, 2)], warmup=2.0, latency=latency)
    top, bottom = figure.axes
    legend = [text.get_text() for text in top.get_legend().get_texts()]
    assert legend == ["warm-up (not measured)", "p50 4.0 ms", "p99 8.5 ms"]
    for axes in (top, bottom):
        (shade,) = axes.patches
        assert shade.get_x() == 0.0
        assert shade.get_width() == 2.0
    lines = {line.get_label(): line.get_ydata()[0] for line in top.get_lines()}
    assert lines == {"p50 4.0 ms": 4.0, "p99 8.5 ms": 8.5}
