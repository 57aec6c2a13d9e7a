"""`python -m fuzz [--seconds N] [libFuzzer options]`: fuzz the event and batch parsers with atheris
(libFuzzer, coverage-guided), starting from the corpus in fuzz/corpus with a JSON dictionary.

New interesting inputs go to .fuzz/corpus (not tracked); a failing input is written to .fuzz/ and
the run exits non-zero with the traceback. Each input may take at most 2 s and the process 1 GB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
WORK = HERE.parent / ".fuzz"

with atheris.instrument_imports(include=["shared", "fuzz"]):
    from fuzz.target import check


def main() -> None:
    """Parse the options and fuzz until the time is up or an input fails."""
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="how long to run (default 60)")
    parser.add_argument("--work", type=Path, default=WORK, help="where new inputs and failures go")
    options, libfuzzer = parser.parse_known_args()
    (options.work / "corpus").mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        f"-max_total_time={options.seconds}",
        "-timeout=2",
        "-rss_limit_mb=1024",
        "-max_len=70000",
        f"-dict={HERE / 'json.dict'}",
        f"-artifact_prefix={options.work}/",
        *libfuzzer,
        str(options.work / "corpus"),  # first: where libFuzzer adds what it finds
        str(HERE / "corpus"),
    ]
    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
