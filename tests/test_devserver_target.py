"""devserver: the banner says where events go (the host only) and warns when nothing answers
there; any --host works, the embedded emulator staying reachable on loopback."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from tests.conftest import ORG_ID, new_event
from tests.fakes.servers import free_port
from tests.helpers_devserver import DevServer


def post(url: str, body: dict) -> int:
    """POST JSON; the status (urllib raises for 4xx/5xx, read as their status)."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_interface_still_reaches_the_embedded_emulator_on_loopback():
    with DevServer(args=("--host", "0.0.0.0")) as server:  # noqa: S104 - what a phone test needs
        assert "on every interface: from a phone on the same network" in server.output()
        assert server.emulator_port is not None
        event = new_event()
        assert post(f"{server.url}/events", event) == 202
        with urllib.request.urlopen(f"{server.emulator_url}_emulator/received", timeout=10) as r:  # noqa: S310
            assert json.load(r)["tracking_ids"] == [event["TrackingId"]]


def test_another_address_serves_there_and_the_emulator_stays_on_127_0_0_1():
    # 127.0.0.2 stands in for a LAN address: an address of this machine other than 127.0.0.1.
    with DevServer(args=("--host", "127.0.0.2"), host="127.0.0.2") as server:
        assert server.emulator_url.startswith("http://127.0.0.1:")
        assert "on every interface" not in server.output()
        assert post(f"{server.url}/events", new_event()) == 202


async def test_a_configured_target_is_named_by_its_host_never_its_org_id(cij):
    env = {"CIJ_ORG_ID": ORG_ID, "CIJ_PUBLIC_ENDPOINT": cij.url, "CIJ_ALLOWED_HOSTS": "127.0.0.1"}
    server = await asyncio.to_thread(DevServer(env).start)
    try:
        event = new_event()
        assert await asyncio.to_thread(post, f"{server.url}/events", event) == 202
        output = server.output()
    finally:
        await asyncio.to_thread(server.stop)
    assert "Events go to CIJ on 127.0.0.1 (CIJ_PUBLIC_ENDPOINT, from the environment)" in output
    assert "warning" not in output and "CIJ emulator on" not in output
    assert ORG_ID not in output and cij.url not in output
    assert [e["TrackingId"] for e in cij.received] == [event["TrackingId"]]


def test_a_target_where_nothing_answers_gets_a_warning_in_the_banner(tmp_path):
    port = free_port()  # nothing listens there
    settings = tmp_path / "local.settings.json"
    settings.write_text(
        json.dumps(
            {
                "Values": {
                    "CIJ_ORG_ID": ORG_ID,
                    "CIJ_PUBLIC_ENDPOINT": f"http://127.0.0.1:{port}/",
                    "CIJ_ALLOWED_HOSTS": "127.0.0.1",
                }
            }
        )
    )
    with DevServer(args=("--settings", str(settings))) as server:
        output = server.output()
    assert "Events go to CIJ on 127.0.0.1 (CIJ_PUBLIC_ENDPOINT, from local.settings.json)" in output
    assert "warning: nothing answers there (Connection refused)" in output
    assert ORG_ID not in output and f":{port}" not in output
