"""devserver --queue: Azurite with the relay's queues, durable delivery on, the emulator taken down
on request: an event is queued instead of failing."""

from __future__ import annotations

import base64
import json
import re
import shlex
import socket
import subprocess
import textwrap
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

        queue = QueueClient.from_connection_string(storage, "pending-events")
        (message,) = queue.peek_messages(max_messages=32)
        assert json.loads(base64.b64decode(message.content))["event"]["TrackingId"] == event["TrackingId"]
        assert "CIJ emulator: down, answering 503" in server.output()
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
    with DevServer(args=("--queue",)) as server:
        ports = {
            "127.0.0.1:7071": f"127.0.0.1:{server.port}",
            "127.0.0.1:7072": f"127.0.0.1:{server.emulator_port}",
        }
        answers = []
        for command in recipe_commands():
            for documented, actual in ports.items():
                command = command.replace(documented, actual)
            done = subprocess.run(
                shlex.split(command), capture_output=True, text=True, timeout=60, check=True
            )
            answers.append(done.stdout)
        outage, event = answers
        assert json.loads(outage) == {"down": True}
        assert event.startswith("HTTP/1.1 202") and "X-Delivery: queued" in event
        port = int(re.search(r"in Azurite \(127\.0\.0\.1:(\d+)", server.output()).group(1))
        queue = QueueClient.from_connection_string(connection_string(port), "pending-events")
        assert len(queue.peek_messages(max_messages=32)) == 1
