"""An emulator of CIJ's push data receiver: 202 for an event that follows the contract, 400 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from shared.target import EVENTS_PATH

ROUTE = "/" + EVENTS_PATH
# Its own GUID check: the emulator judges the relay's output against the contract, not its code.
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def follows_contract(body: Any) -> bool:
    """True when `body` is exactly what CIJ documents: TrackingId GUID, DeviceToken, status 0/1."""
    return (
        isinstance(body, dict)
        and set(body) == {"TrackingId", "DeviceToken", "PushNotificationStatus"}
        and isinstance(body["TrackingId"], str)
        and bool(_GUID.fullmatch(body["TrackingId"]))
        and isinstance(body["DeviceToken"], str)
        and bool(body["DeviceToken"])
        and type(body["PushNotificationStatus"]) is int
        and body["PushNotificationStatus"] in (0, 1)
    )


class Emulator:
    """Keeps what it received; `on_event` may print it. `GET /_emulator/received` reports the log."""

    def __init__(self, org_id: str | None = None, on_event: Callable[[dict[str, Any]], None] | None = None):
        self.org_id, self.on_event = org_id, on_event
        self.received: list[dict[str, Any]] = []
        self.requests = 0

    async def receive(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.org_id is not None and request.match_info["org_id"] != self.org_id:
            return web.Response(status=404)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400)
        if request.content_type != "application/json" or not follows_contract(body):
            return web.Response(status=400)
        self.received.append(body)
        if self.on_event:
            self.on_event(body)
        return web.Response(status=202)

    async def report(self, request: web.Request) -> web.Response:
        ids = [e["TrackingId"] for e in self.received]
        return web.json_response(
            {
                "requests": self.requests,
                "accepted": len(ids),
                "distinct_tracking_ids": len(set(ids)),
                "tracking_ids": ids,
            }
        )

    def app(self) -> web.Application:
        """The aiohttp application serving the receiver route and the report."""
        app = web.Application()
        app.router.add_post(ROUTE, self.receive)
        app.router.add_get("/_emulator/received", self.report)
        return app


async def start(emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve `emulator` on host:port (0 = a free port); returns the runner and the bound port."""
    runner = web.AppRunner(emulator.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]


def main() -> None:
    """`python -m devserver.emulator --port N`: run the emulator alone."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7072)
    args = parser.parse_args()

    async def run() -> None:
        _, port = await start(Emulator(), port=args.port)
        print(f"CIJ emulator on http://127.0.0.1:{port}/", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
