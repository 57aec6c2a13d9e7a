"""Key Vault faults end to end, in-process: function_app → real Azure SDK → fake vault/identity → fake CIJ.

test_function_app.py covers a vault that is down or forbidden at cold start and a secret that fails
validation; test_target.py covers the cache with a fake clock. Here: what the app sees over time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from tests.conftest import ORG_ID, call, new_event, sensitive, serving
from tests.fakes.cij import FakeCIJ

TTL = 0.3
ROTATED_ORG_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


@pytest.fixture
def short_ttl(monkeypatch: pytest.MonkeyPatch, kv_env):
    monkeypatch.setenv("SECRET_CACHE_TTL_SECONDS", str(TTL))
    monkeypatch.setattr("shared.target.READ_TIMEOUT_SECONDS", 1.5)  # bounds a hanging vault
    return kv_env


@pytest.fixture
async def second_cij() -> AsyncIterator[FakeCIJ]:
    sensitive(ROTATED_ORG_ID)
    async with serving(FakeCIJ(ROTATED_ORG_ID)) as fake:
        yield fake


def reads(vault) -> int:
    return sum(vault.reads.values())


async def test_down_at_cold_start_backs_off_then_recovers(kv_env, cij):
    kv_env.fault = "down"
    first = await call("events", new_event())
    assert first.status_code == 503 and int(first.headers["Retry-After"]) >= 1
    after_first = reads(kv_env)
    # Inside the back-off window nothing reaches the vault, whatever the traffic.
    answers = await asyncio.gather(*(call("events", new_event()) for _ in range(100)))
    health = await call("health", method="GET")
    assert {a.status_code for a in answers} == {503} and health.status_code == 503
    assert all("Retry-After" in a.headers for a in answers)
    assert reads(kv_env) == after_first
    assert cij.requests == 0
    kv_env.fault = None
    await asyncio.sleep(int(first.headers["Retry-After"]) + 0.1)
    assert (await call("events", new_event())).status_code == 202
    assert (await call("health", method="GET")).status_code == 200
    assert len(cij.received) == 1


@pytest.mark.parametrize("fault", ["down", "throttle", "forbidden", "hang"])
async def test_a_vault_failing_while_warm_keeps_serving_the_last_values_past_the_ttl(short_ttl, cij, fault):
    assert (await call("events", new_event())).status_code == 202
    short_ttl.fault = fault
    await asyncio.sleep(TTL + 0.1)  # the cached values are now older than the TTL
    before = reads(short_ttl)
    started = time.monotonic()
    stale = await call("events", new_event())  # the refresh runs in the background: no wait
    assert stale.status_code == 202, stale.get_body()
    assert time.monotonic() - started < 4
    answers = await asyncio.gather(*(call("events", new_event()) for _ in range(100)))
    assert {a.status_code for a in answers} == {202}
    assert (await call("health", method="GET")).status_code == 200
    await asyncio.sleep(0.3)  # the failed refresh is over (or, hanging, still the only one)
    after_refresh = reads(short_ttl)
    assert after_refresh - before <= 6  # one refresh: two secrets, three tries each at most
    answers = await asyncio.gather(*(call("events", new_event()) for _ in range(100)))
    assert {a.status_code for a in answers} == {202}
    assert reads(short_ttl) == after_refresh  # no storm: the failed refresh is not retried per request
    assert len(cij.received) == 202


async def test_throttled_vault_at_cold_start_is_read_by_one_refresh_and_backed_off(kv_env, cij):
    """429 + Retry-After: the SDK waits and retries within the refresh; the relay then backs off."""
    kv_env.fault = "throttle"
    cold = await asyncio.gather(*(call("events", new_event()) for _ in range(100)))
    assert {a.status_code for a in cold} == {503}
    one_refresh = reads(kv_env)
    assert 2 <= one_refresh <= 6  # two secrets, three tries each at most: a single refresh
    for _ in range(3):
        answers = await asyncio.gather(*(call("events", new_event()) for _ in range(50)))
        assert {a.status_code for a in answers} == {503}
        assert all(int(a.headers["Retry-After"]) >= 1 for a in answers)
    assert reads(kv_env) == one_refresh  # 250 requests, one refresh's worth of vault calls
    assert cij.requests == 0


async def test_rotated_secrets_are_picked_up_after_the_ttl_not_before(short_ttl, cij, second_cij):
    assert (await call("events", new_event())).status_code == 202
    short_ttl.secrets.update({"cij-org-id": ROTATED_ORG_ID, "cij-public-endpoint": second_cij.url})
    assert (await call("events", new_event())).status_code == 202  # still cached
    assert (len(cij.received), len(second_cij.received)) == (2, 0)
    await asyncio.sleep(TTL + 0.1)
    assert (await call("events", new_event())).status_code == 202  # starts the refresh, not waiting
    await asyncio.sleep(0.3)
    assert (await call("events", new_event())).status_code == 202
    assert (len(cij.received), len(second_cij.received)) == (3, 1)


async def test_a_secret_rotated_off_the_allow_list_is_never_called(short_ttl, cij, second_cij, caplog):
    """SSRF guard: a bad endpoint secret does not redirect traffic; the last good target serves."""
    assert (await call("events", new_event())).status_code == 202
    # Same loopback server, spelled with a host the allow-list (127.0.0.1) does not name.
    off_list = second_cij.url.replace("127.0.0.1", "localhost")  # type: ignore[attr-defined]
    sensitive(off_list)
    short_ttl.secrets["cij-public-endpoint"] = off_list
    await asyncio.sleep(TTL + 0.1)
    answers = [await call("events", new_event()) for _ in range(5)]
    await asyncio.sleep(0.1)  # the background refresh has read and refused the secret
    assert [a.status_code for a in answers] == [202] * 5
    assert second_cij.requests == 0 and len(cij.received) == 6
    assert any("CIJ_ALLOWED_HOSTS" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


async def test_a_secret_off_the_allow_list_at_cold_start_is_503_and_never_called(kv_env, cij, second_cij):
    off_list = second_cij.url.replace("127.0.0.1", "localhost")  # type: ignore[attr-defined]
    sensitive(off_list)
    kv_env.secrets["cij-public-endpoint"] = off_list
    answer = await call("events", new_event())
    assert answer.status_code == 503 and "Retry-After" in answer.headers
    assert json.loads(answer.get_body())["type"].endswith("target-unavailable")
    assert second_cij.requests == 0 and cij.requests == 0
    assert ORG_ID not in answer.get_body().decode()
