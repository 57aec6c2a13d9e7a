"""Redelivery of stored events that outlasts long CIJ outages (the `redeliver` queue trigger).

Each call ends the message it was given in exactly one way: CIJ took the event; CIJ rejected it
(400, dropped with a warning); it is stored again, invisible for a growing delay, with one more
failed attempt counted; or, REDELIVERY_MAX_AGE_HOURS after it was first received (or when it is
not a relay message at all), it goes to the poison queue with the reason. Only when that store
fails does the call raise: the host then retries the message it still holds (and after host.json's
maxDequeueCount moves it to the poison queue itself). The event is never both stored again and
delivered by one call.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from .circuit import CircuitOpen
from .delivery_queue import DeliveryQueue, EnqueueFailed, read_message
from .events import InvalidEvent, OpenEvent
from .forwarder import UpstreamMisconfigured, UpstreamRejected, UpstreamUnavailable
from .metrics import count_redelivery
from .settings import Settings
from .target import TargetUnavailable

log = logging.getLogger("cij_relay.redelivery")

FIRST_DELAY_SECONDS = 60.0
JITTER = 0.2  # delays are shortened by up to this fraction, so that a backlog does not return at once


class RedeliveryFailed(Exception):
    """A queued event could neither be delivered nor stored again; raised so the host retries it."""


def next_delay(attempts: int, max_delay: float, hint: float | None = None) -> int:
    """Whole seconds before the next redelivery, after `attempts` failed ones: about a minute (the
    max delay, if shorter), doubling, capped by `max_delay`; CIJ's Retry-After when longer."""
    base = min(max_delay, min(FIRST_DELAY_SECONDS, max_delay) * 2 ** min(attempts, 32))
    delay = base * (1 - JITTER * random.random())  # noqa: S311  # nosec B311
    if hint:
        delay = max(delay, min(hint, max_delay))
    return max(1, math.ceil(delay))


def fingerprint(device_token: str) -> str:
    """A short, non-reversible tag for correlating a device in logs."""
    return hashlib.sha256(device_token.encode()).hexdigest()[:10]


class Redelivery:
    """Handles one stored message: deliver it through `send`, or store it again, or give up on it."""

    def __init__(
        self,
        settings: Settings,
        store: DeliveryQueue,
        send: Callable[[OpenEvent], Awaitable[int]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings, self._store, self._send, self._clock = settings, store, send, clock

    async def handle(self, body: bytes) -> None:
        """Deliver, reschedule or poison the message `body`; RedeliveryFailed if storage fails."""
        try:
            event, received_at, attempts = read_message(body)
        except InvalidEvent:
            log.warning("a queue message that is not a relay event goes to the poison queue")
            count_redelivery("invalid")
            await self._poison(body, "not a relay event: the message cannot be decoded")
            return
        tag = (event.tracking_id, fingerprint(event.device_token), received_at.isoformat())
        hint: float | None = None
        outcome = "unavailable"
        try:
            sent = await self._send(event)
        except UpstreamRejected:
            log.warning("redelivery dropped: CIJ answered 400 tracking_id=%s device=%s received_at=%s", *tag)
            count_redelivery("rejected")
            return
        except CircuitOpen as exc:  # CIJ is not called: the event waits for the circuit to close
            failure, hint = "circuit open", float(exc.retry_after)
        except UpstreamUnavailable as exc:
            failure, hint = str(exc), exc.hint
        except UpstreamMisconfigured as exc:
            failure, outcome = str(exc), "misconfigured"
        except TargetUnavailable as exc:
            failure = str(exc)
        except Exception as exc:  # a bug: the event is kept, and given up on with the rest after the max age
            from .relay import where  # the relay's own description of a bug: type and place, no values

            failure = "internal error"
            log.error("redelivery failed unexpectedly (%s) tracking_id=%s", where(exc), tag[0])
        else:
            log.info("redelivered tracking_id=%s device=%s received_at=%s attempts=%d", *tag, sent)
            count_redelivery("accepted")
            return
        count_redelivery(outcome)
        await self._retry_later(body, event, received_at, attempts, failure, hint, tag)

    async def _retry_later(
        self,
        body: bytes,
        event: OpenEvent,
        received_at: datetime,
        attempts: int,
        failure: str,
        hint: float | None,
        tag: tuple[str, str, str],
    ) -> None:
        """Store the event again with a growing delay, or, once it is too old, poison it."""
        max_age = self._settings.redelivery_max_age
        age = self._clock() - received_at.timestamp()
        if age >= max_age:
            reason = (
                f"not delivered within REDELIVERY_MAX_AGE_HOURS ({max_age / 3600:g} h) of being received, "
                f"after {attempts + 1} redeliveries; last failure: {failure}"
            )
            log.warning("redelivery given up: %s tracking_id=%s device=%s received_at=%s", reason, *tag)
            await self._poison(body, reason)
            return
        delay = min(
            next_delay(attempts, self._settings.redelivery_max_delay, hint), max(1, math.ceil(max_age - age))
        )
        try:
            await self._store.put(event, received_at, attempts + 1, delay)
        except EnqueueFailed as exc:
            log.warning("redelivery failed and could not be rescheduled (%s); the host will retry", exc)
            raise RedeliveryFailed(f"rescheduling failed: {exc}") from None
        log.info(
            "redelivery failed (%s); next try in %d s tracking_id=%s device=%s received_at=%s attempts=%d",
            failure,
            delay,
            *tag,
            attempts + 1,
        )

    async def _poison(self, body: bytes, reason: str) -> None:
        try:
            await self._store.poison(body, reason)
        except EnqueueFailed as exc:
            log.warning("moving a message to the poison queue failed (%s); the host will retry", exc)
            raise RedeliveryFailed(f"poison queue unavailable: {exc}") from None
