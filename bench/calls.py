"""How each mode sends one item: the app's functions called in-process, or a bare aiohttp client."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import azure.functions as func

import function_app
from bench.driving import Call

FUNCTION_URL = "http://127.0.0.1:7071/api/"
JSON_HEADERS = {"Content-Type": "application/json"}

Function = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]

_routes: dict[str, Function] | None = None


def routes() -> dict[str, Function]:
    """The app's functions by route; get_functions() may run once per process, so it runs here once."""
    global _routes
    if _routes is None:
        _routes = {
            getattr(f.get_trigger(), "route", None) or f.get_function_name(): f.get_user_function()
            for f in function_app.app.get_functions()
        }
    return _routes


def host_requests(bodies: Sequence[bytes], route: str) -> list[func.HttpRequest]:
    """The HttpRequest objects the Functions host hands the function. They are built before a pass
    starts, as `bare` gets its bodies ready-made: building them is the host's work, not the relay's."""
    url = FUNCTION_URL + route
    return [func.HttpRequest("POST", url, headers=JSON_HEADERS, body=body) for body in bodies]


def invoker(function: Function) -> Call:
    """Call a function in-process with one prepared HttpRequest; True when it answered 202."""

    async def call(request: func.HttpRequest) -> bool:
        response = await function(request)
        return response.status_code == 202

    return call


def batch_invoker(function: Function) -> Call:
    """Call the batch route; True when every event in the batch was accepted."""

    async def call(request: func.HttpRequest) -> bool:
        response = await function(request)
        if response.status_code != 200:
            return False
        return all(r["status"] == 202 for r in json.loads(response.get_body())["results"])

    return call


def bare_session(limit: int) -> aiohttp.ClientSession:
    """A plain aiohttp client: one session, the relay's pool size, a total timeout per request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        headers=JSON_HEADERS,
        timeout=aiohttp.ClientTimeout(total=10),
    )


def bare_caller(session: aiohttp.ClientSession, url: str) -> Call:
    """Post one body straight to the upstream; True when it answered 202."""

    async def call(body: bytes) -> bool:
        async with session.post(url, data=body) as resp:
            await resp.read()
            return resp.status == 202

    return call
