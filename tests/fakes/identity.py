"""The App Service managed-identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER, api-version 2019-08-01)."""

from __future__ import annotations

import secrets
import time

from aiohttp import web


class FakeManagedIdentity:
    """Issues bearer tokens to callers that present the identity header."""

    def __init__(self) -> None:
        self.header_secret = secrets.token_hex(16)
        self.issued: set[str] = set()
        self.requests: list[dict[str, str]] = []
        self.app = web.Application()
        self.app.router.add_get("/msi/token", self.token)

    async def token(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append(query)
        if request.headers.get("X-IDENTITY-HEADER") != self.header_secret:
            return web.json_response({"error": "invalid identity header"}, status=401)
        if query.get("api-version") != "2019-08-01" or "resource" not in query:
            return web.json_response({"error": "bad request"}, status=400)
        token = secrets.token_urlsafe(24)
        self.issued.add(token)
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": query["resource"],
                "token_type": "Bearer",
                "client_id": query.get("client_id", "system-assigned"),
            }
        )
