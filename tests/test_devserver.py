"""devserver: the README's run command serves function_app over HTTP with the embedded CIJ emulator."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import new_event
from tests.fakes.servers import free_port
from tests.helpers_devserver import DevServer

ROOT = Path(__file__).parent.parent


@pytest.fixture
def served():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIJ_", "KEY_VAULT"))}
    process = subprocess.Popen(
        ["./scripts/serve", "--port", str(port), "--emulator-port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("curl ") and "/api/events" in line:
            break
    yield port, lines, process
    process.terminate()
    process.wait(10)


def test_the_printed_curl_line_returns_202_from_the_emulator(served):
    port, lines, _process = served
    curl = next(line.strip() for line in lines if line.strip().startswith("curl ") and "/api/" in line)
    assert f"http://127.0.0.1:{port}/api/events" in curl
    result = subprocess.run(
        [*shlex.split(curl), "-s", "-o", "/dev/null", "-w", "%{http_code}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout == "202"
    emulator = re.search(r"CIJ emulator on (http://127\.0\.0\.1:\d+/)", "".join(lines)).group(1)
    with urllib.request.urlopen(f"{emulator}_emulator/received", timeout=10) as r:  # noqa: S310 - loopback
        report = json.load(r)
    sent = json.loads(curl.split("-d '", 1)[1].rstrip("'"))
    assert report["tracking_ids"] == [sent["TrackingId"]]


def test_routes_methods_and_limits_over_http(served):
    port, _, _ = served
    import urllib.error

    def request(path, data=None, method="POST", content_type="application/json"):
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    assert request("/api/health", method="GET")[0] == 200
    status, headers, _body = request("/api/events", b"{}")
    assert status == 400 and headers["Content-Type"].startswith("application/problem+json")
    assert request("/api/events", b"x" * (2 * 1024 * 1024))[0] == 413
    assert request("/api/events", b"{}", content_type="text/plain")[0] == 415
    assert request("/api/events", method="GET")[0] == 405
    assert request("/api/nope", b"{}")[0] == 404


def test_blank_target_settings_mean_the_emulator_and_its_host_joins_the_allow_list():
    # Blank values count as unset, as the relay reads them; a pattern already set is kept.
    env = {"KEY_VAULT_URL": "", "CIJ_PUBLIC_ENDPOINT": " ", "CIJ_ALLOWED_HOSTS": "*.dynamics.com"}
    with DevServer(env) as server:
        assert server.emulator_port is not None
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{server.url}/events",
            data=json.dumps(new_event()).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert response.status == 202


def test_a_long_header_is_accepted_as_the_hosts_web_server_accepts_it():
    # Kestrel takes up to 32 KiB of headers; an App Check token is not bounded by the contract and
    # is ignored while App Check is off.
    with DevServer() as server:
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{server.url}/events",
            data=json.dumps(new_event()).encode(),
            headers={"Content-Type": "application/json", "X-Firebase-AppCheck": "0" * 20000},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert response.status == 202
