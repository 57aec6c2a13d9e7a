"""Circuit breaker around CIJ, per instance: after repeated transient failures, stop waiting for it.

closed → (CIRCUIT_FAILURE_THRESHOLD consecutive events failed on a transient fault) → open →
(CIRCUIT_PROBE_SECONDS, or longer when CIJ's Retry-After asked for it) → half-open: one probe →
closed on its success, open again on its failure. While open, callers get CircuitOpen at once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from .forwarder import UpstreamMisconfigured, UpstreamRejected, UpstreamUnavailable

log = logging.getLogger("cij_relay.circuit")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitOpen(Exception):
    """CIJ is not called now: it failed repeatedly; `retry_after` is the time until the next probe."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"CIJ circuit open; next probe in {retry_after} s")
        self.retry_after = retry_after
        self.reason, self.attempts = "circuit open", 0  # as the upstream errors carry them


class Circuit:
    """Counts consecutive transient failures; lets one probe through per probe interval while open."""

    def __init__(
        self, threshold: int, probe_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold, self._probe_seconds, self._clock = threshold, probe_seconds, clock
        self._failures = 0
        self._open = False
        self._next_probe = 0.0
        self._probing = False

    @property
    def state(self) -> str:
        """`closed`, `open` (callers are refused) or `half-open` (a probe is due or in flight)."""
        if not self._open:
            return CLOSED
        return HALF_OPEN if self._probing or self._clock() >= self._next_probe else OPEN

    def is_closed(self) -> bool:
        """True while calls go to CIJ normally (retries are worth making)."""
        return not self._open

    def retry_after(self) -> int:
        """Whole seconds until CIJ will next be tried (at least 1)."""
        wait = self._probe_seconds if self._probing else self._next_probe - self._clock()
        return max(1, math.ceil(wait))

    def enter(self) -> bool:
        """Admit one call: False for a normal call, True when it is the probe; CircuitOpen otherwise."""
        if not self._open:
            return False
        if self._probing or self._clock() < self._next_probe:
            raise CircuitOpen(self.retry_after())
        self._probing = True
        return True

    def settle(self, probe: bool, error: BaseException | None) -> None:
        """Record how an admitted call ended: None (CIJ took it), or the exception it raised."""
        if error is None or isinstance(error, UpstreamRejected | UpstreamMisconfigured):
            self._answered()  # CIJ answered: it is up, whatever it thought of the event
        elif isinstance(error, UpstreamUnavailable):
            self._failed(probe, error.hint)
        elif probe:  # cancelled or failed before CIJ answered: free the probe, keep the interval
            self._probing = False
            self._next_probe = self._clock() + self._probe_seconds

    def _answered(self) -> None:
        self._failures = 0
        if self._open:
            self._open = self._probing = False
            log.warning("CIJ circuit closed: CIJ answered again")

    def _failed(self, probe: bool, hint: float | None) -> None:
        now, hold = self._clock(), max(self._probe_seconds, hint or 0.0)
        if probe:
            self._probing = False
            self._next_probe = now + hold
        elif self._open:  # an event admitted before the circuit opened: honour CIJ's Retry-After
            if hint:
                self._next_probe = max(self._next_probe, now + hint)
        else:
            self._failures += 1
            if self._failures >= self._threshold:
                self._open, self._next_probe = True, now + hold
                log.warning(
                    "CIJ circuit opened after %d consecutive transient failures; next probe in %.1f s",
                    self._failures,
                    hold,
                )
