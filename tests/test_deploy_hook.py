"""The azd predeploy hook (scripts/wait_for_roles.py) waits until the identity's role assignments are
old enough to have taken effect, so a first `azd up` does not fail its upload with 403. It runs as
azd runs it, in a child process, with a stand-in `az` on PATH that answers as `az rest` does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.infra_model import MAIN, load

HOOK = ROOT / "scripts" / "wait_for_roles.py"
PRINCIPAL = "7d3f0a52-1c44-4b8e-9a51-2f0c6d1e9b77"

FAKE_AZ = """#!{python}
import json, os, sys
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
sys.stdout.write(os.environ.get("FAKE_AZ_STDOUT", ""))
sys.stderr.write(os.environ.get("FAKE_AZ_STDERR", ""))
sys.exit(int(os.environ.get("FAKE_AZ_EXIT", "0")))
"""


def arm_time(moment: datetime) -> str:
    """A time as ARM writes createdOn: seven fractional digits and Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "1Z"


def assignments(*ages_seconds: float) -> str:
    now = datetime.now(UTC)
    return json.dumps(
        {"value": [{"properties": {"createdOn": arm_time(now - timedelta(seconds=a))}} for a in ages_seconds]}
    )


@pytest.fixture
def az_dir(tmp_path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ.format(python=sys.executable))
    az.chmod(0o755)
    return bin_dir


def run_hook(tmp_path: Path, path: str, **env: str) -> tuple[subprocess.CompletedProcess, float, list]:
    log = tmp_path / "az.log"
    environment = {
        "PATH": path,
        "FAKE_AZ_LOG": str(log),
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_RESOURCE_GROUP": "rg-relay-test",
        "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": PRINCIPAL,
        **env,
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(HOOK)], capture_output=True, text=True, timeout=60, check=False, env=environment
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, time.monotonic() - started, calls


def test_new_role_assignments_are_waited_for(tmp_path, az_dir):
    result, elapsed, calls = run_hook(
        tmp_path, str(az_dir), FAKE_AZ_STDOUT=assignments(600, 0.5), RELAY_ROLE_SETTLE_SECONDS="3"
    )
    assert result.returncode == 0, result.stderr
    assert "waiting" in result.stdout
    assert elapsed >= 2
    (call,) = calls
    assert call[:3] == ["rest", "--method", "get"]
    url = call[call.index("--url") + 1]
    assert url.startswith(
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-relay-test/"
        "providers/Microsoft.Authorization/roleAssignments?api-version="
    )
    assert f"principalId%20eq%20%27{PRINCIPAL}%27" in url


def test_assignments_from_an_earlier_provision_are_not_waited_for(tmp_path, az_dir):
    result, elapsed, calls = run_hook(tmp_path, str(az_dir), FAKE_AZ_STDOUT=assignments(3600, 7200))
    assert result.returncode == 0
    assert "not waiting" in result.stdout
    assert len(calls) == 1
    assert elapsed < 30


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"FAKE_AZ_EXIT": "1", "FAKE_AZ_STDERR": "ERROR: Please run 'az login' to setup account.\n"},
            "az login",
        ),
        ({"FAKE_AZ_STDOUT": "not json"}, "could not read"),
        ({"FAKE_AZ_STDOUT": json.dumps({"value": []})}, "no role assignments yet"),
    ],
)
def test_when_the_assignments_cannot_be_read_the_hook_says_what_to_do_and_lets_the_deploy_go_on(
    tmp_path, az_dir, env, expected
):
    result, _, _ = run_hook(tmp_path, str(az_dir), **env)
    assert result.returncode == 0
    assert expected in result.stdout
    assert "403" in result.stdout and "azd deploy" in result.stdout


def test_without_the_azure_cli_the_hook_says_what_to_do(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result, _, calls = run_hook(tmp_path, str(empty))
    assert result.returncode == 0
    assert "not installed" in result.stdout and "azd deploy" in result.stdout
    assert calls == []


def test_before_the_first_provision_the_hook_does_nothing(tmp_path, az_dir):
    result, _, calls = run_hook(tmp_path, str(az_dir), AZURE_MANAGED_IDENTITY_PRINCIPAL_ID="")
    assert result.returncode == 0
    assert calls == []


def test_azure_yaml_runs_the_hook_before_every_deployment_on_every_shell():
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text())["hooks"]["predeploy"]
    for shell in ("posix", "windows"):
        assert hooks[shell]["run"].split()[-1] == "scripts/wait_for_roles.py"
        assert hooks[shell]["continueOnError"] is True  # the wait is a help, never a blocker
    assert hooks["windows"]["shell"] == "pwsh"


def test_the_hook_reads_the_outputs_the_templates_write():
    """The azd environment values the hook needs are main.bicep outputs (azd adds the subscription)."""
    outputs = load().doc(MAIN)["outputs"]
    assert {"AZURE_RESOURCE_GROUP", "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID"} <= set(outputs)
    hook = HOOK.read_text()
    assert all(
        name in hook
        for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID")
    )
