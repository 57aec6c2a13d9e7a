"""Import time of function_app against the runtime packages alone, and what importing it does on
the network: each in fresh interpreters, as a cold start imports it."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from bench.figure import Bench, Result, Target
from bench.services import ROOT

RUNTIME_PACKAGES = ("azure.functions", "aiohttp", "azure.identity.aio", "azure.keyvault.secrets.aio")
IMPORT_RUNS = 7

TARGETS = {
    "import_ms": Target(
        "<= 1.1 x import_baseline_ms, no network at import",
        lambda r: r["import_ms"] <= 1.1 * r["import_baseline_ms"] and r["import_network_calls"] == 0,
        lambda r: (
            f"{r['import_ms']:.1f} (four runtime packages alone: {r['import_baseline_ms']:.1f}; "
            f"network calls at import: {r['import_network_calls']})"
        ),
    ),
}

_TIMED_IMPORT = "import time; t = time.perf_counter(); import {}; print((time.perf_counter() - t) * 1000)"
_NETWORK_AT_IMPORT = """
import socket
calls = []
def spy(owner, name):
    real = getattr(owner, name)
    def recorded(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)
    setattr(owner, name, recorded)
for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket.socket, "sendto"),
                    (socket, "getaddrinfo"), (socket, "create_connection")):
    spy(owner, name)
import threading
threads = threading.active_count()
import function_app
print(len(calls), threading.active_count() - threads)
"""

# Bytecode caches in one place outside the repository, so that every timed import reads compiled
# modules (as a deployed app does) whatever PYTHONDONTWRITEBYTECODE says.
_PYCACHE = os.path.join(tempfile.gettempdir(), "cij-relay-bench-pycache")


def _python(code: str) -> str:
    """Run `code` in a fresh interpreter from the repository root; its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip()


def measure_imports(runs: int = IMPORT_RUNS) -> dict[str, Any]:
    """Median import time of function_app and of the four runtime packages, each in a fresh
    interpreter (alternating, after one untimed run each to write bytecode caches); and the
    network calls and threads importing function_app makes."""
    app, baseline = _TIMED_IMPORT.format("function_app"), _TIMED_IMPORT.format(", ".join(RUNTIME_PACKAGES))
    _python(app), _python(baseline)
    app_ms, baseline_ms = [], []
    for _ in range(runs):
        app_ms.append(float(_python(app)))
        baseline_ms.append(float(_python(baseline)))
    calls, threads = map(int, _python(_NETWORK_AT_IMPORT).split())
    return {
        "import_ms": round(statistics.median(app_ms), 1),
        "import_baseline_ms": round(statistics.median(baseline_ms), 1),
        "import_network_calls": calls,
        "import_threads_started": threads,
    }


async def measure(bench: Bench) -> Result:
    """The import figures (before any service starts)."""
    bench.say("timing imports in fresh interpreters ...")
    return measure_imports()
