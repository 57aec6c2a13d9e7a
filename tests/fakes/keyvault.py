"""Key Vault's secrets REST API with its bearer challenge, over HTTPS on loopback."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

from aiohttp import web


class FakeKeyVault:
    """Serves GET /secrets/{name}; `fault` ("down", "forbidden", "throttle", "hang") scripts failures."""

    def __init__(self, secrets: dict[str, str], tokens: Callable[[], set[str]]) -> None:
        self.secrets = dict(secrets)
        self._tokens = tokens
        self.fault: str | None = None
        self.reads: Counter[str] = Counter()  # authorised GETs per secret (faults included)
        self.port = 0
        self.app = web.Application()
        self.app.router.add_get("/secrets/{name}", self.get_secret)
        self.app.router.add_get("/secrets/{name}/", self.get_secret)
        self.app.router.add_get("/secrets/{name}/{version}", self.get_secret)

    def _challenge(self) -> web.Response:
        # Real vaults answer https://vault.azure.net for hosts under vault.azure.net; the SDK checks that
        # the vault host ends with ".<resource host>", so 127.0.0.1 is challenged with 0.0.1.
        header = (
            f'Bearer authorization="https://login.microsoftonline.com/72f988bf-0000-0000-0000-000000000000", '
            f'resource="https://0.0.1:{self.port}"'
        )
        return web.json_response(
            {"error": {"code": "Unauthorized", "message": "AKV10000"}},
            status=401,
            headers={"WWW-Authenticate": header},
        )

    async def get_secret(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self._tokens():
            return self._challenge()
        name = request.match_info["name"]
        self.reads[name] += 1
        if self.fault == "down":
            return web.json_response({"error": {"code": "ServiceUnavailable"}}, status=503)
        if self.fault == "forbidden":
            return web.json_response({"error": {"code": "Forbidden", "message": "no access"}}, status=403)
        if self.fault == "throttle":
            return web.json_response(
                {"error": {"code": "Throttled"}}, status=429, headers={"Retry-After": "1"}
            )
        if self.fault == "hang":
            await asyncio.sleep(3600)
        if name not in self.secrets:
            return web.json_response({"error": {"code": "SecretNotFound", "message": name}}, status=404)
        now = int(time.time())
        return web.json_response(
            {
                "value": self.secrets[name],
                "id": f"https://127.0.0.1:{self.port}/secrets/{name}/0123456789abcdef0123456789abcdef",
                "attributes": {
                    "enabled": True,
                    "created": now,
                    "updated": now,
                    "recoveryLevel": "Recoverable",
                },
            }
        )
