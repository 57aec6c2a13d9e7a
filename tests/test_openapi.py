"""openapi.yaml and the code agree: routes, methods, auth levels, the event contract and every answer."""

from __future__ import annotations

import copy
import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

import azure.functions as func
import jsonschema_rs
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.delivery_queue import EnqueueFailed
from shared.events import (
    MAX_BATCH_EVENTS,
    MAX_TOKEN_CHARS,
    FieldError,
    InvalidEvent,
    PayloadTooLarge,
    UnsupportedMediaType,
    validate_event,
)
from shared.forwarder import UpstreamMisconfigured, UpstreamRejected, UpstreamUnavailable
from shared.ratelimit import RateLimited
from shared.relay import Relay
from shared.responses import accepted, from_error
from shared.settings import ConfigError, load
from shared.target import TargetUnavailable
from tests.conftest import INDEXED

ROOT = Path(__file__).resolve().parent.parent
SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
HOST = json.loads((ROOT / "host.json").read_text())
GUID = "9b2d7f0e-5c1a-4e8b-9f3d-2a6c8e0b4d17"
PROPERTIES = settings(derandomize=True, database=None, max_examples=400, deadline=None)


def resolve(node: Any) -> Any:
    """`node` with every local `$ref` inlined (the spec has no recursive references)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = SPEC
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(target)
        return {key: resolve(value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item) for item in node]
    return node


def validator(schema: dict[str, Any]) -> jsonschema_rs.Draft4Validator:
    """A JSON Schema validator for an OpenAPI 3.0 schema object (ECMA regex, Unicode classes)."""
    return jsonschema_rs.Draft4Validator(copy.deepcopy(resolve(schema)))


def http_triggers() -> dict[tuple[str, str], Any]:
    """(METHOD, /path) -> trigger, for every HTTP trigger function_app declares."""
    routes = {}
    for function in INDEXED:
        trigger = function.get_trigger()
        if trigger.type == "httpTrigger":
            for method in trigger.methods:
                routes[(str(getattr(method, "value", method)).upper(), f"/{trigger.route}")] = trigger
    return routes


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, /path) -> operation object, for every operation in the spec."""
    return {
        (method.upper(), path): operation
        for path, item in SPEC["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    }


# --- routes, methods and auth ------------------------------------------------------------------


def test_the_spec_is_openapi_3_0_3_and_its_base_path_is_the_hosts_route_prefix():
    assert SPEC["openapi"] == "3.0.3"
    prefix = HOST["extensions"]["http"]["routePrefix"]
    for server in SPEC["servers"]:
        assert server["url"].endswith(f"/{prefix}")


def test_every_route_and_method_in_the_spec_is_an_http_trigger_and_vice_versa():
    assert set(operations()) == set(http_triggers())
    assert len(operations()) == 3


def test_auth_level_of_each_route_matches_its_security_requirement():
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["functionKey"] == {**schemes["functionKey"], "type": "apiKey", "in": "header"}
    assert schemes["functionKey"]["name"] == "x-functions-key"
    for key, trigger in http_triggers().items():
        security = operations()[key].get("security", SPEC["security"])
        if trigger.auth_level == func.AuthLevel.ANONYMOUS:
            assert security == [], key
        else:
            assert trigger.auth_level == func.AuthLevel.FUNCTION, key
            assert security and all(set(req) <= set(schemes) for req in security), key
            assert {"functionKey": []} in security, key


def test_every_answer_has_the_documented_content_type_and_5xx_carry_retry_after():
    for key, operation in operations().items():
        for status, response in operation["responses"].items():
            response = resolve(response)
            if status.startswith("5"):
                assert response["headers"]["Retry-After"]["required"] is True, (key, status)
            if status in ("400", "413", "415", "429", "502", "504"):
                assert set(response["content"]) == {"application/problem+json"}, (key, status)


# --- the event contract ---------------------------------------------------------------------


EVENT = SPEC["components"]["schemas"]["Event"]
EVENT_VALIDATOR = validator(EVENT)
TOKEN = EVENT["properties"]["DeviceToken"]


def accepted_by_code(obj: Any) -> bool:
    try:
        validate_event(obj)
    except InvalidEvent:
        return False
    return True


def test_device_token_characters_agree_with_the_validator_for_every_code_point():
    """`[^\\p{C}\\p{Z}]`, read with Python's Unicode database, is exactly what the validator allows."""
    assert TOKEN["pattern"] == r"^[^\p{C}\p{Z}]+$"
    assert (TOKEN["minLength"], TOKEN["maxLength"]) == (1, MAX_TOKEN_CHARS)
    base = {"TrackingId": GUID, "PushNotificationStatus": 1}
    disagree = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if accepted_by_code({**base, "DeviceToken": chr(code)})
        != (unicodedata.category(chr(code))[0] not in "CZ")
    ]
    assert disagree == []


def test_device_token_length_bounds_agree():
    base = {"TrackingId": GUID, "PushNotificationStatus": 1}
    for length, ok in ((0, False), (1, True), (MAX_TOKEN_CHARS, True), (MAX_TOKEN_CHARS + 1, False)):
        event = {**base, "DeviceToken": "a" * length}
        assert accepted_by_code(event) is ok is EVENT_VALIDATOR.is_valid(event), length


# Characters Python's Unicode database (14.0) has assigned: the Rust validator may know newer ones.
ASSIGNED = st.characters(codec="utf-8").filter(lambda c: unicodedata.category(c) != "Cn")
STATUS_WORDS = ("opened", "clicked", "0", "1")


@st.composite
def any_case(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(STATUS_WORDS))
    variants = {"k": ("k", "K", "\u212a")}  # KELVIN SIGN lower-cases to "k"
    return "".join(draw(st.sampled_from(variants.get(c, (c.lower(), c.upper())))) for c in word)


tracking_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.just("00000000-0000-0000-0000-000000000000"),
    st.uuids().map(lambda u: str(u)[:-1] + "g"),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: str(u) + "\n"),
    st.uuids().map(lambda u: u.hex),
    st.text(ASSIGNED, max_size=40),
    st.integers(),
    st.none(),
)
device_tokens = st.one_of(
    st.text(ASSIGNED, min_size=1, max_size=30),
    st.text(st.characters(codec="ascii"), max_size=30),
    st.from_regex(r"\A[0-9a-f]{64}\Z"),
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
)
statuses = st.one_of(
    st.sampled_from([0, 1, 2, -1, True, False, 0.0, 1.5, None, "", "2", " 1", "1 ", "opened\n", "Open"]),
    any_case(),
    st.integers(),
    st.text(ASSIGNED, max_size=8),
)
events = st.dictionaries(
    st.sampled_from(["TrackingId", "DeviceToken", "PushNotificationStatus", "Extra"]),
    st.one_of(tracking_ids, device_tokens, statuses),
    max_size=4,
) | st.fixed_dictionaries(
    {"TrackingId": tracking_ids, "DeviceToken": device_tokens, "PushNotificationStatus": statuses}
)


@PROPERTIES
@given(events)
def test_the_event_schema_accepts_exactly_what_the_validator_accepts(event):
    assert EVENT_VALIDATOR.is_valid(event) == accepted_by_code(event), event


@PROPERTIES
@given(st.sampled_from(["TrackingId", "DeviceToken", "PushNotificationStatus"]), st.data())
def test_each_field_varied_alone_is_judged_alike_by_schema_and_validator(field, data):
    event = {"TrackingId": GUID, "DeviceToken": "t0k3n", "PushNotificationStatus": 1}
    event[field] = data.draw(
        {"TrackingId": tracking_ids, "DeviceToken": device_tokens, "PushNotificationStatus": statuses}[field]
    )
    assert EVENT_VALIDATOR.is_valid(event) == accepted_by_code(event), event


@PROPERTIES
@given(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers())))
def test_non_objects_are_refused_by_both(value):
    assert not EVENT_VALIDATOR.is_valid(value) and not accepted_by_code(value)


@settings(derandomize=True, database=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(any_case())
def test_status_words_in_any_letter_case_agree(word):
    event = {"TrackingId": GUID, "DeviceToken": "t", "PushNotificationStatus": word}
    assert EVENT_VALIDATOR.is_valid(event) == accepted_by_code(event), word


def test_batch_request_bounds_match_the_code():
    schema = resolve(SPEC["paths"]["/events/batch"]["post"]["requestBody"]["content"]["application/json"])
    assert (schema["schema"]["minItems"], schema["schema"]["maxItems"]) == (1, MAX_BATCH_EVENTS)


# --- every answer the code can give, checked against the spec ------------------------------------


def response_validator(
    path: str, method: str, status: int, content_type: str
) -> jsonschema_rs.Draft4Validator:
    response = resolve(SPEC["paths"][path][method]["responses"][str(status)])
    return validator(response["content"][content_type]["schema"])


REPLIES = {
    "invalid": from_error(InvalidEvent(FieldError("TrackingId", "x"), FieldError("body", "y"))),
    "too large": from_error(PayloadTooLarge(65536)),
    "media": from_error(UnsupportedMediaType("text/plain")),
    "rejected": from_error(UpstreamRejected("no")),
    "rate limited": from_error(RateLimited(2.5)),
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
