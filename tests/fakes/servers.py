"""Start and stop aiohttp applications on loopback ports for tests."""

from __future__ import annotations

import socket
import ssl

from aiohttp import web


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """An aiohttp app listening on 127.0.0.1 on a free port (HTTPS when given an SSL context)."""

    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app, self.ssl_context = app, ssl_context
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Base URL ending in `/`."""
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/"

    async def start(self, port: int = 0) -> Served:
        """Listen (on `port`, or a free one) and return self."""
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=self.ssl_context, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
