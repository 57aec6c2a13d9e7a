"""The relay end to end in-process: function_app → real Azure SDK → fake Key Vault/identity → fake CIJ."""

from __future__ import annotations

import asyncio
import json
import logging

import azure.functions as func
import pytest
from azure.functions.http import HttpResponseConverter

from shared.relay import RedeliveryFailed
from tests.conftest import CLIENT_ID, FUNCTIONS, ORG_ID, call, new_event, problem


async def test_open_event_is_forwarded_and_202_mirrored(kv_env, cij, identity):
    event = new_event(PushNotificationStatus="Opened", Extra="dropped")
    response = await call("events", event)
    assert response.status_code == 202
    assert cij.received == [
        {"TrackingId": event["TrackingId"], "DeviceToken": event["DeviceToken"], "PushNotificationStatus": 1}
    ]
    assert cij.content_types == ["application/json"]
    assert identity.requests[0]["client_id"] == CLIENT_ID  # the user-assigned identity was used
    assert kv_env.reads == {"cij-org-id": 1, "cij-public-endpoint": 1}


async def test_cij_400_is_mirrored_and_not_retried(kv_env, cij):
    cij.then("400")
    response = await call("events", new_event())
    assert response.status_code == 400
    assert problem(response)["type"].endswith("rejected-upstream")
    assert cij.requests == 1


async def test_invalid_event_is_400_and_never_reaches_key_vault_or_cij(kv_env, cij):
    response = await call("events", {"TrackingId": "nope", "DeviceToken": "", "PushNotificationStatus": True})
    assert response.status_code == 400
    fields = {e["field"] for e in problem(response)["errors"]}
    assert fields == {"TrackingId", "DeviceToken", "PushNotificationStatus"}
    assert cij.requests == 0
    assert sum(kv_env.reads.values()) == 0


async def test_single_flight_300_concurrent_cold_requests_read_each_secret_once(kv_env, cij):
    responses = await asyncio.gather(*(call("events", new_event()) for _ in range(300)))
    assert [r.status_code for r in responses] == [202] * 300
    assert kv_env.reads == {"cij-org-id": 1, "cij-public-endpoint": 1}
    assert len({e["TrackingId"] for e in cij.received}) == 300


async def test_key_vault_down_at_cold_start_is_503_with_retry_after_and_no_forward(kv_env, cij):
    kv_env.fault = "down"
    response = await call("events", new_event())
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert cij.requests == 0


async def test_key_vault_forbidden_is_503(kv_env, cij):
    kv_env.fault = "forbidden"
    response = await call("events", new_event())
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert cij.requests == 0


async def test_secret_failing_validation_is_503_and_cij_not_called(kv_env, cij):
    kv_env.secrets["cij-public-endpoint"] = "https://evil.example.com/"
    response = await call("events", new_event())
    assert response.status_code == 503
    assert cij.requests == 0


async def test_health_is_200_when_target_resolves_and_503_otherwise(kv_env):
    ok = await call("health", method="GET")
    assert ok.status_code == 200 and json.loads(ok.get_body()) == {"status": "ok", "circuit": "closed"}
    from shared import relay

    await relay.reset()
    kv_env.fault = "forbidden"
    down = await call("health", method="GET")
    assert down.status_code == 503 and "Retry-After" in down.headers
    for response in (ok, down):
        assert ORG_ID.encode() not in response.get_body()
        assert b"127.0.0.1" not in response.get_body()


async def test_invalid_settings_answer_503_not_500(monkeypatch, static_env):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "soon")
    response = await call("events", new_event())
    assert response.status_code == 503 and "Retry-After" in response.headers


async def test_invalid_settings_refuse_every_route_log_once_and_keep_queued_events(
    monkeypatch, static_env, caplog
):
    monkeypatch.setenv("BATCH_CONCURRENCY", "0")
    with caplog.at_level(logging.ERROR, logger="cij_relay"):
        answers = [
            await call("events", new_event()),
            await call("events/batch", [new_event()]),
            await call("health", method="GET"),
        ]
        with pytest.raises(RedeliveryFailed):  # the host keeps the message and retries it
            await FUNCTIONS["redeliver"](func.QueueMessage(id="m", body=json.dumps(new_event()).encode()))
    assert [(a.status_code, problem(a)["type"].rsplit(":", 1)[1]) for a in answers] == [
        (503, "settings-invalid")
    ] * 3
    assert [r.getMessage() for r in caplog.records] == [
        "relay settings invalid, answering 503 until fixed: "
        "BATCH_CONCURRENCY must be between 1 and 100, got 0"
    ]
    assert static_env.requests == 0

    monkeypatch.setenv("BATCH_CONCURRENCY", "10")  # fixed: read again on the next call
    assert (await call("events", new_event())).status_code == 202


async def test_the_shared_202_is_left_unchanged_by_the_hosts_encoder(static_env):
    first, second = await call("events", new_event()), await call("events", new_event())
    assert first is second  # one object answers every accepted event
    headers = list(second.headers.items())
    encoded = HttpResponseConverter.encode(first, expected_type=None)
    assert list(second.headers.items()) == headers == [("Content-Type", "application/json")]
    assert encoded.value["status_code"].value == "202"
    assert encoded.value["body"].value == b'{"status":"accepted"}'


async def test_cij_unavailable_after_retries_is_5xx_with_retry_after(static_env):
    static_env.default = "503"
    response = await call("events", new_event())
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert static_env.requests == 4  # MAX_ATTEMPTS


async def test_cij_misconfigured_status_is_502_and_logged(static_env, caplog):
    static_env.then("404")
    response = await call("events", new_event())
    assert response.status_code == 502 and "Retry-After" in response.headers
    assert static_env.requests == 1
    assert any(r.levelname == "ERROR" and "404" in r.getMessage() for r in caplog.records)


async def test_no_token_org_id_or_endpoint_in_logs_or_bodies(kv_env, cij, caplog):
    caplog.set_level("DEBUG")
    token = "DEVICE" + "a1" * 30
    bodies = []
    for answer in ("202", "400", "503", "404"):
        cij.default = None if answer == "202" else answer
        bodies.append((await call("events", new_event(DeviceToken=token))).get_body())
    bodies.append((await call("events", {"DeviceToken": token + " x"})).get_body())
    text = "\n".join(r.getMessage() for r in caplog.records) + b"\n".join(bodies).decode()
    assert "outcome=accepted" in text  # the capture did see the relay's outcome lines
    for secret in (token, ORG_ID, cij.url, f"127.0.0.1:{cij.served.port}"):
        assert secret not in text
