"""A stand-in for CIJ's push data receiver, run in its own process: 202 at once, and counters.

`python -m bench.upstream --port 0` prints the bound port on the first line of stdout and serves:

- `POST /api/v1.0/orgs/{org_id}/pushdatareceiver/events`: reads the body, answers 202, counts it;
- `GET /_stats[?reset=1][&ids=1]`: events received, distinct TCP connections that carried them
  (`ids=1`: their serial numbers, unique for the life of the process), TCP connections accepted,
  the process's CPU seconds; `reset=1` zeroes the counters after reading them.

It exits when its stdin closes, so it never outlives the benchmark that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
import time

from aiohttp import web

from shared import target

EVENTS_PATH = re.compile("/" + re.escape(target.EVENTS_PATH).replace(re.escape("{org_id}"), "[^/]+"))


class Counters:
    """What the upstream saw since the last reset."""

    def __init__(self) -> None:
        self.requests = 0
        self.accepted = 0  # TCP connections accepted, whatever they carried
        self.serial: dict[object, int] = {}  # open connection (its protocol) → its number
        self.posting: set[int] = set()  # numbers of the connections that carried events
        self._next = 0

    def opened(self, protocol: object) -> None:
        self._next += 1
        self.accepted += 1
        self.serial[protocol] = self._next

    def closed(self, protocol: object) -> None:
        self.serial.pop(protocol, None)

    def reset(self) -> None:
        self.requests = self.accepted = 0
        self.posting.clear()


def build(counters: Counters) -> web.Server:
    """aiohttp's low-level server (no router, no middleware): the cheapest aiohttp can answer, so
    that the upstream is not what limits `bare`."""

    async def receive(request: web.BaseRequest) -> web.Response:
        await request.read()
        counters.requests += 1
        counters.posting.add(counters.serial.get(request.protocol, 0))
        return web.Response(status=202)

    async def stats(request: web.BaseRequest) -> web.Response:
        body = {
            "requests": counters.requests,
            "connections": len(counters.posting),
            "accepted": counters.accepted,
            "cpu_s": time.process_time(),
        }
        if request.query.get("ids"):
            body["connection_ids"] = sorted(counters.posting)
        if request.query.get("reset"):
            counters.reset()
        return web.json_response(body)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "POST" and EVENTS_PATH.fullmatch(request.path):
            return await receive(request)
        if request.method == "GET" and request.path == "/_stats":
            return await stats(request)
        return web.Response(status=404)

    return web.Server(handle, access_log=None)


def count_connections(runner: web.ServerRunner, counters: Counters) -> None:
    """Hook the server's connection callbacks to number every TCP connection it accepts."""
    server = runner.server
    assert server is not None
    made, lost = server.connection_made, server.connection_lost

    def connection_made(handler, transport):  # type: ignore[no-untyped-def]
        counters.opened(handler)
        made(handler, transport)

    def connection_lost(handler, exc=None):  # type: ignore[no-untyped-def]
        counters.closed(handler)
        lost(handler, exc)

    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]


async def until_stdin_closes() -> None:
    """Return when the parent closes our stdin, so a helper process never outlives the benchmark."""
    loop, done = asyncio.get_running_loop(), asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    await done.wait()


async def serve(port: int) -> None:
    counters = Counters()
    runner = web.ServerRunner(build(counters), shutdown_timeout=0.1)
    await runner.setup()
    count_connections(runner, counters)
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024, reuse_address=True)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await until_stdin_closes()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Loopback CIJ stand-in for the benchmark.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
