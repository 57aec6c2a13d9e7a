"""`pip install .` (what azd restore, IDEs and many tools run) installs the function app's module and
package with the runtime requirements, and nothing else: built offline, in a child process, from a
copy of the tracked files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from email.parser import Parser
from pathlib import Path

import pytest

from tests.conftest import ROOT


def tracked_copy(target: Path) -> Path:
    """The repository's tracked files (what a clone holds), copied to `target`."""
    files = (
        subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True, timeout=60
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    project = tracked_copy(tmp_path_factory.mktemp("clone"))
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(site),
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=project,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def test_pip_install_installs_the_function_app_and_its_package(installed):
    assert (installed / "function_app.py").is_file()
    assert (installed / "shared" / "__init__.py").is_file()
    assert (installed / "shared" / "settings.py").is_file()


def test_pip_install_leaves_out_tests_and_tools(installed):
    top_level = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info")}
    assert top_level - {"__pycache__"} == {"function_app.py", "shared"}


def test_the_installed_package_requires_the_runtime_requirements(installed):
    (dist_info,) = installed.glob("cij_push_relay-*.dist-info")
    metadata = Parser().parsestr((dist_info / "METADATA").read_text())
    pins = [
        line.split(" #", 1)[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    required = metadata.get_all("Requires-Dist")
    assert sorted(r.replace(" ", "").lower() for r in required) == sorted(p.lower() for p in pins)


def test_the_installed_copy_imports_on_its_own(installed, tmp_path):
    """function_app and shared come from the installed copy, not from the repository."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    probe = (
        "import function_app, shared.settings; print(function_app.__file__); print(shared.settings.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert all(line.startswith(str(installed)) for line in result.stdout.split())
