"""App Check's public keys: read on the relay's loop, single-flight, cached by max-age, refetched for
a new kid at most once a minute, stale within a bound when Firebase is down, and bounded when the
JWKS server is hostile."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared import appcheck, relay
from shared.appcheck import Jwks, cache_seconds, parse_jwks
from tests.conftest import call, new_event, problem
from tests.fakes import jwks as firebase
from tests.fakes.jwks import public_jwk
from tests.test_appcheck import sent


class Clock:
    """The key cache's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def cache_clock() -> Clock:
    """Replace the running relay's key-cache clock with one the test moves."""
    clock = Clock()
    relay.current().app_check.jwks.clock = clock
    return clock


async def status(token: str) -> int:
    return (await call("events", new_event(), headers=sent(token))).status_code


async def test_300_concurrent_cold_requests_fetch_the_keys_once(app_check, static_env):
    app_check.delay = 0.2  # every request arrives while the first fetch is in flight
    tokens = [firebase.token() for _ in range(300)]
    responses = await asyncio.gather(*(call("events", new_event(), headers=sent(t)) for t in tokens))
    assert [r.status_code for r in responses] == [202] * 300
    assert app_check.requests == 1
    assert len(static_env.received) == 300


async def test_keys_are_cached_for_their_max_age_then_refreshed(app_check, static_env):
    app_check.max_age = 300
    assert await status(firebase.token()) == 202
    clock = cache_clock()
    clock.now += 299
    assert await status(firebase.token()) == 202
    assert app_check.requests == 1
    clock.now += 2  # past max-age: this request still uses the set it has; a refresh starts
    assert await status(firebase.token()) == 202
    await asyncio.sleep(0.1)
    assert app_check.requests == 2


async def test_rotated_keys_new_kid_refetched_at_most_once_a_minute(app_check, static_env):
    assert await status(firebase.token("key-1")) == 202
    clock = cache_clock()
    app_check.publish("key-2")  # Firebase rotates: key-1 withdrawn, key-2 published
    clock.now += 10
    for _ in range(20):  # a new kid within a minute of the last fetch: no fetch, refused
        assert await status(firebase.token("key-2")) == 401
    assert app_check.requests == 1
    clock.now += 51
    assert await status(firebase.token("key-2")) == 202
    assert app_check.requests == 2
    assert await status(firebase.token("key-1")) == 401  # withdrawn, and no refetch for it
    assert app_check.requests == 2


async def test_random_kids_cannot_make_the_relay_hammer_the_jwks(app_check, static_env):
    assert await status(firebase.token()) == 202
    clock = cache_clock()
    for n in range(30):
        clock.now += 10
        assert await status(firebase.token(f"random-{n % 3}")) == 401
    assert app_check.requests == 1 + 300 // 60  # one refetch per minute at most


async def test_outage_with_nothing_cached_is_503_in_enforce_and_refetched_after_a_pause(
    app_check, static_env
):
    app_check.fault = "down"
    response = await call("events", new_event(), headers=sent(firebase.token()))
    assert response.status_code == 503
    body = problem(response)
    assert body["type"].endswith(":app-check-unavailable")
    assert 1 <= int(response.headers["Retry-After"]) <= appcheck.RETRY_SECONDS
    assert static_env.received == []
    for _ in range(10):  # no fetch per request while Firebase is down
        assert await status(firebase.token()) == 503
    assert app_check.requests == 1
    clock = cache_clock()
    app_check.fault = None
    clock.now += appcheck.RETRY_SECONDS
    assert await status(firebase.token()) == 202


async def test_outage_in_monitor_mode_accepts(app_check, static_env, monkeypatch):
    monkeypatch.setenv("APP_CHECK_MODE", "monitor")
    app_check.fault = "down"
    assert await status(firebase.token()) == 202
    assert relay.current().app_check.failures == {"keys-unavailable": 1}


async def test_outage_with_keys_cached_uses_them_within_a_bound(app_check, static_env):
    app_check.max_age = 600
    assert await status(firebase.token()) == 202
    clock = cache_clock()
    app_check.fault = "down"
    clock.now += 601  # expired: refreshes fail, the cached set is still used
    assert await status(firebase.token()) == 202
    await asyncio.sleep(0.1)
    assert app_check.requests == 2
    clock.now += appcheck.STALE_SECONDS - 2
    assert await status(firebase.token()) == 202
    clock.now += 2  # past the stale bound: nothing usable is left
    response = await call("events", new_event(), headers=sent(firebase.token()))
    assert response.status_code == 503 and "Retry-After" in response.headers


@pytest.mark.parametrize("fault", ["garbage", "deep", "huge", "hang"])
async def test_a_hostile_jwks_server_costs_bounded_time(app_check, static_env, monkeypatch, fault):
    monkeypatch.setattr(appcheck, "JWKS_TIMEOUT_SECONDS", 1.0)
    app_check.fault = fault
    started = time.monotonic()
    assert await status(firebase.token()) == 503
    assert time.monotonic() - started < 3
    assert static_env.received == []


async def test_the_fetch_survives_the_request_that_started_it_being_cancelled(app_check, static_env):
    app_check.delay = 0.3
    first = asyncio.ensure_future(call("events", new_event(), headers=sent(firebase.token())))
    await asyncio.sleep(0.1)
    first.cancel()
    assert await status(firebase.token()) == 202
    assert app_check.requests == 1


def test_cache_control_max_age_is_kept_within_1_minute_and_6_hours():
    assert cache_seconds("public, max-age=19814, must-revalidate") == 19814
    assert cache_seconds("max-age=5") == 60
    assert cache_seconds("public, max-age=999999") == 6 * 3600
    assert cache_seconds(None) == cache_seconds("no-store") == cache_seconds("max-age=abc") == 60


def test_only_usable_rsa_signing_keys_are_taken_from_the_set():
    good = public_jwk("good", firebase.rsa_key("key-1"))
    small = public_jwk("small", firebase.rsa_key("small", 1024))
    keys = parse_jwks(
        {
            "keys": [
                good,
                small,
                {**good, "kid": "enc", "use": "enc"},
                {**good, "kid": "hs", "alg": "HS256"},
                {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
                {**good, "kid": 7},
                {**good, "kid": "broken", "n": "!!"},
                "not a key",
            ]
        }
    )
    assert set(keys) == {"good"}
    for document in ({"keys": []}, {"keys": "x"}, [], {"keys": [small]}):
        with pytest.raises(appcheck.JwksInvalid):
            parse_jwks(document)


async def test_a_redirect_is_not_followed(monkeypatch):
    from aiohttp import web

    from tests.fakes.servers import Served

    hits: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", redirect)
    served = await Served(app).start()
    keys = Jwks(served.url + "v1/jwks")
    try:
        with pytest.raises(appcheck.AppCheckUnavailable):
            await keys.key("key-1")
    finally:
        await keys.close()
        await served.stop()
    assert hits == ["/v1/jwks"]


async def test_a_token_seen_before_is_not_verified_again_until_the_keys_change(
    app_check, static_env, monkeypatch
):
    decoded = []
    real_decode = appcheck.jwt.decode
    monkeypatch.setattr(appcheck.jwt, "decode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    app_check.max_age = 600
    token = firebase.token("key-1")
    assert [await status(token) for _ in range(5)] == [202] * 5
    assert len(decoded) == 1
    clock = cache_clock()
    app_check.publish("key-2")  # key-1 withdrawn
    clock.now += 601  # past max-age: this request starts the refresh, the next ones see key-2 only
    assert await status(token) == 202
    await asyncio.sleep(0.1)
    assert app_check.requests == 2
    assert await status(token) == 401  # remembered no longer: its key is gone


async def test_a_remembered_token_still_expires(app_check, static_env, monkeypatch):
    monkeypatch.setattr(appcheck, "LEEWAY_SECONDS", 0)
    token = firebase.token(exp=int(time.time()) + 1)
    assert await status(token) == 202
    await asyncio.sleep(1.2)
    assert await status(token) == 401
    assert relay.current().app_check.failures == {"expired": 1}


async def test_remembered_tokens_are_bounded(app_check, static_env, monkeypatch):
    decoded = []
    real_decode = appcheck.jwt.decode
    monkeypatch.setattr(appcheck.jwt, "decode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    monkeypatch.setattr(appcheck, "MAX_VERIFIED", 3)
    tokens = [firebase.token() for _ in range(5)]
    assert [await status(t) for t in tokens] == [202] * 5
    assert len(decoded) == 5
    assert await status(tokens[4]) == 202 and len(decoded) == 5  # among the last three: remembered
    assert await status(tokens[0]) == 202 and len(decoded) == 6  # the oldest was forgotten
