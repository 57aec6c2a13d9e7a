"""Every answer the code can give (errors, accepted, queued, batch results, health) follows openapi.yaml."""

from __future__ import annotations

import json

import pytest

from shared.appcheck import AppCheckRefused, AppCheckUnavailable
from shared.delivery_queue import EnqueueFailed
from shared.events import FieldError, InvalidEvent, PayloadTooLarge, UnsupportedMediaType
from shared.forwarder import UpstreamMisconfigured, UpstreamRejected, UpstreamUnavailable
from shared.ratelimit import RateLimited
from shared.relay import Relay
from shared.responses import accepted, from_error
from shared.settings import ConfigError, load
from shared.target import TargetUnavailable
from tests.openapi_spec import GUID, SPEC, resolve, response_validator, validator

REPLIES = {
    "invalid": from_error(InvalidEvent(FieldError("TrackingId", "x"), FieldError("body", "y"))),
    "too large": from_error(PayloadTooLarge(65536)),
    "media": from_error(UnsupportedMediaType("text/plain")),
    "rejected": from_error(UpstreamRejected("no")),
    "rate limited": from_error(RateLimited(2.5)),
    "app check refused": from_error(AppCheckRefused("expired")),
    "app check keys unavailable": from_error(AppCheckUnavailable(10)),
    "502": from_error(UpstreamUnavailable(502, "down", 5)),
    "503": from_error(UpstreamUnavailable(503, "throttled", 30)),
    "504": from_error(UpstreamUnavailable(504, "slow", 5)),
    "misconfigured": from_error(UpstreamMisconfigured(404)),
    "target": from_error(TargetUnavailable("vault down", 4)),
    "enqueue": from_error(EnqueueFailed("x")),
    "settings": from_error(ConfigError("bad")),
}


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_each_error_reply_follows_the_spec_of_the_single_route(name):
    reply = REPLIES[name]
    check = response_validator("/events", "post", reply.status, reply.content_type)
    body = json.loads(reply.body_bytes())
    assert check.is_valid(body), list(check.iter_errors(body))
    if reply.status >= 500:
        assert int(reply.headers["Retry-After"]) >= 1


def test_accepted_and_queued_replies_follow_the_spec():
    check = response_validator("/events", "post", 202, "application/json")
    headers = resolve(SPEC["paths"]["/events"]["post"]["responses"]["202"]["headers"])
    for reply in (accepted(), accepted(queued=True)):
        assert check.is_valid(json.loads(reply.body_bytes()))
        for name, value in reply.headers.items():
            assert validator(headers[name]["schema"]).is_valid(value)


async def test_batch_results_for_every_outcome_follow_the_spec():
    relay = Relay(load({"CIJ_ORG_ID": GUID, "CIJ_PUBLIC_ENDPOINT": "https://x.dynamics.com"}))
    outcomes = iter([REPLIES["502"], REPLIES["503"], REPLIES["504"], REPLIES["rejected"], accepted(True)])

    async def deliver(event, deadline=None):
        return next(outcomes, accepted())

    relay.deliver = deliver  # type: ignore[method-assign]
    items = [{"TrackingId": GUID, "DeviceToken": "t", "PushNotificationStatus": 1}] * 6
    reply = await relay.handle_batch(json.dumps([*items, {"bad": 1}]).encode(), "application/json")
    check = response_validator("/events/batch", "post", 200, "application/json")
    assert reply.status == 200 and check.is_valid(reply.body), list(check.iter_errors(reply.body))
    results = reply.body["results"]
    assert [r["status"] for r in results] == [502, 503, 504, 400, 202, 202, 400]
    assert all(r["retryAfter"] >= 1 for r in results if r["status"] >= 500)
    assert results[4]["delivery"] == "queued"
    await relay.aclose()


async def test_health_answers_follow_the_spec():
    class Down:
        async def read(self):
            raise OSError("down")

        async def close(self):
            return None

    settings_ = load({"CIJ_ALLOWED_HOSTS": "127.0.0.1"})
    up = Relay(load({"CIJ_ORG_ID": GUID, "CIJ_PUBLIC_ENDPOINT": "https://x.dynamics.com"}))
    down = Relay(settings_, Down())
    for relay, status in ((up, 200), (down, 503)):
        reply = await relay.health()
        assert reply.status == status
        check = response_validator("/health", "get", status, reply.content_type)
        assert check.is_valid(reply.body)
        await relay.aclose()
    problem = REPLIES["settings"]
    assert response_validator("/health", "get", 503, problem.content_type).is_valid(problem.body)
