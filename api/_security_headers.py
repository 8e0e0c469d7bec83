"""Security headers on every HTTP answer, after the OWASP REST Security and HTTP Headers cheat
sheets.

- `X-Content-Type-Options: nosniff`: a browser takes each answer as the type it says (JSON stays
  JSON, never script or HTML guessed from its bytes).
- `Referrer-Policy: no-referrer`: our URLs carry chat and user ids, and no page of ours needs to
  tell another site where a visitor came from (the console sends the same).
- An answer without a policy of its own gets `default-src 'none'; frame-ancestors 'none'`: a
  JSON answer opened as a page loads and runs nothing, and no other site can frame it. Pages set
  their own (the console's, the docs page's), which are kept.

Headers an answer already has are never replaced, and CORS headers are not touched.
"""

from __future__ import annotations

from quart import Quart, Response

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def install_security_headers(app: Quart) -> None:
    @app.after_request
    async def _secure(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
