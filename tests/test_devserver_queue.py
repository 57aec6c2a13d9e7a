"""devserver --queue: Azurite with the relay's queues, durable delivery on, the emulator taken down
on request: an event is queued instead of failing."""

from __future__ import annotations

import base64
import json
import re
import socket
import urllib.request

from azure.storage.queue import QueueClient

from devserver.azurite import connection_string
from tests.conftest import new_event
from tests.helpers_devserver import DevServer


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
