"""The API's description: OpenAPI 3.1 at /openapi.json, and a Swagger UI page at /docs that
works offline (its assets come from the pinned `swagger-ui-py` package, never a CDN), under a
Content-Security-Policy of its own, and keeps no bearer token in the browser's storage.

The OpenAPI document is quart-schema's, completed from each route's `requires` rule: the roles
allowed (`x-roles`), whether a bearer token is needed, and the error responses, every one in the
common shape. Path parameters are named in camelCase, as every other name on the wire.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from pydantic.alias_generators import to_camel
from quart import Blueprint, Response, send_from_directory
from quart_schema import OpenAPIProvider, hide
from werkzeug.routing import BaseConverter, Rule

from api._errors import ApiError
from api._paths import ID_PATTERN, IdConverter
from api._payloads import ErrorOut

_REF = "#/components/schemas/{model}"
_ERROR_REF = {"$ref": _REF.format(model="ErrorOut")}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


_ALWAYS = {
    "400": _error("invalid input: `details` lists each problem"),
    "404": _error("no such resource, or not one of yours"),
    "503": _error("a component is restarting or overloaded; retry shortly"),
    "default": _error("another error (405, 413 body too large, 415, 429 too many attempts)"),
}
_GUARDED = {
    "401": _error("missing, invalid, expired or revoked token"),
    "403": _error("your role may not use this endpoint (see x-roles)"),
}
_CHANGES = {"409": _error("refused in the current state; `message` says why")}


def _openapi_path(rule: Rule) -> str:
    """`/a/<x_id>/<oneof(p, q):status>` as `/a/{xId}/{status}`. (quart-schema's own pattern
    takes everything between the first `<` and the last `:` for one converter.)"""
    return re.sub(r"<(?:[^<>:]*:)?([^<>]+)>", lambda match: f"{{{to_camel(match[1])}}}", rule.rule)


class SwitchboardOpenAPI(OpenAPIProvider):
    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        if isinstance(converter, IdConverter):
            return {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": ID_PATTERN},
            }
        parameter: dict[str, Any] = super().build_path_parameter(name, converter)
        return parameter

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = super().schema()
        error = ErrorOut.model_json_schema(ref_template=_REF)
        schema["components"]["schemas"].update(error.pop("$defs", {}), ErrorOut=error)
        return schema

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        roles = sorted(getattr(view, "allowed_roles", ()))
        [operations] = paths.values()
        for method, operation in operations.items():
            operation["operationId"] = f"{method}_{rule.endpoint.replace('.', '_')}"
            # A handler without a docstring is summarised by its name ("update_profile").
            name = rule.endpoint.rsplit(".", 1)[-1]
            operation.setdefault("summary", name.replace("_", " ").capitalize())
            operation["parameters"] = [
                {**parameter, "name": to_camel(parameter["name"])}
                if parameter["in"] == "path"
                else parameter
                for parameter in operation["parameters"]
            ]
            for parameter in operation["parameters"]:
                if "enum" in parameter["schema"]:
                    parameter["schema"]["enum"] = sorted(parameter["schema"]["enum"])
            if "requestBody" in operation:
                operation["requestBody"] = {**operation["requestBody"], "required": True}
            operation["security"] = [{"bearer": []}] if roles else []
            operation["x-roles"] = [role.value for role in roles]
            operation["responses"] = {
                **_ALWAYS,
                **(_GUARDED if roles else {}),
                **(_CHANGES if method != "get" else {}),
                # quart-schema keys its responses by int; JSON (and sorting) needs str.
                **{str(status): item for status, item in operation["responses"].items()},
            }
        return {_openapi_path(rule): operations}, components


docs = Blueprint("docs", __name__)


def _swagger_ui_dir() -> Path:
    # Found without importing the package: its __init__ pulls in integrations we do not use.
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("the swagger-ui-py package is missing; run `make run` or pip install")
    return Path(spec.origin).parent / "static"


SWAGGER_UI_DIR = _swagger_ui_dir()
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})

INIT_SCRIPT = "switchboard-docs.js"
PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Switchboard API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/{INIT_SCRIPT}"></script>
</body>
</html>
"""
# In a file of its own, not inline, so the page's policy allows no inline script. The token a
# person types into "Authorize" lives in the page only: persistAuthorization would keep it in
# localStorage, where any script of this origin could read it long after the tab is closed.
INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  persistAuthorization: false,
  validatorUrl: null
});
"""
# Swagger UI's script and styles from this server, and its icons (data: images): nothing else
# runs or loads, and no other site can frame the page (tests/browser/test_docs_security.py
# checks it works with no violation, trying an operation included).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


def _secured(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"  # for browsers without frame-ancestors
    return response


@docs.get("/docs")
@hide
async def docs_page() -> Response:
    return _secured(Response(PAGE, content_type="text/html; charset=utf-8"))


@docs.get("/docs/assets/<name>")
@hide
async def docs_asset(name: str) -> Response:
    if name == INIT_SCRIPT:
        return _secured(Response(INIT, content_type="text/javascript; charset=utf-8"))
    if name not in ASSETS:
        raise ApiError(404, "not_found", f"no docs asset {name}")
    return _secured(await send_from_directory(SWAGGER_UI_DIR, name))
