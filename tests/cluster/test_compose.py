"""compose.yaml's cluster, checked without a container engine (none runs here, and this Docker CLI
has no compose plugin): every Switchboard service is a node of one cluster (one bus, one MongoDB,
its own node id), so no second process can ever arbitrate unfenced beside the others; each
node's environment passes Switchboard's own settings check in production mode; the cluster
profile adds two nodes and a balancer that sends each node's traffic with the websocket upgrade
and keeps a client on one node (Socket.IO polling needs it); the nodes trust the balancer, and
only it, as a proxy. The file has not been run under Docker."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from api._config import load_settings

ROOT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\$\{(\w+)(?::[-?]([^}]*))?\}")
SECRETS = {
    "SWITCHBOARD_JWT_SECRET": "staff-secret-for-the-compose-test-0123456789abcdef",
    "SWITCHBOARD_CUSTOMER_JWT_SECRET": "shop-secret-for-the-compose-test-0123456789abcdef",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run Switchboard."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("switchboard:")
    }


def interpolated(value: str) -> str:
    """`value` as compose gives it to the container, with the secrets set and no other variable."""

    def substitute(found: re.Match[str]) -> str:
        name, default = found.group(1), found.group(2) or ""
        if name in SECRETS:
            return SECRETS[name]
        assert not found.group(0).startswith(f"${{{name}:?"), f"{name} is required"
        return default

    return VARIABLE.sub(substitute, value).replace("$$", "$")


def test_every_switchboard_is_a_node_of_one_cluster(compose: dict[str, Any]) -> None:
    found = nodes(compose)
    assert set(found) == {"switchboard", "node-2", "node-3"}
    environments = [service["environment"] for service in found.values()]
    assert {env["SWITCHBOARD_BUS_URL"] for env in environments} == {"redis://valkey:6379/0"}
    assert len({env["SWITCHBOARD_STORE"] for env in environments}) == 1
    assert next(iter(environments))["SWITCHBOARD_STORE"].startswith("mongodb://mongo:27017/")
    assert sorted(env["SWITCHBOARD_NODE_ID"] for env in environments) == [
        "node-1",
        "node-2",
        "node-3",
    ]
    # Without the profile: one node, on MongoDB and Valkey, both healthy before it starts.
    single = found["switchboard"]
    assert "profiles" not in single
    assert single["depends_on"]["valkey"]["condition"] == "service_healthy"
    assert single["depends_on"]["mongo"]["condition"] == "service_healthy"
    # With it: two more, started once the first is healthy (it seeded and took the lease).
    for name in ("node-2", "node-3"):
        assert found[name]["profiles"] == ["cluster"]
        assert found[name]["depends_on"]["switchboard"]["condition"] == "service_healthy"
        assert "ports" not in found[name]  # reached through the balancer


@pytest.mark.parametrize("node", ["switchboard", "node-2", "node-3"])
def test_each_node_passes_the_settings_check_in_production(
    compose: dict[str, Any], node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("SWITCHBOARD_")]:
        monkeypatch.delenv(name)
    environment = nodes(compose)[node]["environment"]
    for name, value in environment.items():
        monkeypatch.setenv(name, interpolated(str(value)))
    monkeypatch.setenv("SWITCHBOARD_MODE", "production")  # as the image sets it
    settings = load_settings()
    assert settings.bus_url == "redis://valkey:6379/0"
    assert settings.node_id == environment["SWITCHBOARD_NODE_ID"]
    assert settings.lease_seconds == 5.0


def test_valkey_keeps_nothing(compose: dict[str, Any]) -> None:
    valkey = compose["services"]["valkey"]
    assert valkey["command"] == ["valkey-server", "--save", "", "--appendonly", "no"]
    assert "volumes" not in valkey
    assert valkey["healthcheck"]["test"] == ["CMD", "valkey-cli", "ping"]


def test_the_balancer_spreads_the_nodes_sticky_by_client_with_websockets(
    compose: dict[str, Any],
) -> None:
    balancer = compose["services"]["balancer"]
    assert balancer["profiles"] == ["cluster"]
    assert set(balancer["depends_on"]) == set(nodes(compose))
    assert all(port.startswith("127.0.0.1:") for port in balancer["ports"])
    (config,) = balancer["configs"]
    assert config["target"] == "/etc/nginx/conf.d/default.conf"
    nginx = interpolated(compose["configs"][config["source"]]["content"])
    upstream = re.search(r"upstream switchboard \{(.*?)\}", nginx, re.S)
    assert upstream is not None
    assert "ip_hash;" in upstream.group(1)
    servers = re.findall(r"server ([\w-]+):8080;", upstream.group(1))
    assert sorted(servers) == sorted(nodes(compose))
    assert "proxy_pass http://switchboard;" in nginx
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx
    assert "proxy_set_header Connection $connection_upgrade;" in nginx
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
    # Longer than the 20 s ping interval, or quiet agents are cut.
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", nginx)
    assert read_timeout is not None
    assert int(read_timeout.group(1)) > 20


def test_the_nodes_trust_the_balancer_and_only_it(compose: dict[str, Any]) -> None:
    address = compose["services"]["balancer"]["networks"]["default"]["ipv4_address"]
    (subnet,) = compose["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet["subnet"])
    for service in nodes(compose).values():
        assert service["environment"]["SWITCHBOARD_TRUSTED_PROXIES"] == address
