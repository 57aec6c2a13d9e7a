"""devserver --queue: Azurite with the relay's queues, durable delivery on, the queue trigger running,
the emulator taken down on request: an event is queued instead of failing, and redelivered."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path

from azure.storage.queue import QueueClient

from devserver.azurite import connection_string
from tests.conftest import new_event
from tests.helpers_devserver import DevServer

ROOT = Path(__file__).resolve().parent.parent


def send(url: str, event: dict) -> tuple[int, str | None]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return response.status, response.headers.get("X-Delivery")


def test_with_cij_down_an_event_is_queued_in_azurite_and_azurite_stops_with_the_server():
    with DevServer(args=("--queue",)) as server:
        banner = server.output()
        port = int(re.search(r"queued on pending-events in Azurite \(127\.0\.0\.1:(\d+)", banner).group(1))
        storage = connection_string(port)
        poison = QueueClient.from_connection_string(storage, "pending-events-poison")
        poison.get_queue_properties()  # created up front, so it can be looked at from the start

        down = urllib.request.Request(f"{server.emulator_url}_emulator/down", method="POST")  # noqa: S310
        urllib.request.urlopen(down, timeout=10).close()  # noqa: S310 - loopback
        event = new_event()
        assert send(f"{server.url}/events", event) == (202, "queued")

        deadline = time.monotonic() + 30  # the queue trigger tries it; CIJ is down: stored for later
        while "next try in" not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        assert re.search(
            r"redelivery failed \(CIJ unavailable .*HTTP 503\); next try in (2[4-9]|30) s", server.output()
        )
        queue = QueueClient.from_connection_string(storage, "pending-events")
        assert queue.get_queue_properties().approximate_message_count == 1  # back for a later attempt
        assert "CIJ emulator: down, answering 503" in server.output()
        with urllib.request.urlopen(f"{server.emulator_url}_emulator/received") as report:  # noqa: S310
            assert json.load(report)["tracking_ids"] == []
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        raise AssertionError("Azurite outlived the dev server")
    except ConnectionRefusedError:
        pass


def test_sigterm_stops_azurite_too():
    server = DevServer(args=("--queue",)).start()
    try:
        port = int(re.search(r"in Azurite \(127\.0\.0\.1:(\d+)", server.output()).group(1))
        assert server.process is not None
        server.process.terminate()
        assert server.process.wait(timeout=20) == 0
    finally:
        server.stop()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        raise AssertionError("Azurite outlived the dev server")
    except ConnectionRefusedError:
        pass


def recipe_commands() -> list[str]:
    """The curl commands of docs/local.md's recipe, in order, continuation lines joined."""
    page = (ROOT / "docs" / "local.md").read_text()
    recipe = page.split("## Recipe: an event queued while CIJ is down", 1)[1].split("\n## ", 1)[0]
    blocks = [textwrap.dedent(b) for b in re.findall(r"```bash\n(.*?)```", recipe, re.S)]
    return [b.replace("\\\n", " ").strip() for b in blocks if b.strip().startswith("curl ")]


def test_the_recipe_in_docs_works_as_written():
    """Its commands as written, in less time (a 3 s outage instead of 30 s, longer than a 1 s
    forward deadline; a failed attempt stored again for 1 s instead of 30 s): the event is queued,
    then redelivered once CIJ is back."""
    retry_soon = {
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "REDELIVERY_MAX_DELAY_MINUTES": str(1 / 60),
        "FORWARD_TIMEOUT_SECONDS": "1",
    }
    with DevServer(retry_soon, args=("--queue",)) as server:
        assert "an event CIJ cannot take yet is tried again within 1 s" in server.output()
        ports = {
            "127.0.0.1:7071": f"127.0.0.1:{server.port}",
            "127.0.0.1:7072": f"127.0.0.1:{server.emulator_port}",
        }
        answers = []
        for command in recipe_commands():
            for documented, actual in {**ports, "seconds=30": "seconds=3"}.items():
                command = command.replace(documented, actual)
            done = subprocess.run(
                shlex.split(command), capture_output=True, text=True, timeout=60, check=True
            )
            answers.append(done.stdout)
        outage, event = answers
        assert json.loads(outage) == {"down": True}
        assert event.startswith("HTTP/1.1 202") and "X-Delivery: queued" in event
        tracking_id = json.loads(recipe_commands()[1].split("-d '", 1)[1].rstrip("'"))["TrackingId"]
        deadline = time.monotonic() + 30
        while f"CIJ emulator: 202 for TrackingId={tracking_id}" not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        output = server.output()
    assert re.search(r"redelivery failed \(.*HTTP 503\); next try in 1 s", output)  # tried while CIJ was down
    assert "Executed 'Functions.redeliver' (Succeeded" in output
