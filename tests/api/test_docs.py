"""/openapi.json describes every operation fully; /docs works without the internet."""

from __future__ import annotations

import re
from typing import Any

from tests.api.support import assert_error
from tests.conftest import Live

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}


async def test_every_operation_is_described(live: Live) -> None:
    document: dict[str, Any] = (await live.http.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    assert {"ErrorOut", "ChatOut", "ChatMessageOut", "UserOut"} <= set(
        document["components"]["schemas"]
    )
    operations = [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) > 50
    assert len({op["operationId"] for _, _, op in operations}) == len(operations)
    for method, path, operation in operations:
        where = f"{method} {path}"
        assert operation.get("summary"), where
        assert not re.search(r"\{[a-z]+_[a-z_]+\}", path), f"{where}: path names are camelCase"
        successes = [status for status in operation["responses"] if status.startswith("2")]
        assert successes, where
        for status in successes:
            assert "schema" in operation["responses"][status]["content"]["application/json"]
        for status in ("400", "404", "503", "default"):
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            assert schema == ERROR_REF, where
        if "requestBody" in operation:
            assert operation["requestBody"]["required"] is True, where
        if operation["x-roles"]:
            assert operation["security"] == [{"bearer": []}], where
            assert {"401", "403"} <= set(operation["responses"]), where
        else:
            assert operation["security"] == [], where


async def test_parameters_state_their_rules(live: Live) -> None:
    document: dict[str, Any] = (await live.http.get("/openapi.json")).json()
    status = document["paths"]["/chats/agent/{chatId}/{status}"]["put"]["parameters"]
    assert [(p["name"], p["schema"]) for p in status] == [
        ("chatId", {"type": "string", "pattern": "^[0-9a-f]{24}$"}),
        ("status", {"enum": ["pending", "resolved"]}),
    ]
    listing = document["paths"]["/admin/chats"]["get"]["parameters"]
    limit = next(p for p in listing if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    assert {"status", "agentId", "customerId", "priority", "createdFrom", "createdTo"} <= {
        p["name"] for p in listing
    }
    send = document["paths"]["/messages/customer/send"]["post"]
    assert "idempotency-key" in {p["name"] for p in send["parameters"] if p["in"] == "header"}


async def test_docs_page_loads_only_local_assets(live: Live) -> None:
    page = await live.http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text
    assert "https://" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) == 4
    # No inline script: each one is a file, which the page's policy allows from here only.
    assert re.findall(r"<script[^>]*>", page.text) == [
        '<script src="/docs/assets/swagger-ui-bundle.js">',
        '<script src="/docs/assets/switchboard-docs.js">',
    ]
    for asset in assets:
        assert asset.startswith("/docs/assets/"), asset
        response = await live.http.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 100
    css = (await live.http.get("/docs/assets/swagger-ui.css")).text
    assert not re.search(r"url\(\s*['\"]?https?:", css)
    assert "/openapi.json" in (await live.http.get("/docs/assets/switchboard-docs.js")).text


async def test_no_cdn_docs_pages_and_no_other_files(live: Live) -> None:
    for path in ("/redocs", "/scalar", "/docs/assets/swagger-editor-bundle.js", "/static/x"):
        assert_error(await live.http.get(path), 404)
