"""Per-device rate limit: a token bucket per device token, in memory, per instance."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

# Most devices remembered at once (least recently seen forgotten first). An entry takes ~240 bytes,
# so the limiter holds at most ~25 MB (~35 MB while its table grows) however many devices call, and
# each event costs the same however many are remembered. A device is forgotten only
# after this many other devices sent an event since its own last one; forgetting it loses nothing
# unless its bucket was not yet full again (then it starts over with a full one).
MAX_DEVICES = 100_000


class RateLimited(Exception):
    """The device sent more events than DEVICE_RATE_PER_MINUTE / DEVICE_RATE_BURST allow (429)."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"device over its rate limit; next event in {wait:.1f} s")
        self.retry_after = max(1, math.ceil(wait))


class DeviceLimiter:
    """Token buckets (capacity `burst`, refilled at `per_minute` / 60 per second) keyed by a hash of
    the device token, never the token itself.

    Each bucket is stored as one number, the time at which it would be full again (the generic cell
    rate algorithm's "theoretical arrival time"): a device with no entry, or an entry in the past,
    has a full bucket. Checks are synchronous, so concurrent requests on the loop cannot interleave.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        max_devices: int = MAX_DEVICES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = 60.0 / per_minute  # seconds for one token to come back
        self._window = burst * self._interval  # how far ahead of now a bucket may be drawn
        self._max_devices = max_devices
        self._clock = clock
        self._full_at: OrderedDict[int, float] = OrderedDict()

    def __len__(self) -> int:
        """Devices currently remembered."""
        return len(self._full_at)

    def acquire(self, device_token: str) -> float:
        """Take a token for one event: 0.0 when it may pass, otherwise the seconds until it would
        (nothing is taken then)."""
        # hash() of a str is SipHash, keyed per process: not reversible, and cached on the string.
        key = hash(device_token)
        now = self._clock()
        entries = self._full_at
        full_at = entries.get(key)
        if full_at is None:
            if len(entries) >= self._max_devices:
                entries.popitem(last=False)
            entries[key] = now + self._interval
            return 0.0
        entries.move_to_end(key)
        full_at = max(full_at, now) + self._interval
        over = full_at - now - self._window
        if over > 0:
            return over
        entries[key] = full_at
        return 0.0


def make_limiter(per_minute: float, burst: int) -> DeviceLimiter | None:
    """The limiter the settings ask for; None when DEVICE_RATE_PER_MINUTE is 0 (no limit)."""
    return DeviceLimiter(per_minute, burst) if per_minute > 0 else None
