"""scripts/check-bicep: checkov over infra/, failing on any failed check or unparsable file; every
skipped check is justified beside its resource."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.infra_model import INFRA, REPO, SYNTAX_ERRORS, copy_infra, edit

CHECK_BICEP = REPO / "scripts" / "check-bicep"


@pytest.fixture
def copy(tmp_path) -> Path:
    return copy_infra(tmp_path)


def test_every_checkov_skip_has_a_reason():
    for path in INFRA.rglob("*.bicep"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"//checkov:skip=CKV2?_AZURE_\d+: \S.{15,}", line), f"{path}: {line.strip()}"


def run_check_bicep(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_BICEP), str(directory)], capture_output=True, text=True, timeout=900, check=False
    )


def test_check_bicep_fails_on_a_file_checkov_cannot_parse(copy):
    """checkov itself exits 0 here; the script must read parsing_errors and fail."""
    file, old, new = SYNTAX_ERRORS[0]
    edit(copy, file, lambda text: text.replace(old, new, 1))
    result = run_check_bicep(copy)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "parsing_errors=1" in result.stdout
    assert "could not parse" in result.stderr


def test_check_bicep_fails_on_a_failed_check(copy):
    edit(copy, "modules/function.bicep", lambda text: text.replace("httpsOnly: true", "httpsOnly: false"))
    result = run_check_bicep(copy)
    assert result.returncode != 0, result.stdout + result.stderr
    assert re.search(r"FAILED\s+CKV_AZURE_\d+\s+Microsoft\.Web/sites\.site", result.stdout), result.stdout
    assert "parsing_errors=0" in result.stdout
