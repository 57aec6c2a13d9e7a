"""A CIJ push data receiver with scripted answers, built on the dev server's contract emulator."""

from __future__ import annotations

import asyncio
from collections import deque

from aiohttp import web

from devserver.emulator import ROUTE, Emulator


class FakeCIJ(Emulator):
    """Answers per the contract, unless a scripted answer is queued: "400", "401", "404", "429:<s>",
    "503", "500", "hang", "reset", any of them with "+cookie" (sets an affinity cookie) or
    "+redirect" (a Location elsewhere on this server). `default` replaces the contract for every
    request when set. Requests to any other path are recorded in `strays`."""

    def __init__(self, org_id: str) -> None:
        super().__init__(org_id)
        self.script: deque[str] = deque()
        self.default: str | None = None
        self.content_types: list[str] = []
        self.cookies: list[str | None] = []  # the Cookie header of each request
        self.strays: list[str] = []  # paths requested other than the receiver's
        self.connections: set[int] = set()

    def then(self, *answers: str) -> FakeCIJ:
        """Queue scripted answers for the next requests."""
        self.script.extend(answers)
        return self

    async def receive(self, request: web.Request) -> web.StreamResponse:
        self.content_types.append(request.headers.get("Content-Type", ""))
        self.cookies.append(request.headers.get("Cookie"))
        if request.transport is not None:
            self.connections.add(id(request.transport))
        answer = self.script.popleft() if self.script else self.default
        if answer is None:
            return await super().receive(request)
        self.requests += 1
        await request.read()
        if answer == "hang":
            await asyncio.sleep(3600)
        if answer == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        answer, _, extra = answer.partition("+")
        status, _, retry_after = answer.partition(":")
        headers = {"Retry-After": retry_after} if retry_after else {}
        if extra == "cookie":
            headers["Set-Cookie"] = "ARRAffinity=instance-7; Path=/"
        if extra == "redirect":
            headers["Location"] = "/elsewhere"
        return web.Response(status=int(status), headers=headers)

    async def stray(self, request: web.Request) -> web.StreamResponse:
        self.strays.append(request.path)
        return web.Response(status=404)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(ROUTE, self.receive)
        app.router.add_route("*", "/{tail:.*}", self.stray)
        return app
