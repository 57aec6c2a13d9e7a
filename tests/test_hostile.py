"""Hostile bodies over real HTTP (the dev server): each is a fast 4xx and the server stays well."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from shared.events import EMPTY_BODY, MAX_BATCH_BYTES, MAX_EVENT_BYTES
from tests.conftest import leaks, sensitive
from tests.helpers_devserver import DevServer

FAST = 1.5  # seconds; a loaded 2-core CI machine answers these in milliseconds
TOKEN = "hostile-" + "ab" * 24


def event(**overrides: object) -> dict[str, object]:
    return {"TrackingId": str(uuid.uuid4()), "DeviceToken": TOKEN, "PushNotificationStatus": 1, **overrides}


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, content_type: str | None = "application/json"
) -> tuple[int, str, dict, float]:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    started = time.monotonic()
    async with http.post(url, data=body, headers=headers) as response:
        text = await response.text()
        return response.status, text, dict(response.headers), time.monotonic() - started


async def test_a_10_mb_body_is_413_without_being_buffered(http):
    sensitive(TOKEN)
    with DevServer() as fresh:  # its own process, so the peak RSS is this test's alone
        # Warm up: imports, the relay and its session exist before the baseline is taken.
        status, *_ = await post(http, f"{fresh.url}/events", json.dumps(event()).encode())
        assert status == 202
        baseline = fresh.peak_rss_bytes()
        ten_mb = b'{"TrackingId": "' + b"x" * (10 * 1024 * 1024) + b'"}'

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked, passed on empty as in Azure
            for _ in range(160):
                yield b"[" * 65536

        # The single route reads at most 64 KiB + 1 of it, the batch route 6400 KiB + 1: never 10 MB.
        for route, cap, allowance_mb in (
            ("events", MAX_EVENT_BYTES, 4),
            ("events/batch", MAX_BATCH_BYTES, 30),
        ):
            status, text, headers, elapsed = await post(http, f"{fresh.url}/{route}", ten_mb)
            assert status == 413 and headers["Content-Type"].startswith("application/problem+json")
            assert json.loads(text)["detail"] == f"The body must be at most {cap} bytes."
            assert elapsed < FAST, (route, elapsed)
            async with http.post(
                f"{fresh.url}/{route}", data=chunks(), headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 400
                assert (await response.json())["errors"] == [{"field": "body", "detail": EMPTY_BODY}]
            grown = fresh.peak_rss_bytes() - baseline
            assert grown < allowance_mb * 1024 * 1024, f"{route}: peak RSS grew by {grown / 1e6:.1f} MB"
        status, *_ = await post(http, f"{fresh.url}/events", json.dumps(event()).encode())
        assert status == 202
        assert leaks(fresh.output()) == []


def nested(depth: int, opening: bytes, closing: bytes) -> bytes:
    return opening * depth + b"1" + closing * depth


HOSTILE = {
    # nesting
    "100k nested arrays (batch)": ("events/batch", nested(100_000, b"[", b"]"), 400),
    "100k nested objects (batch)": ("events/batch", nested(100_000, b'{"a":', b"}"), 400),
    "30k nested arrays in a field": ("events", b'{"TrackingId":' + nested(30_000, b"[", b"]") + b"}", 400),
    "100k nested arrays (single, over the cap)": ("events", nested(100_000, b"[", b"]"), 413),
    # numbers
    "a 60000-digit integer": (
        "events",
        json.dumps(event()).encode()[:-1] + b', "n": ' + b"9" * 60_000 + b"}",
        400,
    ),
    "a status of 10**4000": ("events", json.dumps(event(PushNotificationStatus=10**4000)).encode(), 400),
    "a status of 1e999999": ("events", json.dumps(event()).encode().replace(b": 1}", b": 1e999999}"), 400),
    "a status of -1e-999999": (
        "events",
        json.dumps(event()).encode().replace(b": 1}", b": -1e-999999}"),
        400,
    ),
    "NaN": ("events", json.dumps(event()).encode().replace(b": 1}", b": NaN}"), 400),
    "Infinity": ("events", json.dumps(event()).encode().replace(b": 1}", b": Infinity}"), 400),
    # duplicate keys
    "duplicate TrackingId": (
        "events",
        b'{"TrackingId": "%s", "TrackingId": "%s", "DeviceToken": "t", "PushNotificationStatus": 1}'
        % (str(uuid.uuid4()).encode(), str(uuid.uuid4()).encode()),
        400,
    ),
    "duplicate key in an ignored member": (
        "events",
        json.dumps(event()).encode()[:-1] + b', "x": {"a": 1, "a": 2}}',
        400,
    ),
    "duplicate key in a batch item": (
        "events/batch",
        b'[{"TrackingId": "%s", "DeviceToken": "t", "PushNotificationStatus": 1, "DeviceToken": "u"}]'
        % str(uuid.uuid4()).encode(),
        400,
    ),
    # NUL bytes and encodings
    "a raw NUL inside a string": (
        "events",
        json.dumps(event()).encode().replace(b"hostile-", b"host\x00ile-"),
        400,
    ),
    "an escaped NUL in the token": ("events", json.dumps(event(DeviceToken="abc\x00def")).encode(), 400),
    "only NUL bytes": ("events", b"\x00" * 4096, 400),
    "NUL before the JSON": ("events", b"\x00" + json.dumps(event()).encode(), 400),
    "invalid UTF-8": ("events", json.dumps(event()).encode().replace(b"hostile-", b"\xff\xfe\xc0\x80"), 400),
    "UTF-16": ("events", json.dumps(event()).encode("utf-16"), 400),
    "a UTF-8 BOM": ("events", b"\xef\xbb\xbf" + json.dumps(event()).encode(), 400),
    "a lone surrogate in the token": ("events", json.dumps(event(DeviceToken="ab\ud800cd")).encode(), 400),
    "empty body": ("events", b"", 400),
    "empty batch": ("events/batch", b"[]", 400),
    "101 events": ("events/batch", json.dumps([event() for _ in range(101)]).encode(), 400),
    # many tiny values: refused by a byte count before anything is decoded
    "800 KB of empty objects (batch)": ("events/batch", b"[" + b"{}," * 270_000 + b"{}]", 400),
    "60 KB of empty arrays in an event": (
        "events",
        json.dumps(event()).encode()[:-1] + b', "x": [' + b"[]," * 20_000 + b"[]]}",
        400,
    ),
    # non-finite numbers in a member the relay ignores
    "NaN in an ignored member": ("events", json.dumps(event()).encode()[:-1] + b', "x": NaN}', 400),
    "1e999 in an ignored member": ("events", json.dumps(event()).encode()[:-1] + b', "x": [1e999]}', 400),
    "-Infinity in a batch item": (
        "events/batch",
        b"[" + json.dumps(event()).encode()[:-1] + b', "x": -Infinity}]',
        400,  # the whole batch: its body is not the JSON the contract takes
    ),
    "trailing garbage": ("events", json.dumps(event()).encode() + b"{}", 400),
    "a JSON string": ("events", b'"event"', 400),
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_bodies_are_a_fast_4xx(server, http, name):
    sensitive(TOKEN)
    route, body, expected = HOSTILE[name]
    status, text, headers, elapsed = await post(http, f"{server.url}/{route}", body)
    assert status == expected, text
    assert headers["Content-Type"].startswith("application/problem+json")
    assert json.loads(text)["status"] == expected
    assert elapsed < FAST, f"{elapsed:.2f} s"
    assert leaks(text) == []


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/html; charset=utf-8",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=----x",
        "application/octet-stream",
        "image/png",
        "application/jsonp",
        "application/json-seq",
        "*/*",
    ],
)
@pytest.mark.parametrize("route", ["events", "events/batch"])
async def test_non_json_content_types_are_a_fast_415(server, http, content_type, route):
    sensitive(TOKEN)
    body = json.dumps(event() if route == "events" else [event()]).encode()
    status, _, headers, elapsed = await post(http, f"{server.url}/{route}", body, content_type)
    assert status == 415 and headers["Content-Type"].startswith("application/problem+json")
    assert elapsed < FAST


async def test_the_server_is_well_after_a_burst_of_hostile_requests(server, http):
    sensitive(TOKEN)
    burst = [post(http, f"{server.url}/{route}", body) for route, body, _ in HOSTILE.values()] * 4
    statuses = [status for status, *_ in await asyncio.gather(*burst)]
    assert all(400 <= status < 500 for status in statuses), statuses
    async with http.get(f"{server.url}/health") as health:
        assert health.status == 200
    status, *_ = await post(http, f"{server.url}/events", json.dumps(event()).encode())
    assert status == 202
    assert "Traceback" not in server.output()
    assert leaks(server.output()) == []
