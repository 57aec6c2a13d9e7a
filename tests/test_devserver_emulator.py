"""devserver/emulator.py: the contract check, and going down and coming back on request."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp.test_utils import TestClient, TestServer

from devserver.emulator import ROUTE, Emulator
from tests.conftest import new_event

ORG_ID = str(uuid.uuid4())  # a throwaway one: the emulator's access log shows it
EVENTS = ROUTE.format(org_id=ORG_ID)


async def client(emulator: Emulator) -> TestClient:
    test_client = TestClient(TestServer(emulator.app()))
    await test_client.start_server()
    return test_client


async def test_down_answers_503_with_retry_after_until_up():
    changes: list[bool] = []
    emulator = Emulator(ORG_ID, on_change=lambda e: changes.append(e.down))
    http = await client(emulator)
    try:
        assert (await http.post(EVENTS, json=new_event())).status == 202
        assert (await (await http.post("/_emulator/down")).json()) == {"down": True}
        refused = await http.post(EVENTS, json=new_event())
        assert (refused.status, refused.headers["Retry-After"]) == (503, "60")
        assert (await (await http.get("/_emulator/received")).json())["down"] is True
        assert (await (await http.post("/_emulator/up")).json()) == {"down": False}
        assert (await http.post(EVENTS, json=new_event())).status == 202
    finally:
        await http.close()
    assert changes == [True, False]
    assert len(emulator.received) == 2


async def test_an_outage_of_n_seconds_ends_by_itself_and_says_so():
    changes: list[bool] = []
    emulator = Emulator(ORG_ID, on_change=lambda e: changes.append(e.down))
    http = await client(emulator)
    try:
        assert (await http.post("/_emulator/outage?seconds=1")).status == 200
        refused = await http.post(EVENTS, json=new_event())
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        await asyncio.sleep(1.2)
        assert (await http.post(EVENTS, json=new_event())).status == 202
    finally:
        await http.close()
    assert changes == [True, False]


async def test_an_outage_ended_early_is_not_reported_ended_twice():
    changes: list[bool] = []
    emulator = Emulator(ORG_ID, on_change=lambda e: changes.append(e.down))
    http = await client(emulator)
    try:
        await http.post("/_emulator/outage?seconds=1")
        await http.post("/_emulator/up")
        await asyncio.sleep(1.2)
    finally:
        await http.close()
    assert changes == [True, False]


async def test_an_outage_needs_a_sensible_length():
    http = await client(Emulator(ORG_ID))
    try:
        for seconds in ("0", "3601", "soon", "nan"):
            answer = await http.post(f"/_emulator/outage?seconds={seconds}")
            assert answer.status == 400, seconds
        assert (await (await http.get("/_emulator/received")).json())["down"] is False
    finally:
        await http.close()
