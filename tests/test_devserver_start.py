"""devserver: a start that cannot work stops before the banner, with one line saying why."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from shared.settings import ConfigError, load
from tests.fakes.servers import free_port
from tests.helpers_devserver import DevServer, run_devserver


def one_line_error(done) -> str:
    """The single stderr line of a failed start (no traceback, no banner on stdout)."""
    assert done.returncode == 1, done
    assert done.stdout == "", done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def empty_settings(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text('{"Values": {}}')
    return str(path)


@pytest.mark.parametrize(
    "env",
    [
        {"FORWARD_TIMEOUT_SECONDS": "soon"},
        {"DELIVERY_FALLBACK": "kafka"},
        {"DELIVERY_QUEUE_NAME": "Pending_Events"},
        {"APP_CHECK_MODE": "enforce"},
        {"KEY_VAULT_URL": "http://kv.vault.azure.net/"},
    ],
)
def test_an_invalid_setting_stops_the_start_with_the_relays_message(env, empty_settings):
    with pytest.raises(ConfigError) as expected:
        load(env)
    done = run_devserver("--port", str(free_port()), "--settings", empty_settings, env=env)
    assert one_line_error(done) == f"error: relay settings invalid: {expected.value}"


def test_an_invalid_setting_in_local_settings_json_stops_it_too(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"BATCH_CONCURRENCY": 0}}))
    done = run_devserver("--port", str(free_port()), "--settings", str(path))
    assert "BATCH_CONCURRENCY" in one_line_error(done)


def test_a_target_the_relay_would_reject_stops_the_start_without_revealing_it(empty_settings):
    env = {
        "CIJ_ORG_ID": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
        "CIJ_PUBLIC_ENDPOINT": "https://cij.example.org",
    }
    done = run_devserver("--port", str(free_port()), "--settings", empty_settings, env=env)
    line = one_line_error(done)
    assert "CIJ_ALLOWED_HOSTS" in line
    assert env["CIJ_ORG_ID"] not in done.stderr


def test_half_a_target_names_what_is_missing(empty_settings):
    env = {"CIJ_PUBLIC_ENDPOINT": "https://public-eur.mkt.dynamics.com"}
    done = run_devserver("--port", str(free_port()), "--settings", empty_settings, env=env)
    assert one_line_error(done).startswith("error: CIJ_ORG_ID is not set")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"Values": {', "not valid JSON"),
        ("[1, 2]", '"Values"'),
        ('{"Values": ["KEY_VAULT_URL"]}', '"Values"'),
        ('{"Values": {"CIJ_ALLOWED_HOSTS": {"a": 1}}}', "Values.CIJ_ALLOWED_HOSTS"),
    ],
)
def test_a_malformed_local_settings_file_is_one_line(tmp_path, content, says):
    path = tmp_path / "local.settings.json"
    path.write_text(content)
    line = one_line_error(run_devserver("--port", str(free_port()), "--settings", str(path)))
    assert str(path) in line and says in line


def test_naming_a_settings_file_that_does_not_exist_is_one_line(tmp_path):
    missing = tmp_path / "nowhere" / "local.settings.json"
    line = one_line_error(run_devserver("--port", str(free_port()), "--settings", str(missing)))
    assert line == f"error: {missing}: no such file"


@pytest.mark.parametrize("option", ["--port", "--emulator-port"])
def test_a_busy_port_is_one_line_naming_the_option_to_change(option, empty_settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = {"--port": str(free_port()), "--emulator-port": "0", option: str(busy)}
        done = run_devserver(*(a for item in ports.items() for a in item), "--settings", empty_settings)
    line = one_line_error(done)
    assert f"port {busy}" in line and "already in use" in line and option in line


def test_a_host_that_is_not_this_machine_is_one_line(empty_settings):
    # 192.0.2.1 (TEST-NET-1) is never assigned to a local interface; nothing is sent anywhere.
    done = run_devserver("--host", "192.0.2.1", "--port", str(free_port()), "--settings", empty_settings)
    assert "not an address of this machine" in one_line_error(done)


def test_help_shows_every_default():
    done = run_devserver("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for default in ("(default: 127.0.0.1)", "(default: 7071)", "(default: 7072)", "(default: INFO)"):
        assert default in text
    assert "--queue" in text and "--settings FILE" in text


def test_skip_checks_serves_invalid_settings_as_azure_does():
    with DevServer({"BATCH_CONCURRENCY": "many"}, args=("--skip-checks",)) as server:
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{server.url}/events", data=b"{}", headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback
        assert answer.value.code == 503 and int(answer.value.headers["Retry-After"]) >= 1
        assert "BATCH_CONCURRENCY" in server.output()  # the relay's own log line names it
