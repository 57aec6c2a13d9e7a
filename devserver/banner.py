"""What the dev server prints once it serves: where it listens, where events go, and a first request."""

from __future__ import annotations

import ipaddress
import json
import socket
import uuid

WILDCARDS = ("0.0.0.0", "", "::")  # the names of "every interface"


def url_host(host: str) -> str:
    """The host as it appears in a URL a person can open on this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def lan_address() -> str | None:
    """This machine's address on its default route (a UDP socket is only pointed there; nothing
    is sent), for reaching the dev server from a phone; None without one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like any address, never sent to
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


def relay_lines(host: str, port: int) -> list[str]:
    """Where the relay listens."""
    lines = [f"CIJ relay on http://{url_host(host)}:{port}/api/events"]
    if host in WILDCARDS:
        lan = lan_address()
        reach = (
            f"http://{lan}:{port}/api/events" if lan else f"http://<this machine's address>:{port}/api/events"
        )
        lines.append(f"  listening on every interface: from a phone on the same network, {reach}")
    return lines


def emulator_lines(url: str) -> list[str]:
    """The embedded emulator, and how to look at it and take it down."""
    return [
        f"Events go to the CIJ emulator on {url} (202 for what follows CIJ's contract, 400 otherwise)",
        f"  what it received:    curl {url}_emulator/received",
        f"  take it down:        curl -X POST '{url}_emulator/outage?seconds=60'",
        f"  down / up at will:   curl -X POST {url}_emulator/down   curl -X POST {url}_emulator/up",
    ]


def try_it(host: str, port: int) -> list[str]:
    """A request to copy and paste: a valid event with a fresh TrackingId."""
    sample = json.dumps(
        {"TrackingId": str(uuid.uuid4()), "DeviceToken": "demo-device-token", "PushNotificationStatus": 1}
    )
    return [
        "Try it:",
        f"  curl -i -X POST http://{url_host(host)}:{port}/api/events "
        f"-H 'Content-Type: application/json' -d '{sample}'",
    ]
