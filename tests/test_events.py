"""shared/events.py: the event contract apps must follow."""

from __future__ import annotations

import json

import pytest

from shared.events import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    OpenEvent,
    PayloadTooLarge,
    UnsupportedMediaType,
    check_media_type,
    parse_batch,
    parse_event,
    read_canonical,
)

GUID = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"


def body(**fields) -> bytes:
    event = {"TrackingId": GUID, "DeviceToken": "abc123", "PushNotificationStatus": 1}
    event.update(fields)
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def bad_fields(raw: bytes) -> set[str]:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    return {e.field for e in info.value.errors}


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (1, 1),
        ("1", 1),
        ("Opened", 1),
        ("opened", 1),
        ("OPENED", 1),
        (0, 0),
        ("0", 0),
        ("Clicked", 0),
        ("clicked", 0),
    ],
)
def test_status_forms_are_forwarded_as_integers(given, sent):
    assert parse_event(body(PushNotificationStatus=given)).status == sent


@pytest.mark.parametrize("given", [True, False, None, 1.5, 1.0, 2, -1, "2", " 1", "open", "", [], {}])
def test_other_statuses_are_rejected(given):
    assert bad_fields(body(PushNotificationStatus=given)) == {"PushNotificationStatus"}


@pytest.mark.parametrize(
    "given",
    [
        "00000000-0000-0000-0000-000000000000",
        "not-a-guid",
        "{" + GUID + "}",
        GUID + "\n",
        GUID[:-1],
        GUID.replace("-", ""),
        12345,
        None,
    ],
)
def test_bad_tracking_ids_are_rejected(given):
    assert bad_fields(body(TrackingId=given)) == {"TrackingId"}


def test_tracking_id_is_case_insensitive_and_kept_as_sent():
    assert parse_event(body(TrackingId=GUID.lower())).tracking_id == GUID.lower()
    assert parse_event(body(TrackingId=GUID)).tracking_id == GUID


@pytest.mark.parametrize(
    "token",
    [
        "a" * 64,  # APNs hex
        "dXNlcjpmY20tdG9rZW4:APA91bH-x_Yz" + "Q" * 140,  # FCM: not hex
        "x" * 4096,
    ],
)
def test_device_tokens_of_both_platforms_are_accepted(token):
    assert parse_event(body(DeviceToken=token)).device_token == token


@pytest.mark.parametrize(
    "token",
    [
        "",
        " ",
        "ab cd",
        "ab\tcd",
        "ab\ncd",
        "ab\x00cd",
        "ab\u200bcd",
        "ab\u2028cd",
        "ab\ud800cd",
        "x" * 4097,
        42,
        None,
    ],
)
def test_bad_device_tokens_are_rejected(token):
    assert bad_fields(body(DeviceToken=token)) == {"DeviceToken"}


def test_missing_fields_are_each_named():
    assert bad_fields(b"{}") == {"TrackingId", "DeviceToken", "PushNotificationStatus"}


def test_unknown_fields_are_ignored_and_not_forwarded():
    event = parse_event(body(Extra="x", link="https://example.com"))
    assert event.to_upstream() == {"TrackingId": GUID, "DeviceToken": "abc123", "PushNotificationStatus": 1}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b'"x"',
        b"null",
        b"\xff\xfe{}",
        b"{} {}",
        b'{"TrackingId": 1' + b"9" * 5000 + b"}",
        b"[" * 30_000 + b"]" * 30_000,
    ],
)
def test_malformed_bodies_are_rejected_as_body_errors(raw):
    assert bad_fields(raw) == {"body"}


def test_duplicate_keys_are_rejected():
    raw = (
        b'{"TrackingId": "%s", "DeviceToken": "a", "PushNotificationStatus": 1, "DeviceToken": "b"}'
        % GUID.encode()
    )
    with pytest.raises(InvalidEvent, match="duplicate"):
        parse_event(raw)


def test_body_over_64_kib_is_too_large():
    with pytest.raises(PayloadTooLarge):
        parse_event(b" " * (MAX_EVENT_BYTES + 1))
    parse_event(body() + b" " * (MAX_EVENT_BYTES - len(body())))  # exactly at the cap is fine


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'{"TrackingId":"%s","DeviceToken":"fcm:APA91b-_x","PushNotificationStatus":1}' % GUID.encode(),
            OpenEvent(GUID, "fcm:APA91b-_x", 1),
        ),
        (
            b' {\n  "TrackingId" : "%s",\r\n\t"DeviceToken": "!#$[]~",  '
            b'"PushNotificationStatus" :"cLiCkEd"}\n' % GUID.lower().encode(),
            OpenEvent(GUID.lower(), "!#$[]~", 0),
        ),
        (
            b'{"TrackingId":"%s","DeviceToken":"a","PushNotificationStatus":"0"}' % GUID.encode(),
            OpenEvent(GUID, "a", 0),
        ),
    ],
)
def test_canonical_bodies_are_read_by_the_fast_path(raw, expected):
    assert read_canonical(raw) == expected
    assert parse_event(raw) == expected


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        (b'{"DeviceToken":"a","TrackingId":"%s","PushNotificationStatus":1}', True),  # other order
        (b'{"TrackingId":"%s","DeviceToken":"a","PushNotificationStatus":1,"x":1}', True),  # extra member
        (b'{"TrackingId":"%s","DeviceToken":"a\\u0062","PushNotificationStatus":1}', True),  # escape
        ('{"TrackingId":"%s","DeviceToken":"\u00e9","PushNotificationStatus":1}'.encode(), True),
        (b'{"TrackingId":"%s","DeviceToken":"a","PushNotificationStatus":-0}', True),
        (b'{"TrackingId":"%s","DeviceToken":"a","PushNotificationStatus":1.0}', False),
        (b'{"TrackingId":"%s","DeviceToken":"a","PushNotificationStatus":"1 "}', False),
        (b'{"TrackingId":"%s","DeviceToken":"a b","PushNotificationStatus":1}', False),
        (b'{"TrackingId":"%s","DeviceToken":"a","PushNotificationStatus":1,}', False),
        (b'\xef\xbb\xbf{"TrackingId":"%s","DeviceToken":"a","PushNotificationStatus":1}', False),  # BOM
    ],
)
def test_other_shapes_are_left_to_the_general_path(raw, accepted):
    raw = raw.replace(b"%s", GUID.encode())
    assert read_canonical(raw) is None
    if accepted:
        assert parse_event(raw).tracking_id == GUID
    else:
        with pytest.raises(InvalidEvent):
            parse_event(raw)


def test_the_all_zero_guid_is_refused_with_its_reason_on_the_fast_path_shape():
    zero = b"00000000-0000-0000-0000-000000000000"
    raw = b'{"TrackingId":"%s","DeviceToken":"a","PushNotificationStatus":1}' % zero
    assert read_canonical(raw) is None
    with pytest.raises(InvalidEvent, match="all-zero"):
        parse_event(raw)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "text/json",
        "application/vnd.app+json",
    ],
)
def test_json_media_types_are_accepted(content_type):
    check_media_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
def test_other_media_types_are_refused(content_type):
    with pytest.raises(UnsupportedMediaType):
        parse_event(body(), content_type)


def test_batch_items_are_validated_one_by_one_in_order():
    items = parse_batch(
        json.dumps(
            [json.loads(body()), {"TrackingId": "x"}, json.loads(body(TrackingId=GUID.lower()))]
        ).encode()
    )
    assert isinstance(items[0], OpenEvent) and isinstance(items[2], OpenEvent)
    assert isinstance(items[1], InvalidEvent)
    assert {e.field for e in items[1].errors} == {"TrackingId", "DeviceToken", "PushNotificationStatus"}


@pytest.mark.parametrize("raw", [b"[]", b"{}", json.dumps([{}] * 101).encode()])
def test_batch_shape_errors_reject_the_whole_request(raw):
    with pytest.raises(InvalidEvent):
        parse_batch(raw)
