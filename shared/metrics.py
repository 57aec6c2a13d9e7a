"""The relay's metrics, through the OpenTelemetry API: whichever meter provider is installed gets
them (Azure Monitor in Azure, an in-memory reader in tests); with none, they cost next to nothing.

The names and attributes are a contract read by the alerts and the workbook in infra/:
- `relay.events` (counter): `route` = events|batch|redeliver, `outcome` = accepted|queued|invalid|
  rejected|unavailable|misconfigured. Derived from the answer in one place (`outcome`), so every
  answer the relay gives is counted, whichever module decided it.
- `relay.cij.duration` (histogram, s): one per event forwarded, first attempt to CIJ's final answer;
  `result` = 2xx|400|other_4xx|5xx|error.
- `relay.target.refreshes` (counter): reads of the org ID and endpoint; `result` = ok|failed.
- `relay.queue.depth` (gauge): `queue` = pending|poison, set by the timer function.
Attribute values come only from the fixed sets above: never a token, TrackingId, org ID or endpoint.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from opentelemetry import metrics

ROUTES = ("events", "batch", "redeliver")
OUTCOMES = ("accepted", "queued", "invalid", "rejected", "unavailable", "misconfigured")
CIJ_RESULTS = ("2xx", "400", "other_4xx", "5xx", "error")
QUEUES = ("pending", "poison")

# The problem types (shared/responses.py) that tell CIJ's refusals apart from the relay's own.
_PROBLEM = "urn:cij-push-relay:problem:"
_REJECTED = _PROBLEM + "rejected-upstream"
_MISCONFIGURED = _PROBLEM + "upstream-misconfigured"

# A proxy meter: instruments created here follow whatever provider is installed later (the Python
# worker installs Azure Monitor's before it imports the app; tests install an in-memory reader).
_meter = metrics.get_meter("cij_relay")
EVENTS = _meter.create_counter("relay.events", unit="{event}", description="Events answered or redelivered")
CIJ_DURATION = _meter.create_histogram(
    "relay.cij.duration", unit="s", description="Time from the first attempt to CIJ's final answer"
)
TARGET_REFRESHES = _meter.create_counter(
    "relay.target.refreshes", unit="{read}", description="Reads of the CIJ org ID and endpoint"
)
QUEUE_DEPTH = _meter.create_gauge(
    "relay.queue.depth", unit="{message}", description="Messages in the redelivery and poison queues"
)

# Attribute sets built once: recording then allocates nothing per event.
_EVENT_ATTRS = {(r, o): {"route": r, "outcome": o} for r in ROUTES for o in OUTCOMES}
_CIJ_ATTRS = {r: {"result": r} for r in CIJ_RESULTS}
_REFRESH_ATTRS = {True: {"result": "ok"}, False: {"result": "failed"}}
_QUEUE_ATTRS = {q: {"queue": q} for q in QUEUES}


def outcome_of(status: int, problem_type: object = None, queued: bool = False) -> str:
    """The `outcome` of one answer: its status, its problem type and whether it was queued."""
    if status < 300:
        return "queued" if queued else "accepted"
    if status < 500:
        return "rejected" if problem_type == _REJECTED else "invalid"
    return "misconfigured" if problem_type == _MISCONFIGURED else "unavailable"


def _problem_type(body: object) -> object:
    return body.get("type") if isinstance(body, Mapping) else None


def count_reply(route: str, reply: Any) -> None:
    """Count the events one answer of `route` covers: one, or each item of a batch's results."""
    if route == "batch" and reply.status == 200 and isinstance(reply.body, Mapping):
        for item in reply.body.get("results", ()):
            status = item.get("status", 500)
            queued = item.get("delivery") == "queued"
            EVENTS.add(1, _EVENT_ATTRS[route, outcome_of(status, _problem_type(item.get("error")), queued)])
        return
    # A single event, or a batch refused as a whole (its items were never read): counted once.
    queued = reply.headers.get("X-Delivery") == "queued"
    EVENTS.add(1, _EVENT_ATTRS[route, outcome_of(reply.status, _problem_type(reply.body), queued)])


R = TypeVar("R")


def counted(route: str, reply: R) -> R:
    """`reply`, once counted for `route` (for use where a route returns its answer)."""
    count_reply(route, reply)
    return reply


def count_redelivery(outcome: str) -> None:
    """Count one queued event the redelivery function handled, with its outcome."""
    EVENTS.add(1, _EVENT_ATTRS["redeliver", outcome])


def cij_result(status: int | None) -> str:
    """The `result` of CIJ's final answer (None: no answer, e.g. a timeout or a refused connection)."""
    if status is None:
        return "error"
    if 200 <= status < 300:
        return "2xx"
    if status == 400:
        return "400"
    if 400 < status < 500:
        return "other_4xx"
    if 500 <= status < 600:
        return "5xx"
    return "error"  # 1xx/3xx or nonsense: no usable answer


P = ParamSpec("P")


def timed_cij(send: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorate the forwarder's send: record `relay.cij.duration` with the final answer's class.
    A success is 2xx; a failure reads the status from the exception's `upstream_status`."""

    @functools.wraps(send)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            result = await send(*args, **kwargs)
        except Exception as exc:
            status = getattr(exc, "upstream_status", None)
            CIJ_DURATION.record(time.perf_counter() - started, _CIJ_ATTRS[cij_result(status)])
            raise
        CIJ_DURATION.record(time.perf_counter() - started, _CIJ_ATTRS["2xx"])
        return result

    return timed


def target_refreshed(ok: bool) -> None:
    """Count one read of the org ID and endpoint (Key Vault in Azure)."""
    TARGET_REFRESHES.add(1, _REFRESH_ATTRS[ok])


def queue_depth(queue: str, messages: int) -> None:
    """Set the depth of the `pending` or `poison` queue."""
    QUEUE_DEPTH.set(messages, _QUEUE_ATTRS[queue])


def flush(timeout_seconds: float = 10.0) -> None:
    """Export what has been recorded now (blocking), when the installed provider can: a Flex
    instance may be reclaimed before the next periodic export."""
    force_flush = getattr(metrics.get_meter_provider(), "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_millis=int(timeout_seconds * 1000))
