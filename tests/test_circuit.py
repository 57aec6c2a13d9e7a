"""shared/circuit.py: every transition, the probe limit, Retry-After, and the relay answering
without waiting for CIJ while the circuit is open (single events, batches and /api/health)."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest

from shared.circuit import CLOSED, HALF_OPEN, OPEN, Circuit, CircuitOpen
from shared.forwarder import UpstreamMisconfigured, UpstreamRejected, UpstreamUnavailable
from tests.conftest import call, new_event, problem


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def transient(hint: float | None = None) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        503, "HTTP 503", math.ceil(hint) if hint else 5, upstream_status=503, hint=hint
    )


def fail(circuit: Circuit, times: int = 1, hint: float | None = None) -> None:
    for _ in range(times):
        circuit.settle(circuit.enter(), transient(hint))


def test_opens_after_exactly_the_threshold_of_consecutive_transient_failures():
    circuit = Circuit(10, 5, Clock())
    fail(circuit, 9)
    assert circuit.state == CLOSED and circuit.enter() is False
    circuit.settle(False, None)  # one success resets the count
    fail(circuit, 9)
    assert circuit.state == CLOSED
    fail(circuit)
    assert circuit.state == OPEN
    with pytest.raises(CircuitOpen):
        circuit.enter()


@pytest.mark.parametrize(
    "answer", [UpstreamRejected("400"), *(UpstreamMisconfigured(s) for s in (401, 403, 404))]
)
def test_cij_answering_400_or_a_target_error_never_opens_it(answer):
    circuit = Circuit(3, 5, Clock())
    for _ in range(50):
        circuit.settle(circuit.enter(), answer)
    fail(circuit, 2)
    circuit.settle(circuit.enter(), answer)  # CIJ answered: the count starts again
    fail(circuit, 2)
    assert circuit.state == CLOSED


def test_other_errors_neither_count_nor_reset():
    circuit = Circuit(3, 5, Clock())
    fail(circuit, 2)
    circuit.settle(circuit.enter(), asyncio.CancelledError())
    assert circuit.state == CLOSED
    fail(circuit)
    assert circuit.state == OPEN


def test_open_refuses_until_the_probe_is_due_then_lets_exactly_one_through():
    clock = Clock()
    circuit = Circuit(1, 5, clock)
    fail(circuit)
    for elapsed, expected in ((0, 5), (0.5, 5), (4.2, 1), (4.99, 1)):
        clock.now = 100 + elapsed
        with pytest.raises(CircuitOpen) as refused:
            circuit.enter()
        assert refused.value.retry_after == expected
        assert refused.value.retry_after >= 5 - elapsed  # never shorter than the wait for the probe
    clock.now = 105
    assert circuit.state == HALF_OPEN
    assert circuit.enter() is True  # the probe
    for _ in range(100):  # while it is in flight, everyone else is refused
        with pytest.raises(CircuitOpen) as refused:
            circuit.enter()
        assert refused.value.retry_after == 5
    assert circuit.state == HALF_OPEN


def test_a_failed_probe_reopens_for_a_full_interval_and_a_successful_one_closes():
    clock = Clock()
    circuit = Circuit(2, 5, clock)
    fail(circuit, 2)
    clock.now += 5
    probe = circuit.enter()
    clock.now += 3  # the probe took 3 s to fail
    circuit.settle(probe, transient())
    assert circuit.state == OPEN
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        circuit.enter()
    clock.now += 0.1
    probe = circuit.enter()
    assert probe is True
    circuit.settle(probe, None)
    assert circuit.state == CLOSED and circuit.enter() is False
    fail(circuit)  # closed again with a fresh count: one failure does not reopen it
    assert circuit.state == CLOSED


def test_a_probe_that_never_got_an_answer_frees_the_slot_after_the_interval():
    clock = Clock()
    circuit = Circuit(1, 5, clock)
    fail(circuit)
    clock.now += 5
    circuit.settle(circuit.enter(), asyncio.CancelledError())
    assert circuit.state == OPEN
    with pytest.raises(CircuitOpen):
        circuit.enter()
    clock.now += 5
    assert circuit.enter() is True


@pytest.mark.parametrize("status_hint", [30.0, 120.0])
def test_cij_retry_after_keeps_it_open_at_least_that_long(status_hint):
    clock = Clock()
    circuit = Circuit(1, 5, clock)
    fail(circuit, hint=status_hint)
    clock.now += status_hint - 0.5
    with pytest.raises(CircuitOpen) as refused:
        circuit.enter()
    assert refused.value.retry_after >= 0.5
    clock.now += 0.5
    probe = circuit.enter()
    circuit.settle(probe, transient(status_hint))  # the probe is told the same: wait again
    clock.now += status_hint - 1
    with pytest.raises(CircuitOpen):
        circuit.enter()


def test_a_late_failure_with_retry_after_pushes_the_next_probe_back():
    clock = Clock()
    circuit = Circuit(2, 5, clock)
    first, second = circuit.enter(), circuit.enter()  # two events sent while closed
    circuit.settle(first, transient())
    circuit.settle(circuit.enter(), transient())  # a third: the circuit opens
    circuit.settle(second, transient(60))  # the second comes back with 429 + Retry-After: 60
    clock.now += 59
    with pytest.raises(CircuitOpen) as refused:
        circuit.enter()
    assert refused.value.retry_after == 1


def test_an_event_cij_takes_while_open_closes_it():
    circuit = Circuit(1, 5, Clock())
    in_flight = circuit.enter()
    fail(circuit)
    circuit.settle(in_flight, None)
    assert circuit.state == CLOSED


# --- the relay with its circuit, against a CIJ on loopback ---------------------------------------


@pytest.fixture
def circuit_env(monkeypatch, static_env):
    monkeypatch.setenv("CIRCUIT_FAILURE_THRESHOLD", "3")
    monkeypatch.setenv("CIRCUIT_PROBE_SECONDS", "0.3")
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("DEVICE_RATE_PER_MINUTE", "0")  # one device sends them all
    return static_env


async def health() -> dict:
    return json.loads((await call("health", method="GET")).get_body())


async def open_circuit(cij, answer: str = "503") -> None:
    cij.default = answer
    for _ in range(3):
        assert (await call("events", new_event())).status_code >= 500
    assert (await health()) == {"status": "ok", "circuit": "open"}


async def test_open_circuit_answers_503_at_once_with_retry_after_and_calls_nobody(circuit_env):
    cij = circuit_env
    await open_circuit(cij, "hang")
    before = cij.requests
    answers = await asyncio.gather(*(call("events", new_event()) for _ in range(200)))
    assert {a.status_code for a in answers} == {503}
    assert {problem(a)["type"] for a in answers} == {"urn:cij-push-relay:problem:upstream-unavailable"}
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers)
    assert "X-Delivery" not in answers[0].headers
    assert cij.requests == before  # not one of them reached CIJ (which would hang them all)


async def test_one_probe_per_interval_under_concurrency_then_the_first_success_closes(circuit_env):
    cij = circuit_env
    await open_circuit(cij)
    opened, before = time.monotonic(), cij.requests
    event = new_event()  # the same event, over and over: the leak check then has one token to look for

    async def traffic(seconds: float) -> list[int]:
        statuses, stop = [], time.monotonic() + seconds

        async def client() -> None:
            while time.monotonic() < stop:
                statuses.append((await call("events", event)).status_code)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(client() for _ in range(20)))
        return statuses

    statuses = await traffic(1.4)
    probes = cij.requests - before
    allowed = math.floor((time.monotonic() - opened) / 0.3) + 1
    assert 1 <= probes <= allowed, (probes, allowed)
    assert set(statuses) == {503} and len(statuses) > 100
    cij.default = None  # CIJ is back
    await asyncio.sleep(0.35)
    assert (await health())["circuit"] == "half-open"
    statuses = await traffic(0.3)
    first = statuses.index(202)  # the probe's; only events that met it in flight were refused
    assert set(statuses[first:]) == {202} and len(statuses) - first > 20
    assert (await health())["circuit"] == "closed"


async def test_cij_429_with_retry_after_holds_the_circuit_open_that_long(circuit_env):
    cij = circuit_env
    await open_circuit(cij, "429:30")
    answer = await call("events", new_event())
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 29
    cij.default = None
    await asyncio.sleep(0.4)  # past CIRCUIT_PROBE_SECONDS, not past CIJ's 30 s
    before = cij.requests
    assert (await call("events", new_event())).status_code == 503
    assert cij.requests == before and (await health())["circuit"] == "open"


async def test_400_and_404_from_cij_never_open_the_circuit(circuit_env):
    cij = circuit_env
    for answer, status in (("400", 400), ("404", 502)):
        cij.default = answer
        for _ in range(10):
            assert (await call("events", new_event())).status_code == status
    assert (await health())["circuit"] == "closed"


async def test_open_circuit_stops_the_retries_of_events_already_in_flight(monkeypatch, circuit_env):
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "10")  # time enough for every retry
    cij = circuit_env
    cij.default = "500"
    answers = await asyncio.gather(*(call("events", new_event()) for _ in range(30)))
    assert {a.status_code for a in answers} == {502}
    # Four attempts each would be 120 requests; once three events have failed the rest stop retrying.
    assert cij.requests < 120, cij.requests


async def test_batch_items_are_refused_at_once_while_open(circuit_env):
    cij = circuit_env
    await open_circuit(cij, "hang")
    before = cij.requests
    response = await call("events/batch", [new_event() for _ in range(20)])
    results = json.loads(response.get_body())["results"]
    assert {r["status"] for r in results} == {503} and all(r["retryAfter"] >= 1 for r in results)
    assert cij.requests == before


async def test_health_reveals_the_circuit_state_and_nothing_else(circuit_env):
    cij = circuit_env
    assert await health() == {"status": "ok", "circuit": "closed"}
    await open_circuit(cij)
    await asyncio.sleep(0.35)
    assert await health() == {"status": "ok", "circuit": "half-open"}
