"""The Dockerfile and compose.yaml, checked without a container engine (none runs here): what
they promise (a slim Python base, a non-root user, the data directory as a volume, production
mode, JSON logs, a health check on /healthz; MongoDB as a replica set of one, the secrets
required), and the health check's own command run against a live server. With a Docker engine,
the image is built and its health check awaited too. `-m slow` builds the image's steps
without Docker: the build context `.dockerignore` leaves, installed into a fresh venv, served as
an unprivileged user."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from secrets import token_urlsafe

import pytest
import trio
import yaml  # type: ignore[import-untyped]

from tests.conftest import Live

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction of the final stage, continuation lines
    joined."""
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    joined = re.sub(r"\\\n\s*", " ", "FROM " + final)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def image_env() -> dict[str, str]:
    (env,) = instructions("ENV")
    return dict(re.findall(r"(\w+)=(\S+)", env))


def healthcheck_command() -> list[str]:
    (check,) = instructions("HEALTHCHECK")
    command: list[str] = json.loads(check.split(" CMD ", 1)[1])
    return command


def test_the_image_is_slim_unprivileged_and_production_ready() -> None:
    (base,) = instructions("FROM")
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base), base
    (user,) = instructions("USER")
    assert user.split(":")[0] not in ("root", "0")
    env = image_env()
    assert env["SWITCHBOARD_MODE"] == "production"
    assert env["SWITCHBOARD_LOG_FORMAT"] == "json"
    assert env["SWITCHBOARD_HOST"] == "0.0.0.0"
    (volume,) = instructions("VOLUME")
    assert json.loads(volume) == [env["SWITCHBOARD_DATA_DIR"]]
    assert instructions("EXPOSE") == [env["SWITCHBOARD_PORT"]]
    assert json.loads(instructions("ENTRYPOINT")[0]) == ["switchboard"]
    assert json.loads(instructions("CMD")[-1]) == ["serve"]
    assert "/healthz" in " ".join(healthcheck_command())
    assert "SECRET" not in " ".join(instructions("ENV"))  # no secret baked into the image


def ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    return any(
        fnmatch.fnmatch(relative, pattern)
        or any(fnmatch.fnmatch(part, pattern.removeprefix("**/")) for part in parts)
        for pattern in patterns
    )


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_build_context_has_every_package_and_nothing_local() -> None:
    patterns = dockerignore()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        name.rstrip("*") for name in project["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    for package in [*packages, "pyproject.toml", "README.md"]:
        assert not ignored(package, patterns), package
    for local in (".venv", ".git", "data", "tests", "switchboard.db", "x/__pycache__"):
        assert ignored(local, patterns), local


def test_compose_runs_switchboard_on_a_mongodb_replica_set_of_one() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    mongo, switchboard = compose["services"]["mongo"], compose["services"]["switchboard"]
    assert mongo["command"][:2] == ["--replSet", "rs0"]
    assert "rs.initiate" in " ".join(mongo["healthcheck"]["test"])
    assert switchboard["depends_on"]["mongo"]["condition"] == "service_healthy"
    env = switchboard["environment"]
    assert env["SWITCHBOARD_STORE"].startswith("mongodb://mongo:27017/")
    assert "replicaSet=rs0" in env["SWITCHBOARD_STORE"]
    for secret in ("SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_CUSTOMER_JWT_SECRET"):
        assert env[secret].startswith(f"${{{secret}:?"), "compose must refuse to start without it"
    assert all(port.startswith("127.0.0.1:") for port in switchboard["ports"])
    assert image_env()["SWITCHBOARD_DATA_DIR"] in switchboard["volumes"][0]
    assert "replicas" not in switchboard.get("deploy", {})  # one process per store


async def test_the_health_check_command_passes_on_a_live_server_and_fails_without(
    live: Live,
) -> None:
    port = live.url.rsplit(":", 1)[1]
    command = [sys.executable, *healthcheck_command()[1:]]
    with trio.fail_after(30):
        ok = await trio.run_process(command, env={**os.environ, "SWITCHBOARD_PORT": port})
        assert ok.returncode == 0
        closed = await trio.run_process(
            command, env={**os.environ, "SWITCHBOARD_PORT": "9"}, check=False, capture_stderr=True
        )
    assert closed.returncode != 0


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    info = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=20)
    return info.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _docker_engine(), reason="no Docker engine on this machine")
def test_with_docker_the_image_builds_and_becomes_healthy() -> None:
    tag = "switchboard-test:latest"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=900)
    given = [
        f"SWITCHBOARD_JWT_SECRET={token_urlsafe(48)}",
        f"SWITCHBOARD_CUSTOMER_JWT_SECRET={token_urlsafe(48)}",
    ]
    run = ["docker", "run", "-d", "--rm", *(f"-e{secret}" for secret in given), tag]
    container = subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip()
    events = subprocess.Popen(
        ["docker", "events", "--filter", f"container={container}", "--filter",
         "event=health_status: healthy"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert events.stdout is not None
        ready, _, _ = select.select([events.stdout], [], [], 120)
        assert ready, "the container did not become healthy within 120 s"
        assert b"healthy" in events.stdout.readline()
    finally:
        events.kill()
        subprocess.run(["docker", "stop", container], check=False, timeout=60)


def build_context(into: Path) -> None:
    """What `COPY . /src` copies: the project less what .dockerignore names."""
    patterns = dockerignore()
    for folder, folders, files in os.walk(ROOT):
        here = Path(folder).relative_to(ROOT)
        folders[:] = [name for name in folders if not ignored(str(here / name), patterns)]
        for name in files:
            relative = here / name
            if not ignored(str(relative), patterns):
                (into / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, into / relative)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")
def test_the_image_steps_without_docker() -> None:
    """The build stage's `python -m venv` and `pip install /src` on the build context, then the
    final stage's command as an unprivileged user with the image's environment: it serves,
    its health check passes, its data directory holds the database and the lock."""
    # Not under pytest's tmp_path, which only its owner may enter.
    tmp_path = Path(tempfile.mkdtemp(prefix="switchboard-image-"))
    tmp_path.chmod(0o755)
    try:
        trio.run(_build_and_serve, tmp_path)
    finally:
        shutil.rmtree(tmp_path)


async def _build_and_serve(tmp_path: Path) -> None:
    build_context(tmp_path / "src")
    venv = tmp_path / "opt"
    with trio.fail_after(600):
        await trio.run_process([sys.executable, "-m", "venv", str(venv)])
        await trio.run_process([venv / "bin" / "pip", "install", "-q", str(tmp_path / "src")])
    data = tmp_path / "var"
    data.mkdir()
    os.chown(data, 65534, 65534)  # nobody
    port = free_port()
    env = {
        **image_env(),
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "SWITCHBOARD_DATA_DIR": str(data),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_JWT_SECRET": token_urlsafe(48),
        "SWITCHBOARD_CUSTOMER_JWT_SECRET": token_urlsafe(48),
    }
    unprivileged = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    server = await trio.lowlevel.open_process(
        [*unprivileged, venv / "bin" / "switchboard", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert server.stdout is not None
    try:
        with trio.fail_after(60):
            output = b""
            while b"Press Ctrl-C to stop." not in output:
                chunk = await server.stdout.receive_some()
                assert chunk, output
                output += chunk
            check = await trio.run_process([*unprivileged, *healthcheck_command()], env=env)
            assert check.returncode == 0
        assert (data / "switchboard.db").stat().st_uid == 65534
        assert (data / "switchboard.db.lock").read_text().startswith(f"pid {server.pid}")
    finally:
        server.terminate()
        with trio.fail_after(30):
            assert await server.wait() == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
