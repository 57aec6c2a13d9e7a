"""shared/target.py: endpoint normalisation, the allow-list, and the single-flight stale-on-error cache."""

from __future__ import annotations

import asyncio

import pytest

from shared.settings import load
from shared.target import (
    STALE_MAX_SECONDS,
    InvalidTarget,
    StaticSource,
    Target,
    TargetResolver,
    TargetUnavailable,
    normalise_endpoint,
    validate_org_id,
)

ORG = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
DYN = ("*.dynamics.com",)


@pytest.mark.parametrize(
    "raw",
    [
        "public-eur.mkt.dynamics.com",
        "https://public-eur.mkt.dynamics.com",
        "https://public-eur.mkt.dynamics.com/",
        " https://PUBLIC-EUR.mkt.dynamics.com// ",
    ],
)
def test_endpoint_forms_normalise_to_one_slash_before_api(raw):
    base = normalise_endpoint(raw, DYN)
    assert base == "https://public-eur.mkt.dynamics.com/"
    assert Target(ORG, base).events_url == (
        f"https://public-eur.mkt.dynamics.com/api/v1.0/orgs/{ORG}/pushdatareceiver/events"
    )


def test_path_prefix_and_port_are_kept():
    assert normalise_endpoint("https://public-eur.mkt.dynamics.com:8443/cij/", DYN) == (
        "https://public-eur.mkt.dynamics.com:8443/cij/"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "https://evil.example.com/",
        "https://dynamics.com.evil.io/",
        "https://public.mkt.dynamics.com@evil.io/",
        "http://public-eur.mkt.dynamics.com/",
        "ftp://public-eur.mkt.dynamics.com/",
        "https://x.dynamics.com/?a=b",
        "https://x.dynamics.com/#f",
        "https://",
        "https://x.dynamics.com:99999/",
    ],
)
def test_endpoints_off_the_allow_list_or_not_https_are_refused(raw):
    with pytest.raises(InvalidTarget):
        normalise_endpoint(raw, DYN)


def test_plain_http_only_for_loopback():
    assert normalise_endpoint("http://127.0.0.1:8080", ("127.0.0.1",)) == "http://127.0.0.1:8080/"
    assert normalise_endpoint("http://[::1]:8080/", ("::1",)) == "http://[::1]:8080/"
    with pytest.raises(InvalidTarget):
        normalise_endpoint("http://10.0.0.1/", ("10.0.0.1",))


def test_org_id_must_be_a_guid():
    assert validate_org_id(f" {ORG}\n") == ORG
    for bad in ("", "org", ORG + "0", "{" + ORG + "}"):
        with pytest.raises(InvalidTarget):
            validate_org_id(bad)


class CountingSource:
    """A source whose answers the test scripts: a value pair, or an exception to raise."""

    def __init__(self, *answers):
        self.answers, self.reads, self.delay = list(answers), 0, 0.0

    async def read(self):
        self.reads += 1
        await asyncio.sleep(self.delay)
        answer = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self):
        return None


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


GOOD = (ORG, "https://public-eur.mkt.dynamics.com")
ROTATED = ("11111111-2222-4333-8444-555555555555", "https://public-usa.mkt.dynamics.com")


def resolver(source, clock=None, ttl=600):
    return TargetResolver(source, load({"SECRET_CACHE_TTL_SECONDS": str(ttl)}), clock or Clock())


async def test_concurrent_cold_calls_read_once():
    source = CountingSource(GOOD)
    source.delay = 0.05
    r = resolver(source)
    targets = await asyncio.gather(*(r.get() for _ in range(300)))
    assert source.reads == 1 and len(set(targets)) == 1


def completes_at_once(coroutine):
    """The coroutine's result if it finishes without suspending (waiting on nothing); else fail."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    pytest.fail("the call waited")


async def settle():
    """Let background tasks run to completion (the scripted source answers at once)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_rotation_is_read_ahead_of_the_ttl_and_served_once_read():
    clock, source = Clock(), CountingSource(GOOD, ROTATED)
    r = resolver(source, clock)
    assert (await r.get()).org_id == ORG
    clock.now += 479  # before 80 % of the TTL: nothing is read
    assert completes_at_once(r.get()).org_id == ORG
    await settle()
    assert source.reads == 1
    clock.now += 2  # past 80 %: the refresh starts in the background; this request does not wait
    assert completes_at_once(r.get()).org_id == ORG
    await settle()
    assert source.reads == 2
    assert completes_at_once(r.get()).org_id == ROTATED[0]


async def test_no_request_waits_for_the_source_across_the_ttl_once_read():
    clock, source = Clock(), CountingSource(GOOD)
    r = resolver(source, clock)
    await r.get()
    source.delay = 3600  # the source hangs from now on
    for step in (300, 200, 101, 600, 3600):  # past 80 %, past the TTL, far past it
        clock.now += step
        assert completes_at_once(r.get()).org_id == ORG
        assert r.fresh() is not None
    await settle()
    assert source.reads == 2  # one refresh in flight, however many requests saw it due
    await r.close()


async def test_background_refresh_is_single_flight():
    clock, source = Clock(), CountingSource(GOOD)
    source.delay = 0.05
    r = resolver(source, clock)
    await r.get()
    clock.now += 590
    assert {r.fresh() for _ in range(500)} == {await r.get()}
    await asyncio.sleep(0.1)
    assert source.reads == 2
    assert r.fresh() is not None and source.reads == 2  # the new value is fresh: no further read


async def test_fresh_is_none_only_before_the_first_read_and_when_too_stale():
    clock, source = Clock(), CountingSource(GOOD, RuntimeError("vault down"))
    r = resolver(source, clock)
    assert r.fresh() is None  # nothing read yet
    target = await r.get()
    clock.now += 601
    assert r.fresh() is target
    await settle()  # the refresh failed: still the cached value
    assert r.fresh() is target and source.reads == 2
    clock.now += STALE_MAX_SECONDS
    assert r.fresh() is None


async def test_stale_values_serve_while_refresh_fails_then_expire_after_24h(caplog):
    clock, source = Clock(), CountingSource(GOOD, RuntimeError("vault down"))
    r = resolver(source, clock)
    await r.get()
    clock.now += 601
    assert (await r.get()).org_id == ORG
    await settle()
    assert "serving cached values" in caplog.text
    clock.now += STALE_MAX_SECONDS
    with pytest.raises(TargetUnavailable):
        await r.get()


async def test_failures_back_off_instead_of_hammering_the_source():
    clock, source = Clock(), CountingSource(RuntimeError("down"))
    r = resolver(source, clock)
    for _ in range(50):
        with pytest.raises(TargetUnavailable) as info:
            await r.get()
    assert source.reads == 1 and info.value.retry_after >= 1
    clock.now += 1.1
    with pytest.raises(TargetUnavailable):
        await r.get()
    assert source.reads == 2
    clock.now += 1.1  # second failure doubled the wait to 2 s
    with pytest.raises(TargetUnavailable):
        await r.get()
    assert source.reads == 2


async def test_invalid_secret_values_are_unavailable_and_logged_without_values(caplog):
    r = resolver(CountingSource(("not-a-guid", "https://evil.example.com")))
    with pytest.raises(TargetUnavailable):
        await r.get()
    assert "cij-org-id" in caplog.text and "not-a-guid" not in caplog.text and "evil" not in caplog.text


async def test_static_source_without_values_is_unavailable():
    with pytest.raises(TargetUnavailable, match="CIJ_ORG_ID"):
        await resolver(StaticSource(None, None)).get()
