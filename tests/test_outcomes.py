"""shared/relay.py's outcomes: one log line per event saying how many attempts were made and why
the last failed; a bug answers 5xx + Retry-After (never a bare 500) and keeps the event if it can."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import azure.functions as func
import pytest

from shared import relay
from shared.delivery_queue import encode_message
from shared.events import validate_event
from shared.forwarder import Forwarder
from shared.relay import RedeliveryFailed
from tests.conftest import FUNCTIONS, ORG_ID, call, new_event, problem, sensitive
from tests.fakes.azurite import azurite_fixture  # noqa: F401
from tests.fakes.hostile_cij import HostileCIJ, Misbehaviour
from tests.queue_store import assert_queued, store_fixture  # noqa: F401

OUTCOME = re.compile(r"event outcome=(\w+) status=(\d+) .* attempts=(\d+) reason=(.+) ms=")


def outcome_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, int, str]]:
    lines = []
    for record in caplog.records:
        if match := OUTCOME.search(record.getMessage()):
            outcome, status, attempts, reason = match.groups()
            lines.append((outcome, int(status), int(attempts), reason))
    return lines


@pytest.mark.parametrize(
    ("answers", "status", "reason"),
    [
        (["503"] * 4, 503, "HTTP 503"),
        (["500", "reset", "reset", "reset"], 502, "closed early"),
        (["hang"], 504, "timeout"),
        (["404"], 502, "HTTP 404"),
        (["400"], 400, "HTTP 400"),
    ],
)
async def test_each_failure_logs_one_line_with_its_attempts_and_why(
    monkeypatch, static_env, caplog, answers, status, reason
):
    monkeypatch.setattr("shared.forwarder.BACKOFF_BASE", 0.01)
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "0.5")
    static_env.then(*answers)
    response = await call("events", new_event())
    assert response.status_code == status
    [(outcome, logged_status, attempts, logged_reason)] = outcome_lines(caplog)
    assert logged_status == status and logged_reason == reason
    assert attempts == static_env.requests >= 1, (attempts, static_env.requests)
    assert outcome != "accepted"


async def test_a_refused_connection_is_named_and_counted(monkeypatch, static_env, caplog):
    monkeypatch.setattr("shared.forwarder.BACKOFF_BASE", 0.01)
    await static_env.served.stop()  # type: ignore[attr-defined]
    response = await call("events", new_event())
    assert response.status_code == 502
    [(_, _, attempts, reason)] = outcome_lines(caplog)
    assert reason == "refused" and attempts >= 2


async def test_success_after_retries_logs_the_attempts(monkeypatch, static_env, caplog):
    monkeypatch.setattr("shared.forwarder.BACKOFF_BASE", 0.01)
    static_env.then("503", "503")
    assert (await call("events", new_event())).status_code == 202
    assert outcome_lines(caplog) == [("accepted", 202, 3, "-")]


class Boom(RuntimeError):
    """Stands for any bug: its message holds a value that must never be logged or answered."""


def exploding(secret: str):
    async def send(self, *args, **kwargs):
        raise Boom(f"failed on {secret}")

    return send


@pytest.mark.parametrize("route", ["events", "events/batch"])
async def test_a_bug_answers_503_with_retry_after_and_logs_no_values(monkeypatch, static_env, caplog, route):
    event = new_event()
    monkeypatch.setattr(Forwarder, "send", exploding(event["DeviceToken"]))
    response = await call(route, event if route == "events" else [event])
    if route == "events":
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert problem(response)["type"] == "urn:cij-push-relay:problem:internal"
    else:
        [item] = json.loads(response.get_body())["results"]
        assert item["status"] == 503 and item["retryAfter"] == 5
    assert any("relay failed unexpectedly (Boom at " in r.getMessage() for r in caplog.records)
    # the autouse leak check fails the test if the token (in the exception's message) was logged


async def test_a_bug_in_parsing_is_503_not_an_escaping_exception(monkeypatch, static_env):
    def broken(body, content_type=None):
        raise Boom("parser bug")

    monkeypatch.setattr("shared.relay.parse_event", broken)
    monkeypatch.setattr("shared.relay.parse_batch", broken)
    for route in ("events", "events/batch"):
        response = await call(route, new_event())
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"


async def test_a_bug_keeps_the_event_on_the_queue_when_the_fallback_is_on(monkeypatch, static_env, store):
    event = new_event()
    monkeypatch.setattr(Forwarder, "send", exploding("x"))
    assert_queued(await call("events", event))
    [message] = await store.bodies()
    assert message["event"]["TrackingId"] == event["TrackingId"]


@pytest.mark.parametrize(
    ("behaviour", "status", "reason"),
    [
        (Misbehaviour(b"HTTP/1.1 503 Busy", ((b"X-Padding", b"9" * 70_000),)), 502, "header too large"),
        (Misbehaviour(b"\x16\x03\x01 not http"), 502, "malformed answer"),
        (Misbehaviour(cut="reset"), 502, "reset"),
        (Misbehaviour(cut="close"), 502, "closed early"),
        (Misbehaviour(b"HTTP/1.1 202 Accepted", body_size=1000, framing="short"), 202, "-"),
        (Misbehaviour(b"HTTP/1.1 599 Odd"), 502, "HTTP 599"),
    ],
)
async def test_a_broken_answer_is_named_in_the_outcome_line(monkeypatch, caplog, behaviour, status, reason):
    fake = await HostileCIJ().start()
    fake.behaviour = behaviour
    sensitive(fake.url, f"127.0.0.1:{fake.port}")
    monkeypatch.setenv("CIJ_ORG_ID", ORG_ID)
    monkeypatch.setenv("CIJ_PUBLIC_ENDPOINT", fake.url)
    monkeypatch.setenv("CIJ_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "0.5")
    try:
        response = await call("events", new_event())
    finally:
        await fake.stop()
    assert response.status_code == status
    [(_, _, attempts, logged)] = outcome_lines(caplog)
    assert logged == reason and attempts >= 1


async def test_a_bug_in_redelivery_keeps_the_event_without_logging_values(
    monkeypatch, static_env, store, caplog
):
    event = new_event()
    monkeypatch.setattr(Forwarder, "send", exploding(event["DeviceToken"]))
    message = encode_message(validate_event(event), datetime.now(UTC))
    await FUNCTIONS["redeliver"](func.QueueMessage(body=message))  # stored again, for a later try
    assert await store.count() == 1
    assert any("redelivery failed unexpectedly (Boom at " in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("DELIVERY_QUEUE_NAME", "missing-queue")  # and when it cannot be: the host retries
    await relay.reset()
    with pytest.raises(RedeliveryFailed):
        await FUNCTIONS["redeliver"](func.QueueMessage(body=message))


async def test_a_bug_with_storage_failing_too_answers_503_and_logs_no_values(
    monkeypatch,
    static_env,
    store,
    caplog,
):
    event = new_event()
    monkeypatch.setattr(Forwarder, "send", exploding(event["DeviceToken"]))
    monkeypatch.setenv("DELIVERY_QUEUE_NAME", "missing-queue")
    response = await call("events", event)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert any("enqueue for redelivery failed" in r.getMessage() for r in caplog.records)
    # the autouse leak check fails the test if the token (in the bug's message) was logged
