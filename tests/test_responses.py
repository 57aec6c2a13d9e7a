"""shared/responses.py: every outcome's HTTP answer, in one table."""

from __future__ import annotations

import json

import pytest

from shared.delivery_queue import EnqueueFailed
from shared.events import FieldError, InvalidEvent, PayloadTooLarge, UnsupportedMediaType
from shared.forwarder import UpstreamMisconfigured, UpstreamRejected, UpstreamUnavailable
from shared.responses import PROBLEM_JSON, accepted, from_error
from shared.settings import ConfigError
from shared.target import TargetUnavailable


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (InvalidEvent(FieldError("TrackingId", "bad")), 400, None),
        (PayloadTooLarge(65536), 413, None),
        (UnsupportedMediaType("text/plain"), 415, None),
        (UpstreamRejected(), 400, None),
        (UpstreamUnavailable(504, "timed out", 7), 504, "7"),
        (UpstreamUnavailable(503, "HTTP 429", 30), 503, "30"),
        (UpstreamMisconfigured(404), 502, "60"),
        (TargetUnavailable("vault down", retry_after=4), 503, "4"),
        (EnqueueFailed("ServiceRequestError"), 503, "5"),
        (ConfigError("FORWARD_TIMEOUT_SECONDS must be a number"), 503, "60"),
        (RuntimeError("bug"), 503, "5"),  # a bug: retryable, never a bare 500
    ],
)
def test_errors_map_to_problem_details(error, status, retry_after):
    reply = from_error(error)
    body = json.loads(reply.body_bytes())
    assert (reply.status, reply.content_type, body["status"]) == (status, PROBLEM_JSON, status)
    assert reply.headers.get("Retry-After") == retry_after
    assert body["type"].startswith("urn:cij-push-relay:problem:") and body["title"] and body["detail"]


def test_invalid_event_names_each_field():
    body = from_error(InvalidEvent(FieldError("TrackingId", "a"), FieldError("DeviceToken", "b"))).body
    assert body["errors"] == [{"field": "TrackingId", "detail": "a"}, {"field": "DeviceToken", "detail": "b"}]


def test_internal_details_never_reach_the_body():
    for error in (
        ConfigError("CIJ_ORG_ID secret-value"),
        RuntimeError("https://org.crm.dynamics.com"),
        TargetUnavailable("reading https://kv failed"),
        UpstreamUnavailable(502, "secret", 5),
    ):
        text = from_error(error).body_bytes().decode()
        assert "secret" not in text and "https://" not in text.replace("urn:", "")


def test_accepted_and_queued():
    assert (accepted().status, accepted().headers) == (202, {})
    assert accepted(queued=True).headers == {"X-Delivery": "queued"}
