"""One benchmark run: every figure module in turn (bench/figures), then the machine it ran on.

Imported by `bench/__main__.py` only after it has trusted the test CA (aiohttp reads SSL_CERT_FILE
when it is imported).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from typing import Any

import aiohttp

from bench.figure import Bench, Result
from bench.figures import FIGURES


def machine() -> dict[str, Any]:
    """Cores, CPU model, Python, platform and aiohttp version."""
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), ""
            )
    except OSError:  # pragma: no cover - not Linux
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "aiohttp": aiohttp.__version__,
    }


async def run(
    events: int, concurrency: int, rounds: int, server_pem: str, progress: Callable[[str], None] | None
) -> Result:
    """Measure every figure; one JSON-ready dict of all their keys."""
    bench = Bench(events, concurrency, rounds, server_pem, progress or (lambda _: None))
    result: Result = {"events": events, "concurrency": concurrency}
    try:
        for figure in FIGURES:
            result.update(await figure.measure(bench))
    finally:
        await bench.close()
    return {**result, **bench.placement(), **machine()}
