"""Property tests of the batch parser (shared/events.py): items judged one by one, in order, and the
count cap. Seeded, bounded."""

from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from shared.events import MAX_BATCH_EVENTS, InvalidEvent, OpenEvent, parse_batch, validate_event
from tests.strategies import SEEDED, json_values, valid_events


@SEEDED
@given(
    st.lists(
        st.one_of(valid_events().map(lambda s: s[0]), json_values, st.builds(dict)),
        min_size=1,
        max_size=MAX_BATCH_EVENTS,
    )
)
def test_batch_items_are_judged_one_by_one_in_order(items):
    results = parse_batch(json.dumps(items).encode(), "application/json")
    assert len(results) == len(items)
    for item, result in zip(items, results, strict=True):
        try:
            expected: OpenEvent | None = validate_event(item)
        except InvalidEvent:
            expected = None
        if expected is None:
            assert isinstance(result, InvalidEvent)
        else:
            assert result == expected


@SEEDED
@given(st.integers(MAX_BATCH_EVENTS + 1, 3 * MAX_BATCH_EVENTS))
def test_batches_over_the_count_cap_are_refused_whole(count):
    items = [{"TrackingId": str(uuid.uuid4()), "DeviceToken": "t", "PushNotificationStatus": 1}] * count
    try:
        parse_batch(json.dumps(items).encode())
    except InvalidEvent as exc:
        assert [e.field for e in exc.errors] == ["body"]
    else:
        raise AssertionError("an oversized batch was accepted")
