"""devserver.host: every kind of answer goes through the worker's converter as it does in Azure, and the
dev server sends exactly what the host would (status, headers, body); bodies without Content-Length
reach the function empty, as they do behind the Functions host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import azure.functions as func
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.functions.http import HttpResponseConverter

import function_app
from devserver.__main__ import READ_LIMITS, adapt
from devserver.host import wire_answer
from shared.events import (
    EMPTY_BODY,
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    FieldError,
    InvalidEvent,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from shared.forwarder import UpstreamMisconfigured, UpstreamRejected, UpstreamUnavailable
from shared.ratelimit import RateLimited
from shared.responses import Reply, accepted, from_error
from shared.settings import ConfigError
from shared.target import TargetUnavailable
from tests.conftest import FUNCTIONS, call, new_event

JSON, PROBLEM = "application/json", "application/problem+json"

# Each kind of answer the relay gives, from the code that makes it, and what the host must send for it.
KINDS: dict[str, tuple[Reply, int, list[tuple[str, str]]]] = {
    "202 accepted": (accepted(), 202, [("Content-Type", JSON)]),
    "202 queued": (accepted(queued=True), 202, [("Content-Type", JSON), ("X-Delivery", "queued")]),
    "400 invalid event": (
        from_error(InvalidEvent(FieldError("TrackingId", "is required"))),
        400,
        [("Content-Type", PROBLEM)],
    ),
    "400 rejected by CIJ": (from_error(UpstreamRejected()), 400, [("Content-Type", PROBLEM)]),
    "413": (from_error(PayloadTooLarge(MAX_EVENT_BYTES)), 413, [("Content-Type", PROBLEM)]),
    "415": (from_error(UnsupportedMediaType("text/plain")), 415, [("Content-Type", PROBLEM)]),
    "429": (
        from_error(RateLimited(16.2)),
        429,
        [("Content-Type", PROBLEM), ("Retry-After", "17")],
    ),
    "502": (from_error(UpstreamMisconfigured(404)), 502, [("Content-Type", PROBLEM), ("Retry-After", "60")]),
    "503 CIJ unavailable": (
        from_error(UpstreamUnavailable(503, "CIJ answered 503", 7)),
        503,
        [("Content-Type", PROBLEM), ("Retry-After", "7")],
    ),
    "503 target unavailable": (
        from_error(TargetUnavailable("vault unreachable", 9)),
        503,
        [("Content-Type", PROBLEM), ("Retry-After", "9")],
    ),
    "503 settings invalid": (
        from_error(ConfigError("bad")),
        503,
        [("Content-Type", PROBLEM), ("Retry-After", "60")],
    ),
    "504": (
        from_error(UpstreamUnavailable(504, "CIJ timed out", 3)),
        504,
        [("Content-Type", PROBLEM), ("Retry-After", "3")],
    ),
    "health 200": (Reply(200, {"status": "ok"}), 200, [("Content-Type", JSON)]),
    "health 503": (
        Reply(503, {"status": "unavailable"}, {"Retry-After": "5"}),
        503,
        [("Content-Type", JSON), ("Retry-After", "5")],
    ),
    "batch 200": (
        Reply(200, {"results": [{"index": 0, "status": 202}]}),
        200,
        [("Content-Type", JSON)],
    ),
}

# Headers the HTTP server itself adds (the host's Kestrel adds its own); not the function's answer.
SERVER_HEADERS = {"content-length", "date", "server", "transfer-encoding", "connection", "keep-alive"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def function_answers(reply: Reply):
    """An HTTP function that answers `reply` as function_app does."""

    async def answer(req: func.HttpRequest) -> func.HttpResponse:
        return function_app._http(reply)

    return answer


def rpc_http(response: func.HttpResponse) -> dict:
    """The RpcHttp the Python worker sends to the host: its converter's Datum, field by field."""
    value = HttpResponseConverter.encode(response, expected_type=None).value
    return {
        "status_code": value["status_code"].value,
        "headers": {name: datum.value for name, datum in value["headers"].items()},
        "cookies": value["cookies"],
        "body": value["body"].value,
    }


def without_server_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in raw if k.decode().lower() not in SERVER_HEADERS]


@pytest.mark.parametrize("kind", KINDS)
async def test_each_answer_reaches_the_host_as_given_and_the_dev_server_sends_the_same(kind, http):
    reply, status, headers = KINDS[kind]
    sent = rpc_http(function_app._http(reply))
    assert sent == {
        "status_code": str(status),
        "headers": dict(headers),  # Content-Type exactly as the function set it: no charset added
        "cookies": None,
        "body": reply.body_bytes(),
    }
    assert json.loads(sent["body"]) == reply.body

    app = web.Application()
    app.router.add_post("/api/x", adapt(function_answers(reply), MAX_EVENT_BYTES))
    server = await serve(app)
    try:
        async with http.post(server.make_url("/api/x"), data=b"{}") as response:
            body = await response.read()
            assert response.status == status
            assert without_server_headers(response.raw_headers) == headers
            assert body == sent["body"]
    finally:
        await server.close()


async def test_a_response_without_content_type_gets_the_converters_default():
    """The worker adds text/plain with a charset only when the function set no Content-Type."""
    sent = rpc_http(func.HttpResponse("hi", status_code=200))
    assert sent["headers"] == {"content-type": "text/plain; charset=utf-8"}
    assert wire_answer(func.HttpResponse("hi")) == (
        200,
        [("content-type", "text/plain; charset=utf-8")],
        b"hi",
    )


async def test_a_body_without_content_length_reaches_the_function_empty(http, static_env):
    """As behind the Functions host: a chunked upload's body is not passed on; the relay says why."""
    app = web.Application()  # the dev server's handlers for the app's routes (indexed once, by conftest)
    for route in ("events", "events/batch"):
        path = f"/api/{route}"
        app.router.add_post(path, adapt(FUNCTIONS[route], READ_LIMITS.get(path, MAX_EVENT_BYTES)))
    server = await serve(app)
    try:
        event = json.dumps(new_event()).encode()

        async def chunked() -> AsyncIterator[bytes]:
            yield event

        for route in ("events", "events/batch"):
            async with http.post(
                server.make_url(f"/api/{route}"), data=chunked(), headers={"Content-Type": JSON}
            ) as response:
                assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
                assert response.status == 400
                assert response.headers["Content-Type"] == PROBLEM
                assert (await response.json())["errors"] == [{"field": "body", "detail": EMPTY_BODY}]
        assert static_env.requests == 0
        # In-process, the function answers an empty body (what the host passes on) the same way.
        assert json.loads((await call("events", b"")).get_body())["errors"] == [
            {"field": "body", "detail": EMPTY_BODY}
        ]
        # The same event with a Content-Length is delivered.
        async with http.post(server.make_url("/api/events"), data=event, headers={"Content-Type": JSON}) as r:
            assert r.request_info.headers.get("Content-Length") == str(len(event))
            assert r.status == 202
            assert without_server_headers(r.raw_headers) == [("Content-Type", JSON)]
        assert static_env.requests == 1
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("route", "method", "body", "status"),
    [
        ("events", "POST", "event", 202),
        ("events/batch", "POST", "batch", 200),
        ("events", "POST", b"{", 400),
        ("health", "GET", None, 200),
    ],
)
async def test_the_real_routes_answer_the_same_in_process_and_through_the_dev_server(
    route, method, body, status, http, static_env
):
    data = {
        "event": lambda: json.dumps(new_event()).encode(),
        "batch": lambda: json.dumps([new_event(), {"TrackingId": "x"}]).encode(),
    }
    payload = data[body]() if isinstance(body, str) else body
    in_process = rpc_http(await call(route, payload, method=method))
    assert in_process["status_code"] == str(status)
    assert in_process["headers"]["Content-Type"] in (JSON, PROBLEM)  # as given: no charset added

    app = web.Application()
    app.router.add_route(method, f"/api/{route}", adapt(FUNCTIONS[route], MAX_BATCH_BYTES))
    server = await serve(app)
    try:
        payload = data[body]() if isinstance(body, str) else body
        headers = {"Content-Type": JSON} if payload is not None else {}
        async with http.request(method, server.make_url(f"/api/{route}"), data=payload, headers=headers) as r:
            assert r.status == status
            assert without_server_headers(r.raw_headers) == list(in_process["headers"].items())
            assert json.loads(await r.read()) == json.loads(in_process["body"])
    finally:
        await server.close()
