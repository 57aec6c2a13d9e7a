"""Security hygiene: the suite-wide leak check works, dependencies are pinned, static checks are clean."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ORG_ID, ROOT, SENSITIVE, leaks, new_event, run_module, sensitive

PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!-]+")


def requirement_lines(name: str) -> list[str]:
    lines = [line.split(" #", 1)[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_runtime_requirements_are_all_pinned():
    lines = requirement_lines("requirements.txt")
    assert lines and [line for line in lines if not PIN.fullmatch(line)] == []


@pytest.mark.parametrize("name", sorted(p.name for p in ROOT.glob("requirements*.txt")))
def test_every_requirements_file_pins_every_package(name):
    unpinned = [
        line for line in requirement_lines(name) if not PIN.fullmatch(line) and not line.startswith("-r ")
    ]
    assert unpinned == []


def test_registered_strings_are_found_but_a_longer_port_is_not():
    sensitive("http://127.0.0.1:4242/", "127.0.0.1:4242")
    assert leaks(f"tracking {ORG_ID}") == [ORG_ID]
    assert leaks("GET http://127.0.0.1:4242/x") != []
    assert leaks("vault at 127.0.0.1:42421") == []
    token = new_event()["DeviceToken"]
    assert token in SENSITIVE and leaks(f"device={token}") == [token]


def test_the_suite_fails_any_test_that_logs_or_answers_a_sensitive_string():
    """Runs tests/leak_demo.py (not collected by the suite) in a child pytest: each of its tests
    must fail at teardown, naming the leak."""
    run = run_module("pytest", "-p", "no:cacheprovider", "tests/leak_demo.py", "-rE")
    assert run.returncode == 1, run.stdout[-3000:]
    out = run.stdout
    assert "3 passed, 3 errors" in out, out[-3000:]  # each test body passed; its teardown failed it
    assert f"{ORG_ID!r} in log record from cij_relay.target" in out, out[-3000:]
    assert "in log record from some.library" in out, out[-3000:]  # found in the formatted traceback
    assert "in response body or process output" in out, out[-3000:]


def test_bandit_and_ruff_security_rules_are_clean():
    bandit = run_module("bandit", "--quiet", "--severity-level", "low", "-r", "function_app.py", "shared")
    assert bandit.returncode == 0, bandit.stdout + bandit.stderr
    ruff = run_module("ruff", "check", "--select", "S", "--no-cache", ".")
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
