"""The parsers' fuzz target (`python -m fuzz`, atheris) runs briefly as part of the suite: any
exception other than a refusal, or an accepted body the standard library reads differently
(non-finite or over-long numbers, duplicate keys, a body over its cap), fails it."""

from __future__ import annotations

from tests.conftest import run_module

SECONDS = 8  # a brief run with a fixed seed; `python -m fuzz --seconds 600` for a longer one


def test_the_parsers_survive_a_brief_fuzzing_run(tmp_path):
    run = run_module("fuzz", "--seconds", str(SECONDS), "--work", str(tmp_path), "-seed=2", timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "Done " in output and " runs in " in output, output[-2000:]
    assert not list(tmp_path.glob("crash-*")), output[-4000:]
