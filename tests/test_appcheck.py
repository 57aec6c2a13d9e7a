"""App Check on both event routes: which tokens pass, which are refused (401, nothing forwarded), and
what each APP_CHECK_MODE does with a request that has none."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest

from shared import relay
from tests.conftest import call, leaks, new_event, problem, sensitive
from tests.fakes import jwks as firebase
from tests.fakes.jwks import APP_ID, PROJECT_NUMBER
from tests.helpers_devserver import DevServer
from tests.openapi_spec import response_validator


def sent(token: str) -> dict[str, str]:
    """The header an app sends; the token must never be logged or answered."""
    sensitive(token)
    return {"X-Firebase-AppCheck": token}


async def refused(headers: dict[str, str] | None, cij) -> None:
    """The single route answers 401 problem+json and forwards nothing."""
    response = await call("events", new_event(), headers=headers)
    assert response.status_code == 401, response.get_body()
    body = problem(response)
    assert body["type"] == "urn:cij-push-relay:problem:app-check-failed" and body["status"] == 401
    assert response.headers["WWW-Authenticate"] == "X-Firebase-AppCheck"
    assert response_validator("/events", "post", 401, "application/problem+json").is_valid(body)
    assert cij.received == []


async def test_a_valid_token_passes_on_both_routes(app_check, static_env):
    headers = sent(firebase.token())
    assert (await call("events", new_event(), headers=headers)).status_code == 202
    batch = await call("events/batch", [new_event(), new_event()], headers=headers)
    assert [r["status"] for r in json.loads(batch.get_body())["results"]] == [202, 202]
    assert len(static_env.received) == 3
    assert app_check.requests == 1  # the keys were read once and cached


async def test_an_expired_token_is_refused_beyond_a_small_leeway(app_check, static_env):
    now = int(time.time())
    await refused(sent(firebase.token(iat=now - 3700, exp=now - 100)), static_env)
    late = firebase.token(iat=now - 3610, exp=now - 10)  # within the leeway for clock skew
    assert (await call("events", new_event(), headers=sent(late))).status_code == 202


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": ["projects/999999999999"]},
        {"aud": "projects/999999999999"},
        {"aud": None},
        {"iss": "https://firebaseappcheck.googleapis.com/999999999999"},
        {"iss": "https://evil.example/123456789012"},
        {"iss": None},
        {"sub": None},
        {"sub": ""},
        {"exp": None},
        {"nbf": int(time.time()) + 3600},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
async def test_wrong_audience_issuer_or_missing_claims_are_refused(app_check, static_env, claims):
    await refused(sent(firebase.token(**claims)), static_env)


async def test_the_audience_may_be_a_single_string(app_check, static_env):
    token = firebase.token(aud=f"projects/{PROJECT_NUMBER}")
    assert (await call("events", new_event(), headers=sent(token))).status_code == 202


async def test_a_token_signed_by_another_key_under_a_published_kid_is_refused(app_check, static_env):
    await refused(sent(firebase.token("key-1", key=firebase.rsa_key("impostor"))), static_env)


async def test_an_unknown_kid_is_refused(app_check, static_env):
    await refused(sent(firebase.token("key-unpublished")), static_env)


async def test_alg_none_is_refused(app_check, static_env):
    await refused(sent(firebase.unsigned_token()), static_env)


async def test_hs256_signed_with_the_public_key_is_refused(app_check, static_env):
    await refused(sent(firebase.hs256_with_public_key("key-1")), static_env)


async def test_other_rsa_algorithms_are_refused(app_check, static_env):
    import jwt

    for alg in ("RS512", "PS256"):
        forged = jwt.encode(
            firebase.claims(), firebase.rsa_key("key-1"), algorithm=alg, headers={"kid": "key-1"}
        )
        await refused(sent(forged), static_env)


@pytest.mark.parametrize("value", ["", "not-a-jwt", "a.b.c", "x" * 9000, "eyJhbGciOiJSUzI1NiJ9..."])
async def test_malformed_tokens_are_refused(app_check, static_env, value):
    await refused({"X-Firebase-AppCheck": value} if value else {}, static_env)


async def test_a_batch_is_checked_once_and_refused_whole(app_check, static_env):
    response = await call("events/batch", [new_event() for _ in range(3)], headers=sent("forged"))
    assert response.status_code == 401
    assert problem(response)["type"].endswith(":app-check-failed")
    assert static_env.received == []


async def test_the_app_id_allow_list(app_check, static_env, monkeypatch):
    android = "1:123456789012:android:a1b2c3d4e5f6"
    monkeypatch.setenv("APP_CHECK_APP_IDS", f"{android}, {APP_ID}")
    assert (await call("events", new_event(), headers=sent(firebase.token(sub=android)))).status_code == 202
    assert (await call("events", new_event(), headers=sent(firebase.token()))).status_code == 202
    await relay.reset()
    static_env.received.clear()
    monkeypatch.setenv("APP_CHECK_APP_IDS", android)
    await refused(sent(firebase.token()), static_env)  # an app of the project, but not allowed


# --- the modes ----------------------------------------------------------------------------------


async def test_off_by_default_nothing_is_checked_or_fetched(static_env, jwks, monkeypatch):
    monkeypatch.setenv("APP_CHECK_JWKS_URL", jwks.url)
    for headers in (None, sent("garbage")):
        assert (await call("events", new_event(), headers=headers)).status_code == 202
    assert relay.current().app_check is None
    assert jwks.requests == 0


async def test_enforce_refuses_a_request_without_the_header(app_check, static_env, caplog):
    await refused(None, static_env)
    assert relay.current().app_check.failures == {"missing": 1}
    lines = [r.getMessage() for r in caplog.records if "App Check (enforce)" in r.getMessage()]
    assert len(lines) == 1 and "missing=1" in lines[0]


async def test_monitor_accepts_but_counts_and_logs_without_the_token(
    app_check, static_env, monkeypatch, caplog
):
    monkeypatch.setenv("APP_CHECK_MODE", "monitor")
    expired = firebase.token(exp=int(time.time()) - 600)
    for headers in (None, sent(expired), sent(firebase.token())):
        assert (await call("events", new_event(), headers=headers)).status_code == 202
    batch = await call("events/batch", [new_event()], headers=sent(firebase.unsigned_token()))
    assert json.loads(batch.get_body())["results"][0]["status"] == 202
    assert len(static_env.received) == 4
    assert relay.current().app_check.failures == {"missing": 1, "expired": 1, "algorithm": 1}
    warnings = [r.getMessage() for r in caplog.records if "App Check (monitor)" in r.getMessage()]
    assert warnings and "accepted" in warnings[0]  # the token itself: checked by the leak fixture


async def test_a_flood_of_refusals_is_logged_as_one_line(app_check, static_env, caplog):
    for _ in range(50):
        assert (await call("events", new_event())).status_code == 401
    lines = [r for r in caplog.records if "App Check (enforce)" in r.getMessage()]
    assert len(lines) == 1
    assert relay.current().app_check.failures == {"missing": 50}


async def test_through_the_dev_server_the_header_reaches_the_relay_as_from_the_host(jwks):
    env = {
        "APP_CHECK_MODE": "enforce",
        "APP_CHECK_PROJECT_NUMBER": PROJECT_NUMBER,
        "APP_CHECK_JWKS_URL": jwks.url,
    }
    token = firebase.token()
    with DevServer(env) as server:
        async with aiohttp.ClientSession() as http:
            for headers, expected in ((sent(token), 202), ({}, 401)):
                async with http.post(f"{server.url}/events", json=new_event(), headers=headers) as r:
                    assert r.status == expected, await r.text()
                    if expected == 401:
                        assert r.headers["WWW-Authenticate"] == "X-Firebase-AppCheck"
                        assert r.headers["Content-Type"] == "application/problem+json"
        output = server.output()
    assert jwks.requests == 1
    assert "App Check (enforce)" in output and leaks(output) == []
