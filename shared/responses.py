"""The one place where outcomes become HTTP answers (RFC 9457 problem details for errors)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .appcheck import AppCheckRefused, AppCheckUnavailable
from .circuit import CircuitOpen
from .delivery_queue import EnqueueFailed
from .events import InvalidEvent, PayloadTooLarge, UnsupportedMediaType
from .forwarder import UpstreamMisconfigured, UpstreamRejected, UpstreamUnavailable
from .ratelimit import RateLimited
from .settings import ConfigError
from .target import TargetUnavailable

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer independent of any web framework."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @cached_property
    def _encoded(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body, separators=(",", ":")).encode()

    def body_bytes(self) -> bytes:
        """The serialised body (empty when there is none); encoded once per Reply."""
        return self._encoded


def problem(
    status: int, kind: str, title: str, detail: str, retry_after: int | None = None, **extra: Any
) -> Reply:
    """An application/problem+json reply; callers give 5xx replies a Retry-After."""
    body = {
        "type": f"urn:cij-push-relay:problem:{kind}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply(status, body, headers, PROBLEM_JSON)


# The two 202 answers, each the same every time: built (and, through _encoded, serialised) once.
ACCEPTED = Reply(202, {"status": "accepted"})
QUEUED = Reply(202, {"status": "queued"}, {"X-Delivery": "queued"})


# The same for every request App Check refuses (the reason is counted and logged, not answered).
APP_CHECK_REFUSED = Reply(
    401,
    problem(
        401,
        "app-check-failed",
        "App Check token missing or invalid",
        "Send a valid Firebase App Check token of this app in the X-Firebase-AppCheck header.",
    ).body,
    {"WWW-Authenticate": "X-Firebase-AppCheck"},
    PROBLEM_JSON,
)


def accepted(queued: bool = False) -> Reply:
    """202: CIJ took the event (ACCEPTED), or it is stored and will be delivered (QUEUED)."""
    return QUEUED if queued else ACCEPTED


def from_error(exc: BaseException) -> Reply:
    """Map a domain error to its HTTP answer. Bodies never hold the org ID, endpoint or token."""
    if isinstance(exc, InvalidEvent):
        errors = [{"field": e.field, "detail": e.detail} for e in exc.errors]
        return problem(
            400,
            "invalid-event",
            "Invalid event",
            "The request does not follow the event contract.",
            errors=errors,
        )
    if isinstance(exc, PayloadTooLarge):
        return problem(
            413, "payload-too-large", "Payload too large", f"The body must be at most {exc.limit} bytes."
        )
    if isinstance(exc, UnsupportedMediaType):
        return problem(
            415, "unsupported-media-type", "Unsupported media type", "Send the event as application/json."
        )
    if isinstance(exc, AppCheckRefused):
        return APP_CHECK_REFUSED
    if isinstance(exc, AppCheckUnavailable):
        return problem(
            503,
            "app-check-unavailable",
            "App Check unavailable",
            "The relay cannot read Firebase App Check's public keys right now; retry later.",
            exc.retry_after,
        )
    if isinstance(exc, RateLimited):
        return problem(
            429,
            "rate-limited",
            "Too many events from this device",
            "The device sent more events than the relay accepts per minute; nothing was forwarded. "
            "Send it again after the given delay.",
            exc.retry_after,
        )
    if isinstance(exc, UpstreamRejected):
        return problem(
            400,
            "rejected-upstream",
            "Rejected by Customer Insights - Journeys",
            "CIJ answered 400 for this event; do not retry it unchanged.",
        )
    if isinstance(exc, UpstreamUnavailable):
        return problem(
            exc.status,
            "upstream-unavailable",
            "Customer Insights - Journeys unavailable",
            "The event was not delivered; retry after the given delay.",
            exc.retry_after,
        )
    if isinstance(exc, CircuitOpen):
        return problem(
            503,
            "upstream-unavailable",
            "Customer Insights - Journeys unavailable",
            "CIJ is failing; the relay is not calling it until the next probe. Retry after the given delay.",
            exc.retry_after,
        )
    if isinstance(exc, UpstreamMisconfigured):
        return problem(
            502,
            "upstream-misconfigured",
            "Relay misconfigured",
            "The relay's CIJ target refused the call; the operator has been told.",
            60,
        )
    if isinstance(exc, TargetUnavailable):
        return problem(
            503,
            "target-unavailable",
            "Relay target unavailable",
            "The relay cannot read its CIJ settings right now; retry later.",
            exc.retry_after,
        )
    if isinstance(exc, EnqueueFailed):
        return problem(
            503,
            "delivery-unavailable",
            "Delivery unavailable",
            "CIJ is unavailable and the event could not be stored; retry later.",
            5,
        )
    if isinstance(exc, ConfigError):
        return problem(
            503, "settings-invalid", "Relay misconfigured", "The relay's settings are invalid.", 60
        )
    # Anything else is a bug in the relay: still a documented, retryable answer, never a bare 500.
    return problem(503, "internal", "Internal error", "The relay failed unexpectedly; retry later.", 5)
