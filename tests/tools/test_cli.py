"""The `switchboard` command: help, version, bench dispatch, seed idempotency, production refusals
(a production server's /dev/ routes among them), and a real `serve` subprocess that prints its
logins, answers a login, and stops cleanly on Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from api import DEMO_CUSTOMERS, DEMO_STAFF, Settings
from store import open_store
from tests.api.support import assert_error
from tests.conftest import make_settings, running_server
from tests.server_process import server_process
from tools.cli import main

SERVE_START_LIMIT = 60


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    commands = ("serve", "seed", "migrate", "backup", "inspect", "loadsim", "bench", "version")
    for argv in (["--help"], *([command, "--help"] for command in commands)):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 0
        assert "usage: switchboard" in capsys.readouterr().out


def test_bench_runs_the_named_benchmark_with_its_own_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "assignment", "--agents", "5", "--chats", "40"]) == 0
    report = capsys.readouterr().out
    assert "5 / 40" in report
    assert "invariant violations" in report


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("switchboard 0.")


def test_seed_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'seed.db'}"
    assert main(["seed", "--store", store]) == 0
    first = capsys.readouterr().out
    records = len(DEMO_STAFF) + len(DEMO_CUSTOMERS)
    assert f"seed: {records} created, 0 already there" in first
    # Each account with its own password: the Node backend's accounts keep theirs.
    assert "admin@switchboard.example" in first
    assert "ziad.gamal.tech@gmail.com" in first
    assert "123456zZ" in first
    assert main(["seed", "--store", store]) == 0
    assert f"seed: 0 created, {records} already there" in capsys.readouterr().out


STRONG, OTHER = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
DEMO = "switchboard-demo-secret-do-not-use-in-production"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "SWITCHBOARD_JWT_SECRET is a demo secret"),
        ({"SWITCHBOARD_JWT_SECRET": f"  {DEMO}\n"}, "SWITCHBOARD_JWT_SECRET is a demo secret"),
        ({"SWITCHBOARD_JWT_SECRET": "short"}, "needs at least 32"),
        ({"SWITCHBOARD_JWT_SECRET": " " * 10 + "x" * 30}, "is 30 bytes"),
        ({"SWITCHBOARD_JWT_SECRET": "a" * 32}, "SWITCHBOARD_JWT_SECRET is too predictable"),
        ({"SWITCHBOARD_JWT_SECRET": "ab" * 32}, "about 64 bits"),
        (
            {"SWITCHBOARD_JWT_SECRET": STRONG, "SWITCHBOARD_CUSTOMER_JWT_SECRET": "abc" * 16},
            "SWITCHBOARD_CUSTOMER_JWT_SECRET is too predictable",
        ),
        (
            {
                "SWITCHBOARD_JWT_SECRET": STRONG,
                "SWITCHBOARD_CUSTOMER_JWT_SECRET": OTHER,
                "SWITCHBOARD_METRICS_TOKEN": "0123" * 8,
            },
            "SWITCHBOARD_METRICS_TOKEN is too predictable",
        ),
        (
            {"SWITCHBOARD_JWT_SECRET": STRONG, "SWITCHBOARD_CUSTOMER_JWT_SECRET": f"{STRONG} "},
            "must differ",
        ),
        (
            {
                "SWITCHBOARD_JWT_SECRET": STRONG,
                "SWITCHBOARD_CUSTOMER_PROFILE_URL": "http://shop.example.com/api/profile",
            },
            "SWITCHBOARD_CUSTOMER_PROFILE_URL must be https:// in production",
        ),
    ],
)
def test_production_refuses_unsafe_secrets(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.setenv("SWITCHBOARD_MODE", "production")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # `seed`: the settings are checked before anything else, and it ends either way.
    assert main(["seed", "--data-dir", str(tmp_path)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert expected in line
    if "must" not in expected:
        assert "secrets.token_urlsafe(48)" in line  # says how to make a good one
    assert not (tmp_path / "switchboard.db").exists()


def test_production_with_a_shop_profile_url_needs_no_customer_secret() -> None:
    Settings(
        mode="production",
        jwt_secret=STRONG,
        customer_profile_url="https://shop.example.com/api/profile",
    ).check()  # the demo customer secret is unused, so not refused


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["serve", "--port", "0", "--seed-if-empty"], "--seed-if-empty"),
        (["seed"], "`switchboard seed`"),
    ],
)
def test_production_never_creates_the_demo_accounts(
    tmp_path: Path, argv: list[str], named: str
) -> None:
    """A real process, configured as production is: one line on stderr, status 2, no store."""
    env = {
        **os.environ,
        "SWITCHBOARD_MODE": "production",
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_JWT_SECRET": secrets.token_urlsafe(48),
        "SWITCHBOARD_CUSTOMER_JWT_SECRET": secrets.token_urlsafe(48),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tools.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=SERVE_START_LIMIT,
    )
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        f"switchboard: error: {named} creates the demo accounts, whose password is public; "
        "production mode (SWITCHBOARD_MODE=production) never does: create your own admin with "
        "`switchboard seed --admin EMAIL` (the password on stdin)"
    ]
    assert done.stdout == ""
    assert not (tmp_path / "switchboard.db").exists()


async def test_production_seeds_only_the_admin_the_operator_names(tmp_path: Path) -> None:
    """`seed --admin EMAIL`, the password on stdin, in a real process configured as production;
    then a server on that store lets that admin in, and nobody else exists."""
    env = {
        **os.environ,
        "SWITCHBOARD_MODE": "production",
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_JWT_SECRET": secrets.token_urlsafe(48),
        "SWITCHBOARD_CUSTOMER_JWT_SECRET": secrets.token_urlsafe(48),
    }
    password = "a long operator password"

    async def seed_admin(given: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "tools.cli", "seed", "--admin", "boss@shop.example"]
        with trio.fail_after(SERVE_START_LIMIT):
            return await trio.run_process(
                [*command, "--name", "Boss"],
                stdin=f"{given}\n".encode(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=env,
            )

    short = await seed_admin("short")
    assert (short.returncode, short.stderr.decode().splitlines()) == (
        2,
        ["switchboard: error: password: String should have at least 8 characters"],
    )
    created = await seed_admin(password)
    assert created.returncode == 0, created.stderr
    assert b"created the admin boss@shop.example" in created.stdout
    again = await seed_admin(password)
    assert again.returncode == 2
    assert again.stderr.decode().splitlines() == [
        "switchboard: error: boss@shop.example already has an account"
    ]

    settings = make_settings(tmp_path, store=f"sqlite://{tmp_path / 'switchboard.db'}")
    async with running_server(settings, seed=False) as live:
        assert await live.services.store.count_users() == 1
        await live.login("boss@shop.example", password, admin=True)
        demo = await live.http.post(
            "/admin/auth/login",
            json={"email": "admin@switchboard.example", "password": "switchboard-demo"},
        )
        assert demo.status_code == 401


# Every /dev/ route but /dev/test, with a request it would serve in development.
DEV_ROUTES = [
    ("GET", "/dev/seed", None),
    ("POST", "/dev/customer-token", {"customerId": "shop-customer-1"}),
    ("GET", "/dev/mail", None),
]


async def test_a_production_server_serves_no_dev_route(tmp_path: Path) -> None:
    """A real `serve` configured as production (strong secrets): /dev/seed and every other /dev/
    route but /dev/test answer 404, and no demo account (no user at all) is created."""
    async with (
        server_process(
            tmp_path, mode="production", jwt_secret=STRONG, customer_jwt_secret=OTHER
        ) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        # The table above is every /dev/ route the server has: a new one must be added to it.
        paths = (await http.get("/openapi.json")).json()["paths"]
        served = {
            (method.upper(), path)
            for path, operations in paths.items()
            if path.startswith("/dev/")
            for method in operations
        }
        assert served == {("GET", "/dev/test")} | {(m, path) for m, path, _ in DEV_ROUTES}
        for method, path, body in DEV_ROUTES:
            error = assert_error(await http.request(method, path, json=body), 404, "not_found")
            assert error["message"] == "no such endpoint in production mode", (method, path)
        # /dev/seed takes GET only: another method is refused by the routing (405), in any mode,
        # before any handler runs.
        assert (await http.post("/dev/seed")).status_code in (404, 405)
        assert (await http.get("/dev/test")).status_code == 200  # what production keeps
        admin = DEMO_STAFF[0]
        demo = await http.post(
            "/admin/auth/login", json={"email": admin.email, "password": admin.password}
        )
        assert demo.status_code == 401, demo.text
    async with open_store(f"sqlite://{tmp_path / 'switchboard.db'}", existing=True) as store:
        assert await store.count_users() == 0


def test_bad_store_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seed", "--store", "ftp://nowhere"]) == 2
    assert "sqlite://" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["serve", "seed"])
def test_an_unusable_sqlite_file_is_one_line_not_a_traceback(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raised inside the store's nursery (serve) or its folder's creation: reported as itself."""
    not_a_database = tmp_path / "notes.db"
    not_a_database.write_text("shopping list\n" * 100)
    in_a_file = tmp_path / "notes.db" / "switchboard.db"
    for store, said in (
        (not_a_database, "file is not a database"),
        (in_a_file, "cannot create the folder"),
    ):
        port = ["--port", "0"] if command == "serve" else []
        assert main([command, *port, "--store", f"sqlite://{store}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("switchboard: error: "), err
        assert said in err
        assert "Traceback" not in err
    assert not_a_database.read_text().startswith("shopping list")


async def test_serve_subprocess_prints_logins_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path), "SWITCHBOARD_PORT": "0"}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tools.cli", "serve", "--seed-if-empty"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    output = b""
    try:
        with trio.fail_after(SERVE_START_LIMIT):
            while b"Press Ctrl-C to stop." not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, output.decode()
                output += chunk
        text = output.decode()
        assert "admin@switchboard.example" in text
        url = text.split("serving on ", 1)[1].split()[0]
        async with httpx.AsyncClient(base_url=url) as http:
            login = await http.post(
                "/admin/auth/login",
                json={"email": "admin@switchboard.example", "password": "switchboard-demo"},
            )
        assert login.status_code == 200, login.text
        assert login.json()["user"]["role"] == "admin"
        process.send_signal(signal.SIGINT)
        with trio.fail_after(SERVE_START_LIMIT):
            rest = b""
            while chunk := await process.stdout.receive_some():
                rest += chunk
            assert await process.wait() == 0, rest.decode()
        assert b"stopped." in rest
        assert (tmp_path / "switchboard.db").exists()
    finally:
        if process.returncode is None:
            process.kill()
