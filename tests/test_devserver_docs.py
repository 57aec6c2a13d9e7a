"""The README's "Try it" curl lines and docs/requests.http work, as written, against the dev server."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers_devserver import DevServer

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED_BASE = "http://127.0.0.1:7071"


def try_it_commands() -> list[str]:
    """The shell commands in the README's "Try it" section, continuation lines joined."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [block.replace("\\\n", " ").strip() for block in blocks]


def http_file_requests() -> list[tuple[str, str, str, dict[str, str], bytes, int]]:
    """(title, method, url, headers, body, expected status) for each request in docs/requests.http."""
    text = (ROOT / "docs" / "requests.http").read_text()
    variables = dict(re.findall(r"^@(\w+)\s*=\s*(.*?)\s*$", text, re.M))
    requests = []
    for chunk in text.split("\n###")[1:]:
        title, _, rest = chunk.partition("\n")
        head, _, body = re.sub(r"\{\{(\w+)\}\}", lambda m: variables[m.group(1)], rest).partition("\n\n")
        request_line, *header_lines = [line for line in head.strip().splitlines() if line.strip()]
        method, url = request_line.split()
        headers = dict(line.split(": ", 1) for line in header_lines)
        expected = int(re.search(r"→ (\d{3})\s*$", title).group(1))
        requests.append((title.strip(), method, url, headers, body.strip().encode(), expected))
    return requests


@pytest.fixture(scope="module")
def server():
    with DevServer() as running:
        yield running


def test_the_readme_shows_a_single_event_a_batch_and_a_failure():
    commands = try_it_commands()
    assert len(commands) == 3 and all(c.startswith(f"curl -i {DOCUMENTED_BASE}/api/") for c in commands)


def test_each_try_it_line_answers_as_the_readme_says(server):
    answers = []
    for command in try_it_commands():
        argv = shlex.split(command.replace(DOCUMENTED_BASE, f"http://127.0.0.1:{server.port}"))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
        answers.append((int(head.split()[1]), body))
    (single, _), (batch, batch_body), (failure, failure_body) = answers
    assert (single, batch, failure) == (202, 200, 400)
    assert [r["status"] for r in json.loads(batch_body)["results"]] == [202, 400]
    assert {e["field"] for e in json.loads(failure_body)["errors"]} == {
        "TrackingId",
        "DeviceToken",
        "PushNotificationStatus",
    }
    report = json.load(urllib.request.urlopen(f"{server.emulator_url}_emulator/received", timeout=10))  # noqa: S310
    assert report["tracking_ids"][-2:] == [
        "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
        "9b2f0c4e-1d7a-4c55-8a3e-6f0d2b1c9e77",
    ]


def test_every_request_in_the_http_file_gets_the_status_its_title_names(server):
    requests = http_file_requests()
    assert len(requests) >= 6
    for title, method, url, headers, body, expected in requests:
        url = url.replace(DOCUMENTED_BASE, f"http://127.0.0.1:{server.port}")
        req = urllib.request.Request(url, data=body or None, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - loopback
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        assert status == expected, title
