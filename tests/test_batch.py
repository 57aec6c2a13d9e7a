"""`POST /api/events/batch` in-process: per-item results, limits, bounded fan-out, one shared deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from shared.events import MAX_BATCH_BYTES, MAX_BATCH_EVENTS
from tests.conftest import ORG_ID, call, canonical, new_event, problem, serving
from tests.fakes.cij import FakeCIJ


class BatchCIJ(FakeCIJ):
    """FakeCIJ that can answer per TrackingId, delay every answer, and counts requests in flight."""

    def __init__(self, org_id: str) -> None:
        super().__init__(org_id)
        self.by_tracking_id: dict[str, str] = {}
        self.delay = 0.0
        self.in_flight = self.max_in_flight = 0

    async def receive(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            try:
                answer = self.by_tracking_id.get(json.loads(await request.read())["TrackingId"])
            except (ValueError, KeyError, TypeError):
                answer = None
            if answer is not None:
                # Taken by FakeCIJ.receive before it first awaits, so concurrent requests cannot steal it.
                self.script.appendleft(answer)
            return await super().receive(request)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def cij() -> AsyncIterator[BatchCIJ]:
    """Replaces conftest's `cij` in this module (so `static_env` points the relay at this one)."""
    async with serving(BatchCIJ(ORG_ID)) as fake:
        yield fake


def results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_body()
    assert response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert set(body) == {"results"}
    return body["results"]


async def test_valid_batch_is_forwarded_and_answered_in_request_order(static_env):
    events = [new_event(PushNotificationStatus=status) for status in (1, "1", "Opened", "opened")]
    items = results(await call("events/batch", events))
    assert items == [{"index": i, "status": 202} for i in range(4)]
    assert sorted(static_env.received, key=lambda e: e["TrackingId"]) == sorted(
        (canonical(e) for e in events), key=lambda e: e["TrackingId"]
    )


async def test_mixed_valid_and_invalid_items_are_judged_one_by_one(static_env):
    good = [new_event(), new_event(PushNotificationStatus="Clicked")]
    batch = [
        good[0],
        {"TrackingId": "nope", "DeviceToken": "", "PushNotificationStatus": True},
        "not an object",
        good[1],
        None,
        new_event(TrackingId="00000000-0000-0000-0000-000000000000"),
    ]
    items = results(await call("events/batch", batch))
    assert [(r["index"], r["status"]) for r in items] == [
        (0, 202),
        (1, 400),
        (2, 400),
        (3, 202),
        (4, 400),
        (5, 400),
    ]
    assert "error" not in items[0] and "error" not in items[3]
    for bad in (items[1], items[2], items[4], items[5]):
        assert bad["error"]["type"] == "urn:cij-push-relay:problem:invalid-event"
        assert bad["error"]["status"] == 400
    assert {e["field"] for e in items[1]["error"]["errors"]} == {
        "TrackingId",
        "DeviceToken",
        "PushNotificationStatus",
    }
    assert items[2]["error"]["errors"] == [{"field": "body", "detail": "must be a JSON object"}]
    assert [e["field"] for e in items[5]["error"]["errors"]] == ["TrackingId"]
    # Only the valid items reached CIJ, once each.
    assert static_env.requests == 2
    assert {e["TrackingId"] for e in static_env.received} == {e["TrackingId"] for e in good}
    assert [
        e["PushNotificationStatus"] for e in static_env.received if e["TrackingId"] == good[1]["TrackingId"]
    ] == [0]


async def test_cij_400_for_one_item_fails_only_that_item_and_is_not_retried(static_env):
    events = [new_event() for _ in range(5)]
    static_env.by_tracking_id[events[2]["TrackingId"]] = "400"
    items = results(await call("events/batch", events))
    assert [r["status"] for r in items] == [202, 202, 400, 202, 202]
    assert items[2]["error"]["type"] == "urn:cij-push-relay:problem:rejected-upstream"
    assert static_env.requests == 5  # the rejected one was sent once, not retried
    assert len(static_env.received) == 4


@pytest.mark.parametrize(
    "answer",
    ["contract", "400", "401", "404", "503", "429:0", "500"],
)
async def test_each_item_gets_the_status_and_problem_the_single_route_gives(monkeypatch, static_env, answer):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    single_event, batch_event = new_event(), new_event()
    if answer != "contract":
        static_env.by_tracking_id = {e["TrackingId"]: answer for e in (single_event, batch_event)}
        # Every attempt of a retryable answer gets it again.
        static_env.default = answer if answer in ("503", "429:0", "500") else None
    single = await call("events", single_event)
    [item] = results(await call("events/batch", [new_event(DeviceToken=""), batch_event]))[1:]
    assert item["status"] == single.status_code
    if single.status_code >= 300:
        assert item["error"] == problem(single)
    else:
        assert "error" not in item
    if single.status_code >= 500:
        assert item["retryAfter"] == int(single.headers["Retry-After"])
    else:
        assert "retryAfter" not in item


async def test_empty_oversized_and_non_array_bodies_are_400_for_the_whole_request(static_env):
    cases: list[Any] = [
        [],
        [new_event() for _ in range(MAX_BATCH_EVENTS + 1)],
        new_event(),
        "events",
        42,
        None,
    ]
    for body in cases:
        response = await call("events/batch", json.dumps(body).encode())
        assert response.status_code == 400, body
        assert problem(response)["type"] == "urn:cij-push-relay:problem:invalid-event"
        assert [e["field"] for e in problem(response)["errors"]] == ["body"]
    for raw in (b"", b"[", b"[{}]]", b"\xff[]"):
        response = await call("events/batch", raw)
        assert response.status_code == 400, raw
    assert static_env.requests == 0


async def test_one_hundred_items_are_accepted(static_env):
    events = [new_event() for _ in range(MAX_BATCH_EVENTS)]
    items = results(await call("events/batch", events))
    assert [r["index"] for r in items] == list(range(MAX_BATCH_EVENTS))
    assert {r["status"] for r in items} == {202}
    assert len({e["TrackingId"] for e in static_env.received}) == MAX_BATCH_EVENTS


async def test_body_cap_fits_100_events_and_no_more(static_env):
    assert MAX_BATCH_BYTES == 100 * 8 * 1024
    body = json.dumps([new_event()]).encode()
    at_cap = body + b" " * (MAX_BATCH_BYTES - len(body))
    assert len(at_cap) == MAX_BATCH_BYTES
    assert [r["status"] for r in results(await call("events/batch", at_cap))] == [202]
    too_large = await call("events/batch", at_cap + b" ")
    assert too_large.status_code == 413
    assert problem(too_large)["type"] == "urn:cij-push-relay:problem:payload-too-large"
    assert static_env.requests == 1


async def test_non_json_content_type_is_415_for_the_whole_request(static_env):
    response = await call("events/batch", [new_event()], headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert static_env.requests == 0


@pytest.mark.parametrize("concurrency", [None, "3"])
async def test_fan_out_is_bounded_by_batch_concurrency(monkeypatch, static_env, concurrency):
    if concurrency:
        monkeypatch.setenv("BATCH_CONCURRENCY", concurrency)
    limit = int(concurrency or 10)  # the documented default
    static_env.delay = 0.05
    items = results(await call("events/batch", [new_event() for _ in range(4 * limit + 1)]))
    assert {r["status"] for r in items} == {202}
    assert static_env.max_in_flight == limit


async def test_one_deadline_is_shared_by_the_whole_batch(monkeypatch, static_env):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("BATCH_CONCURRENCY", "5")
    monkeypatch.setenv("CIRCUIT_FAILURE_THRESHOLD", "10")
    static_env.default = "hang"
    started = time.monotonic()
    items = results(await call("events/batch", [new_event() for _ in range(30)]))
    elapsed = time.monotonic() - started
    # Six waves of five would take six seconds with a deadline per item; one deadline ends them all.
    assert elapsed < 2.0, elapsed
    # Ten timed out (the five sent first among them); then the circuit opened and the rest were
    # answered without waiting.
    statuses = [r["status"] for r in items]
    assert statuses[:5] == [504] * 5 and (statuses.count(504), statuses.count(503)) == (10, 20)
    assert {r["error"]["type"] for r in items} == {"urn:cij-push-relay:problem:upstream-unavailable"}
    assert static_env.requests == 5  # the items still waiting for a slot were not sent after the deadline


async def test_invalid_items_are_answered_even_when_every_valid_one_times_out(monkeypatch, static_env):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "0.5")
    static_env.default = "hang"
    items = results(await call("events/batch", [new_event(), {"TrackingId": 1}, new_event()]))
    assert [r["status"] for r in items] == [504, 400, 504]
