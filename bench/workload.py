"""The events every mode sends: N distinct valid events, their batches, and how they are cut up."""

from __future__ import annotations

import itertools
import json
import os
import uuid
from dataclasses import dataclass

WARMUP_EVENTS = 1000
BATCH_SIZE = 100
SLICES = 10  # bare and relay alternate (A B B A ...) over this many parts of the N events


def make_events(n: int) -> list[bytes]:
    """N distinct, valid open events as an app sends them (compact JSON, 64-hex device token)."""
    return [
        json.dumps(
            {
                "TrackingId": str(uuid.uuid4()),
                "DeviceToken": os.urandom(32).hex(),
                "PushNotificationStatus": 1,
            },
            separators=(",", ":"),
        ).encode()
        for _ in range(n)
    ]


@dataclass
class Workload:
    """The N events, as single bodies and as batches, and the concurrency they are sent with."""

    bodies: list[bytes]  # the N events, as apps send them
    batches: list[bytes]  # the same events, BATCH_SIZE per JSON array
    concurrency: int
    limit: int  # connector limit: UPSTREAM_MAX_CONNECTIONS
    batch_concurrency: int  # BATCH_CONCURRENCY: events of one batch in flight

    @classmethod
    def build(cls, events: int, concurrency: int, limit: int, batch_concurrency: int) -> Workload:
        """`events` fresh events, batched BATCH_SIZE to a request."""
        bodies = make_events(events)
        batches = [b"[" + b",".join(bodies[i : i + BATCH_SIZE]) + b"]" for i in range(0, events, BATCH_SIZE)]
        return cls(bodies, batches, concurrency, limit, batch_concurrency)

    @property
    def warmup(self) -> list[bytes]:
        """The first WARMUP_EVENTS events (fewer when N is smaller)."""
        return self.bodies[: min(WARMUP_EVENTS, len(self.bodies))]

    def slices(self) -> list[list[bytes]]:
        """The N events cut into SLICES consecutive parts."""
        n = len(self.bodies)
        cuts = [n * i // SLICES for i in range(SLICES + 1)]
        return [self.bodies[a:b] for a, b in itertools.pairwise(cuts) if b > a]
