"""What a person sees when Switchboard cannot start: one line, exit status 2, what to do. A port
in use, an invalid setting (each named, with a valid example), a source store that is not there,
a second process on one SQLite database, a Python too old for `make`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from api import Settings
from api._config import EXAMPLES
from store._lock import single_process
from tools.cli import main

ROOT = Path(__file__).resolve().parents[2]
SERVE_START_LIMIT = 60


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("switchboard: error: "), err
    return lines[0].removeprefix("switchboard: error: ")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_port_in_use_says_how_to_choose_another(
    taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", str(taken_port), "--store", "memory://"]) == 2
    line = one_line(capsys)
    assert line.startswith(f"cannot listen on 127.0.0.1:{taken_port}: another process listens")
    assert "--port" in line
    assert "SWITCHBOARD_PORT" in line
    assert "0 picks a free one" in line


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("SWITCHBOARD_PORT", "eighty", "Input should be a valid integer"),
        ("SWITCHBOARD_MODE", "prod", "Input should be 'development' or 'production'"),
        ("SWITCHBOARD_LOG_LEVEL", "loud", "Input should be 'debug', 'info', 'warning' or 'error'"),
        ("SWITCHBOARD_LOG_FORMAT", "xml", "Input should be 'text' or 'json'"),
        (
            "SWITCHBOARD_ALLOWED_ORIGINS",
            '["https://shop.example"',
            "it must be a JSON list of strings or the entries separated by commas",
        ),
        ("SWITCHBOARD_WS_FRAME_BURST", "0", "Input should be greater than or equal to 1"),
        ("SWITCHBOARD_GRACE_PERIOD_SECONDS", "soon", "Input should be a valid number"),
        ("SWITCHBOARD_METRICS_TOKEN", "hunter2", "String should have at least 16 characters"),
    ],
)
def test_an_invalid_variable_is_named_with_a_valid_example(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    problem: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["seed", "--store", "memory://"]) == 2
    line = one_line(capsys)
    # Neither a secret nor a list (whose JSON may be long) is echoed back.
    shown = variable if "TOKEN" in variable or "ORIGINS" in variable else f"{variable}={value}"
    assert line.startswith(f"{shown} is not valid: {problem}"), line
    field = variable.removeprefix("SWITCHBOARD_").lower()
    assert line.endswith(f"; for example {variable}={EXAMPLES[field]}")


@pytest.mark.parametrize(
    "value",
    [
        "https://shop.example, http://localhost:4200",
        '["https://shop.example", "http://localhost:4200"]',
    ],
    ids=["separated by commas", "a JSON list"],
)
def test_a_list_setting_is_a_json_list_or_separated_by_commas(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SWITCHBOARD_ALLOWED_ORIGINS", value)
    monkeypatch.setenv(
        "SWITCHBOARD_TRUSTED_PROXIES",
        value.replace("https://shop.example", "10.0.0.1").replace(
            "http://localhost:4200", "10.0.1.0/24"
        ),
    )
    settings = Settings()
    assert settings.allowed_origins == ["https://shop.example", "http://localhost:4200"]
    assert settings.trusted_proxies == ["10.0.0.1", "10.0.1.0/24"]


def test_an_invalid_variable_is_one_line_from_the_installed_command_too(tmp_path: Path) -> None:
    """As a process, not `main()` in the test's: no module may read the settings on import,
    where an invalid one would be a traceback instead of the line naming it."""
    env = {**os.environ, "SWITCHBOARD_ALLOWED_ORIGINS": '["https://shop.example"'}
    done = subprocess.run(
        [sys.executable, "-m", "tools.cli", "seed", "--store", "memory://"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=SERVE_START_LIMIT,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "switchboard: error: SWITCHBOARD_ALLOWED_ORIGINS is not valid: it must be a JSON list of"
        " strings or the entries separated by commas; for example"
        f" SWITCHBOARD_ALLOWED_ORIGINS={EXAMPLES['allowed_origins']}"
    ]


def test_a_misspelt_variable_is_pointed_out(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWITCHBOARD_PROT", "9000")
    monkeypatch.setenv("SWITCHBOARD_LOGLEVEL", "debug")
    monkeypatch.setenv("SWITCHBOARD_URL", "http://127.0.0.1:8080")  # inspect's, not a typo
    monkeypatch.setenv("SWITCHBOARD_CHAOS_SEED", "7")  # nothing like a setting
    assert main(["seed", "--store", "memory://"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "switchboard: warning: SWITCHBOARD_LOGLEVEL is not a setting; did you mean "
        "SWITCHBOARD_LOG_LEVEL?",
        "switchboard: warning: SWITCHBOARD_PROT is not a setting; did you mean SWITCHBOARD_PORT?",
    ]


def test_every_setting_has_an_example_for_its_error() -> None:
    missing = set(Settings.model_fields) - set(EXAMPLES)
    assert not missing, f"add an example for {missing} to api/_config.EXAMPLES"


def test_an_invalid_flag_is_named_as_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "70000", "--store", "memory://"]) == 2
    assert one_line(capsys) == (
        "--port 70000 is not valid: Input should be less than or equal to 65535; "
        "for example --port 8080"
    )


def test_migrate_refuses_a_source_that_is_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    target = "sqlite://copy.db"
    # The README's old example: three slashes, so an absolute path at the filesystem's root.
    assert main(["migrate", "--from", "sqlite:///data/switchboard.db", "--to", target]) == 2
    line = one_line(capsys)
    assert line.startswith("there is no SQLite database at /data/switchboard.db")
    assert line.endswith("for ./data/switchboard.db write sqlite://data/switchboard.db")
    assert main(["migrate", "--from", "sqlite://data/switchboard.db", "--to", target]) == 2
    assert one_line(capsys).startswith("there is no SQLite database at data/switchboard.db")
    assert not Path("/data/switchboard.db").exists()
    assert list(tmp_path.iterdir()) == []  # neither a source nor a target was made


def test_a_second_process_on_one_sqlite_database_is_refused_naming_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "switchboard.db"
    with single_process(database):
        assert main(["seed", "--data-dir", str(tmp_path)]) == 2
        line = one_line(capsys)
    assert line.startswith(
        f"the database {database} is in use by another process (pid {os.getpid()}"
    )
    assert "one store serves one Switchboard process" in line
    assert main(["seed", "--data-dir", str(tmp_path)]) == 0  # released with its holder


async def test_a_running_server_holds_its_database_until_it_stops(tmp_path: Path) -> None:
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path), "SWITCHBOARD_PORT": "0"}
    command = [sys.executable, "-m", "tools.cli", "serve"]
    first = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert first.stdout is not None
    try:
        output = b""
        with trio.fail_after(SERVE_START_LIMIT):
            while b"Press Ctrl-C to stop." not in output:
                chunk = await first.stdout.receive_some()
                assert chunk, output.decode()
                output += chunk
            second = await trio.run_process(
                command, env=env, capture_stdout=True, capture_stderr=True, check=False
            )
        assert second.returncode == 2
        err = second.stderr.decode().splitlines()
        assert len(err) == 1, err
        assert f"is in use by another process (pid {first.pid}, `cli.py serve`" in err[0]
    finally:
        first.kill()
        await first.wait()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_names_a_python_too_old_and_rebuilds_a_venv_made_by_one(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "Python 3.9.2" && exit 0\nexit 1\n')
    old.chmod(0o755)

    refused = subprocess.run(
        ["make", f"PYTHON={old}", "test"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    assert "Switchboard needs Python 3.11 or newer" in lines[0]
    assert "is Python 3.9.2; run: make PYTHON=python3.11 test" in lines[0]

    # A .venv an old Python made: rebuilt with the given one (installing is left out here).
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(old, tmp_path / ".venv" / "bin" / "python")
    (tmp_path / ".venv" / ".installed").touch()
    rebuilt = subprocess.run(
        ["make", f"PYTHON={sys.executable}", "INSTALL=true", ".venv/.installed"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilding .venv" in rebuilt.stdout
    version = subprocess.run(
        [tmp_path / ".venv" / "bin" / "python", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.startswith("Python 3.1")
