"""Schemathesis against the dev server over real HTTP: openapi.yaml is what the relay does.

Every check runs (no 5xx where none is documented, status codes, content types, headers and bodies
conform, negative data is refused with a 4xx, valid data is accepted), seeded and bounded, in four
situations: CIJ answering (the embedded emulator), CIJ unreachable, a CIJ target the allow-list
refuses, and invalid settings. Two limits, by design:

* `ignored_auth` is off: function keys are checked by the Functions host, not by the function code,
  and the dev server (like Core Tools) does not check them. test_openapi_routes.py checks that each route's
  auth level matches its security requirement.
* strings are generated from ASCII: Schemathesis reads `\\p{C}` / `\\p{Z}` (the DeviceToken pattern)
  as their ASCII members only, so it would call e.g. an unassigned code point valid. Agreement of
  that pattern with the validator over all of Unicode is checked exhaustively in test_openapi_events.py.
"""

from __future__ import annotations

import collections
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ORG_ID, leaks, sensitive
from tests.helpers_devserver import DevServer

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261127

# Bound but never listening, for the whole run: every forward to it is refused, and no other server
# can take the port meanwhile.
_RESERVED = socket.socket()
_RESERVED.bind(("127.0.0.1", 0))
CLOSED = f"http://127.0.0.1:{_RESERVED.getsockname()[1]}/"
SCENARIOS = {
    "cij-answers": ({}, 120, {}),
    "cij-unreachable": (
        {"CIJ_ORG_ID": ORG_ID, "CIJ_PUBLIC_ENDPOINT": CLOSED, "CIJ_ALLOWED_HOSTS": "127.0.0.1"},
        25,
        # Refused connections: 502; 504 only if a stalled machine lets the 0.5 s deadline run out;
        # 503 once the circuit has opened after CIRCUIT_FAILURE_THRESHOLD such failures.
        {"not_a_server_error": ["2xx", "3xx", "4xx", "502", "503", "504"]},
    ),
    "target-refused-by-allow-list": (
        {"CIJ_ORG_ID": ORG_ID, "CIJ_PUBLIC_ENDPOINT": CLOSED, "CIJ_ALLOWED_HOSTS": "*.dynamics.com"},
        25,
        {"not_a_server_error": ["2xx", "3xx", "4xx", "503"]},
    ),
    "settings-invalid": (
        {"BATCH_CONCURRENCY": "many"},
        25,
        # Nothing works without valid settings, not even validation: every route answers 503.
        {
            "not_a_server_error": ["2xx", "3xx", "4xx", "503"],
            "negative_data_rejection": ["400", "401", "403", "404", "405", "406", "413", "415", "422", "503"],
        },
    ),
}


# Settings the relay refuses: the dev server would stop at start, so these serve unchecked, as Azure does.
UNCHECKED = {"target-refused-by-allow-list", "settings-invalid"}


@pytest.fixture(scope="module", autouse=True)
def _release_reserved_port():
    yield
    _RESERVED.close()


def config(expected: dict[str, list[str]]) -> str:
    lines = []
    for check, statuses in expected.items():
        lines += [f"[checks.{check}]", f"expected-statuses = {json.dumps(statuses)}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_schemathesis_finds_nothing(scenario):
    env, max_examples, expected = SCENARIOS[scenario]
    sensitive(CLOSED, CLOSED.removeprefix("http://").rstrip("/"))
    with (
        tempfile.TemporaryDirectory(prefix="relay-fuzz-") as work,
        DevServer(
            {"FORWARD_TIMEOUT_SECONDS": "0.5", **env},
            args=("--skip-checks",) if scenario in UNCHECKED else (),
        ) as server,
    ):
        Path(work, "schemathesis.toml").write_text(config(expected))
        har = Path(work, "run.har")
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(Path(work, "schemathesis.toml")),
            "run",
            str(ROOT / "openapi.yaml"),
            "--url",
            server.url,
            "--checks",
            "all",
            "--exclude-checks",
            "ignored_auth",
            "--seed",
            str(SEED),
            "--max-examples",
            str(max_examples),
            "--generation-codec",
            "ascii",
            "--generation-database",
            "none",
            "--workers",  # one: concurrent workers race in Hypothesis's lambda introspection (ast.parse)
            "1",
            "--request-timeout",
            "10",
            "--max-response-time",
            "5",
            "--header",
            "x-functions-key: local-test-key",
            "--report",
            "har",
            "--report-har-path",
            str(har),
            "--no-color",
            "--output-sanitize",
            "false",
        ]
        run = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
        entries = json.loads(har.read_text())["log"]["entries"]
        output = server.output()
    seen = collections.Counter(
        (
            e["request"]["method"],
            e["request"]["url"].split("/api", 1)[1].split("?")[0],
            e["response"]["status"],
        )
        for e in entries
    )
    # The run exercised what it should: accepted, refused and unsupported requests on every route.
    if scenario == "cij-answers":
        assert seen[("POST", "/events", 202)] >= 20 and seen[("POST", "/events/batch", 200)] >= 20
        assert seen[("GET", "/health", 200)] >= 1
        for path in ("/events", "/events/batch"):
            assert seen[("POST", path, 400)] and seen[("POST", path, 415)], seen
    elif scenario == "cij-unreachable":
        assert seen[("POST", "/events", 502)] >= 5, seen
    else:
        assert seen[("GET", "/health", 503)] >= 1 and seen[("POST", "/events", 503)] >= 1, seen
    bodies = "\n".join(e["response"]["content"].get("text", "") for e in entries)
    assert leaks(bodies) == [] and leaks(output) == []
