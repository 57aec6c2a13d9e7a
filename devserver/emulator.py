"""An emulator of CIJ's push data receiver: 202 for an event that follows the contract, 400 otherwise.

It can be told to go down and come back, to see what the relay does while CIJ is unavailable:
`POST /_emulator/down`, `POST /_emulator/up`, `POST /_emulator/outage?seconds=N` (down for N
seconds). While down it answers every event 503 with `Retry-After`, as CIJ does when it cannot take
events; `GET /_emulator/received` reports what it accepted and whether it is down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import time
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
    """Keeps what it received; `on_event` may print it, `on_change` each time it goes down or up."""

    def __init__(
        self,
        org_id: str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_change: Callable[[Emulator], None] | None = None,
    ):
        self.org_id, self.on_event, self.on_change = org_id, on_event, on_change
        self.received: list[dict[str, Any]] = []
        self.requests = 0
        self.down_until = 0.0  # time.monotonic() until which it is down; inf: until told otherwise

    @property
    def down(self) -> bool:
        """Whether it is down (answering 503) now."""
        return time.monotonic() < self.down_until

    def go_down(self, seconds: float = math.inf) -> None:
        """Answer 503 for `seconds` (by default until `come_back`)."""
        self.down_until = time.monotonic() + seconds

    def come_back(self) -> None:
        """Accept events again."""
        self.down_until = 0.0

    async def receive(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.down:
            await request.read()
            remaining = self.down_until - time.monotonic()
            retry_after = 60 if math.isinf(remaining) else max(1, math.ceil(remaining))
            return web.Response(status=503, headers={"Retry-After": str(retry_after)})
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
                "down": self.down,
            }
        )

    async def outage(self, request: web.Request) -> web.Response:
        """`POST /_emulator/down`, `/_emulator/up`, or `/_emulator/outage?seconds=N` (1 to 3600)."""
        action = request.match_info["action"]
        if action == "up":
            self.come_back()
        elif action == "down":
            self.go_down()
        else:
            try:
                seconds = float(request.query.get("seconds", "60"))
            except ValueError:
                seconds = math.nan
            if not 1 <= seconds <= 3600:
                return web.json_response({"error": "seconds must be a number from 1 to 3600"}, status=400)
            self.go_down(seconds)
            asyncio.get_running_loop().call_later(seconds, self._ended, self.down_until)
        self._changed()
        return web.json_response({"down": self.down})

    def _changed(self) -> None:
        if self.on_change:
            self.on_change(self)

    def _ended(self, until: float) -> None:
        """The outage ending at `until` is over: report it, unless it was ended or extended since."""
        if self.down_until == until:
            self._changed()

    def app(self) -> web.Application:
        """The aiohttp application serving the receiver route and the report."""
        app = web.Application()
        app.router.add_post(ROUTE, self.receive)
        app.router.add_get("/_emulator/received", self.report)
        app.router.add_post("/_emulator/{action:down|up|outage}", self.outage)
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
