"""The measurements: services in their own processes, the four modes, the rounds and the figures.

Imported by `bench/__main__.py` only after it has trusted the test CA (aiohttp reads SSL_CERT_FILE
when it is imported).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import azure.functions as func

import function_app
from bench import naive
from shared import relay, target
from shared import settings as settings_module

ROOT = Path(__file__).resolve().parent.parent
ORG_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
CLIENT_ID = "a1b2c3d4-0000-4000-8000-00000000c11d"
EVENTS_PATH = target.EVENTS_PATH.format(org_id=ORG_ID)
FUNCTION_URL = "http://127.0.0.1:7071/api/"
JSON_HEADERS = {"Content-Type": "application/json"}
WARMUP_EVENTS = 1000
BATCH_SIZE = 100
MODES = ("bare", "relay", "naive", "relay_batch")
SLICES = 10  # bare and relay alternate (A B B A ...) over this many parts of the N events
RUNTIME_PACKAGES = ("azure.functions", "aiohttp", "azure.identity.aio", "azure.keyvault.secrets.aio")
IMPORT_RUNS = 7

Call = Callable[[Any], Awaitable[bool]]  # takes one item: a body (bare) or an HttpRequest
Progress = Callable[[str], None] | None

_routes: dict[str, Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]] | None = None


def routes() -> dict[str, Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]]:
    """The app's functions by route; get_functions() may run once per process, so it runs here once."""
    global _routes
    if _routes is None:
        _routes = {
            getattr(f.get_trigger(), "route", None) or f.get_function_name(): f.get_user_function()
            for f in function_app.app.get_functions()
        }
    return _routes


# --- services --------------------------------------------------------------------------------


async def _spawn(module: str, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start `python -m module args` and return it with the first line it prints."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
    except TimeoutError:
        proc.kill()
        raise
    if not line:
        raise RuntimeError(f"{module} exited before it was ready (code {await proc.wait()})")
    return proc, line.decode().strip()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.stdin is not None:
        proc.stdin.close()  # the services exit when stdin closes
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def split_cores() -> tuple[set[int], set[int]] | None:
    """One core for this process (where every mode is measured), the others for the services, as
    CIJ runs on other machines than the relay; None with fewer than two cores (nothing pinned)."""
    if not hasattr(os, "sched_getaffinity"):  # pragma: no cover - not Linux
        return None
    cores = sorted(os.sched_getaffinity(0))
    return ({cores[0]}, set(cores[1:])) if len(cores) > 1 else None


class Services:
    """The upstream (CIJ stand-in) and the vault + identity fakes, each in its own process, on
    cores of their own when there are two or more."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.control: aiohttp.ClientSession | None = None
        self.original_cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self.cores = split_cores()

    async def start(self, server_pem: str) -> Services:
        proc, port = await _spawn("bench.upstream", "--port", "0")
        self.procs.append(proc)
        self.upstream_url = f"http://127.0.0.1:{int(port)}/"
        proc, line = await _spawn(
            "bench.vault", "--cert", server_pem, "--org-id", ORG_ID, "--endpoint", self.upstream_url
        )
        self.procs.append(proc)
        self.vault: dict[str, str] = json.loads(line)
        if self.cores is not None:
            mine, theirs = self.cores
            for proc in self.procs:
                os.sched_setaffinity(proc.pid, theirs)
            os.sched_setaffinity(0, mine)
        self.control = aiohttp.ClientSession()
        return self

    async def upstream_stats(self, reset: bool = False, ids: bool = False) -> dict[str, Any]:
        """Events and connections the upstream saw since the last reset, and its CPU seconds."""
        query = "&".join(name for name, wanted in (("reset=1", reset), ("ids=1", ids)) if wanted)
        url = self.upstream_url + "_stats" + (f"?{query}" if query else "")
        async with self.control.get(url) as resp:
            return await resp.json()

    async def vault_reads(self) -> dict[str, int]:
        """Key Vault GETs per secret so far."""
        async with self.control.get(self.vault["stats_url"]) as resp:
            return (await resp.json())["kv_reads"]

    def configure_relay(self) -> None:
        """Point the relay (and the naive function) at the fakes, as deployed: Key Vault + identity."""
        os.environ.update(
            {
                "KEY_VAULT_URL": self.vault["vault_url"],
                "IDENTITY_ENDPOINT": self.vault["identity_endpoint"],
                "IDENTITY_HEADER": self.vault["identity_header"],
                "AZURE_CLIENT_ID": CLIENT_ID,
                "CIJ_ALLOWED_HOSTS": "127.0.0.1",
            }
        )

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.close()
        for proc in self.procs:
            await _stop(proc)
        if self.original_cores:
            os.sched_setaffinity(0, self.original_cores)


# --- driving ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed pass of a mode over its items."""

    events: int
    seconds: float
    cpu_seconds: float
    latencies: list[float]
    failed: int


async def drive(call: Call, items: Sequence[Any], concurrency: int, events: int | None = None) -> Run:
    """`concurrency` workers take the items in order, one call at a time each, until none are left."""
    pending = iter(items)
    latencies: list[float] = []
    failed = 0
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal failed
        for item in pending:
            started = clock()
            ok = await call(item)
            latencies.append(clock() - started)
            failed += not ok

    cpu, started = time.process_time(), clock()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)))))
    seconds = clock() - started
    return Run(events or len(items), seconds, time.process_time() - cpu, latencies, failed)


def percentile_ms(latencies: list[float], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


def rss_mb() -> float:
    """This process's resident set size now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def host_requests(bodies: Sequence[bytes], route: str) -> list[func.HttpRequest]:
    """The HttpRequest objects the Functions host hands the function. They are built before a pass
    starts, as `bare` gets its bodies ready-made: building them is the host's work, not the relay's."""
    url = FUNCTION_URL + route
    return [func.HttpRequest("POST", url, headers=JSON_HEADERS, body=body) for body in bodies]


def invoker(function: Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]) -> Call:
    """Call a function in-process with one prepared HttpRequest; True when it answered 202."""

    async def call(request: func.HttpRequest) -> bool:
        response = await function(request)
        return response.status_code == 202

    return call


def batch_invoker(function: Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]) -> Call:
    """Call the batch route; True when every event in the batch was accepted."""

    async def call(request: func.HttpRequest) -> bool:
        response = await function(request)
        if response.status_code != 200:
            return False
        return all(r["status"] == 202 for r in json.loads(response.get_body())["results"])

    return call


# --- modes ---------------------------------------------------------------------------------


@dataclass
class Workload:
    bodies: list[bytes]  # the N events, as apps send them
    batches: list[bytes]  # the same events, BATCH_SIZE per JSON array
    concurrency: int
    limit: int  # connector limit: UPSTREAM_MAX_CONNECTIONS
    batch_concurrency: int  # BATCH_CONCURRENCY: events of one batch in flight

    @property
    def warmup(self) -> list[bytes]:
        return self.bodies[: min(WARMUP_EVENTS, len(self.bodies))]

    def slices(self) -> list[list[bytes]]:
        """The N events cut into SLICES consecutive parts."""
        n = len(self.bodies)
        cuts = [n * i // SLICES for i in range(SLICES + 1)]
        return [self.bodies[a:b] for a, b in itertools.pairwise(cuts) if b > a]


@dataclass
class Tally:
    """One mode's figures in one round, summed over its passes (warm-ups count as sent only)."""

    events: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    upstream_cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    sent: int = 0
    upstream_requests: int = 0
    connection_ids: set[int] = field(default_factory=set)

    def figures(self) -> dict[str, Any]:
        return {
            "eps": self.events / self.seconds,
            "p50_ms": percentile_ms(self.latencies, 0.50),
            "p99_ms": percentile_ms(self.latencies, 0.99),
            "cpu_pct": 100 * self.cpu_seconds / self.seconds,
            "upstream_cpu_pct": 100 * self.upstream_cpu_seconds / self.seconds,
            "failed": self.failed,
            "sent": self.sent,
            "upstream_requests": self.upstream_requests,
            "upstream_connections": len(self.connection_ids),
        }


async def run_pass(
    services: Services,
    tally: Tally,
    call: Call,
    items: Sequence[Any],
    concurrency: int,
    events: int,
    timed: bool = True,
) -> None:
    """Send `items` (holding `events` events) through `call`; the upstream's counters cover just
    this pass. An untimed pass (warm-up) only counts what was sent and received."""
    before = await services.upstream_stats(reset=True)
    run = await drive(call, items, concurrency, events)
    after = await services.upstream_stats(reset=True, ids=True)
    tally.sent += events
    tally.failed += run.failed
    tally.upstream_requests += after["requests"]
    tally.connection_ids.update(after["connection_ids"])
    if timed:
        tally.events += events
        tally.seconds += run.seconds
        tally.cpu_seconds += run.cpu_seconds
        tally.upstream_cpu_seconds += after["cpu_s"] - before["cpu_s"]
        tally.latencies += run.latencies


def bare_session(limit: int) -> aiohttp.ClientSession:
    """A plain aiohttp client: one session, the relay's pool size, a total timeout per request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        headers=JSON_HEADERS,
        timeout=aiohttp.ClientTimeout(total=10),
    )


def bare_caller(session: aiohttp.ClientSession, url: str) -> Call:
    async def call(body: bytes) -> bool:
        async with session.post(url, data=body) as resp:
            await resp.read()
            return resp.status == 202

    return call


@contextlib.contextmanager
def inputs_frozen() -> Iterator[None]:
    """Keep the objects that exist now (the prebuilt bodies and HttpRequests: ~80,000 for 10,000
    events) out of the garbage collector's reach while the modes run. A full collection walking
    them pauses for ~40 ms, and would land on whichever mode happens to be running."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def snapshot_rss() -> float:
    gc.collect()
    return rss_mb()


async def kv_reads_since(services: Services, before: dict[str, int]) -> dict[str, int]:
    after = await services.vault_reads()
    return {name: after.get(name, 0) - before.get(name, 0) for name in after}


async def bare_and_relay(services: Services, work: Workload) -> dict[str, dict[str, Any]]:
    """`bare` and `relay` over the same N events, interleaved in slices (A B B A ...) so that load
    from outside the benchmark falls on both alike. Both are warmed up first with 1000 events."""
    await relay.reset()
    kv_before = await services.vault_reads()
    session = bare_session(work.limit)
    calls = {
        "bare": bare_caller(session, services.upstream_url + EVENTS_PATH),
        "relay": invoker(routes()["events"]),
    }
    # Each mode's warm-up items and timed slices: bodies for bare, the host's requests for relay.
    slices = work.slices()
    items = {
        "bare": (work.warmup, slices),
        "relay": (host_requests(work.warmup, "events"), [host_requests(p, "events") for p in slices]),
    }
    tallies = {"bare": Tally(), "relay": Tally()}
    try:
        with inputs_frozen():
            for mode, call in calls.items():
                warmup = items[mode][0]
                await run_pass(
                    services, tallies[mode], call, warmup, work.concurrency, len(warmup), timed=False
                )
            rss_before = snapshot_rss()
            for i in range(len(slices)):
                order = ("bare", "relay") if i % 2 == 0 else ("relay", "bare")
                for mode in order:
                    part = items[mode][1][i]
                    await run_pass(services, tallies[mode], calls[mode], part, work.concurrency, len(part))
            rss_after = snapshot_rss()
    finally:
        await session.close()
        await relay.reset()
    figures = {mode: tally.figures() for mode, tally in tallies.items()}
    figures["relay"]["kv_reads"] = await kv_reads_since(services, kv_before)
    figures["relay"]["rss_growth_mb"] = rss_after - rss_before
    return figures


async def relay_batch(services: Services, work: Workload) -> dict[str, Any]:
    """The `events/batch` route, BATCH_SIZE events per request, with as many events in flight as
    `relay` has (requests in flight x BATCH_CONCURRENCY)."""
    await relay.reset()
    kv_before = await services.vault_reads()
    call = batch_invoker(routes()["events/batch"])
    in_flight = max(1, math.ceil(work.concurrency / work.batch_concurrency))
    warmup = host_requests(work.batches[: max(1, len(work.warmup) // BATCH_SIZE)], "events/batch")
    batches = host_requests(work.batches, "events/batch")
    tally = Tally()
    try:
        with inputs_frozen():
            warmup_events = min(len(work.bodies), len(warmup) * BATCH_SIZE)
            await run_pass(services, tally, call, warmup, in_flight, warmup_events, timed=False)
            await run_pass(services, tally, call, batches, in_flight, len(work.bodies))
    finally:
        await relay.reset()
    figures = tally.figures()
    figures["kv_reads"] = await kv_reads_since(services, kv_before)
    return figures


async def naive_mode(services: Services, work: Workload) -> dict[str, Any]:
    """bench/naive.py: credential, SecretClient and session per request, both secrets every time."""
    call = invoker(naive.main)
    warmup = host_requests(work.bodies[: min(work.concurrency, len(work.bodies))], "events")
    requests = host_requests(work.bodies, "events")
    tally = Tally()
    with inputs_frozen():
        await run_pass(services, tally, call, warmup, work.concurrency, len(warmup), timed=False)
        await run_pass(services, tally, call, requests, work.concurrency, len(work.bodies))
    return tally.figures()


async def one_round(
    services: Services, work: Workload, say: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    say("bare and relay, interleaved ...")
    figures = await bare_and_relay(services, work)
    say(f"  bare {figures['bare']['eps']:,.0f} events/s, relay {figures['relay']['eps']:,.0f} events/s")
    say("relay, events/batch ...")
    figures["relay_batch"] = await relay_batch(services, work)
    say(f"  relay_batch {figures['relay_batch']['eps']:,.0f} events/s")
    say("naive function ...")
    figures["naive"] = await naive_mode(services, work)
    say(f"  naive {figures['naive']['eps']:,.0f} events/s")
    return figures


# --- import time -----------------------------------------------------------------------------

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


# --- the run ---------------------------------------------------------------------------------


def make_events(n: int) -> list[bytes]:
    """N distinct, valid open events as an app sends them (compact JSON, 64-hex device token)."""
    return [
        json.dumps(
            {
                "TrackingId": str(uuid.uuid4()),
                "DeviceToken": os.urandom(32).hex(),
                "PushNotificationStatus": 1,
            },
            separators=(",", ":"),
        ).encode()
        for _ in range(n)
    ]


def machine() -> dict[str, Any]:
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
    events: int, concurrency: int, rounds: int, server_pem: str, progress: Progress
) -> dict[str, Any]:
    """Measure every mode `rounds` times and summarise with medians."""
    say = progress or (lambda _: None)
    say("timing imports in fresh interpreters ...")
    imports = measure_imports()
    services = Services()
    try:
        await services.start(server_pem)
        services.configure_relay()
        settings = settings_module.load()
        bodies = make_events(events)
        work = Workload(
            bodies=bodies,
            batches=[
                b"[" + b",".join(bodies[i : i + BATCH_SIZE]) + b"]" for i in range(0, events, BATCH_SIZE)
            ],
            concurrency=concurrency,
            limit=settings.max_connections,
            batch_concurrency=settings.batch_concurrency,
        )
        per_round: list[dict[str, dict[str, Any]]] = []
        for r in range(rounds):
            per_round.append(
                await one_round(services, work, lambda m, r=r: say(f"round {r + 1}/{rounds}: {m}"))
            )
    finally:
        await services.stop()
    mine, theirs = services.cores or (None, None)
    placement = {
        "measured_on_cores": sorted(mine) if mine else None,
        "services_on_cores": sorted(theirs) if theirs else None,
    }
    return summarise(events, concurrency, work, per_round, {**imports, **placement})


def summarise(
    events: int,
    concurrency: int,
    work: Workload,
    per_round: list[dict[str, dict[str, Any]]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    def median(mode: str, key: str) -> float:
        return statistics.median(figures[mode][key] for figures in per_round)

    relay_runs = [figures[m] for figures in per_round for m in ("relay", "relay_batch")]
    bare_eps, relay_eps, naive_eps = median("bare", "eps"), median("relay", "eps"), median("naive", "eps")
    phases = [f for figures in per_round for f in figures.values()]
    return {
        "events": events,
        "concurrency": concurrency,
        "bare_eps": round(bare_eps),
        "relay_eps": round(relay_eps),
        "naive_eps": round(naive_eps, 1),
        "relay_vs_bare": round(relay_eps / bare_eps, 3),
        "relay_vs_naive": round(relay_eps / naive_eps, 1),
        "relay_p50_ms": round(median("relay", "p50_ms"), 2),
        "relay_p99_ms": round(median("relay", "p99_ms"), 2),
        "kv_reads_per_secret": max(max(f["kv_reads"].values(), default=0) for f in relay_runs),
        "upstream_connections": max(f["upstream_connections"] for f in per_round_mode(per_round, "relay")),
        "connector_limit": work.limit,
        "rss_growth_mb": round(max(f["rss_growth_mb"] for f in per_round_mode(per_round, "relay")), 2),
        **extra,
        "relay_batch_eps": round(median("relay_batch", "eps")),
        "batch_size": BATCH_SIZE,
        "batch_requests_in_flight": max(1, math.ceil(concurrency / work.batch_concurrency)),
        "bare_p50_ms": round(median("bare", "p50_ms"), 2),
        "bare_p99_ms": round(median("bare", "p99_ms"), 2),
        "naive_p50_ms": round(median("naive", "p50_ms"), 2),
        "naive_p99_ms": round(median("naive", "p99_ms"), 2),
        "bare_upstream_connections": max(
            f["upstream_connections"] for f in per_round_mode(per_round, "bare")
        ),
        "rounds": len(per_round),
        "slices": len(work.slices()),
        "warmup_events": len(work.warmup),
        "sent_total": sum(f["sent"] for f in phases),
        "upstream_received_total": sum(f["upstream_requests"] for f in phases),
        "failed": sum(f["failed"] for f in phases),
        **machine(),
        "per_round": [{mode: _rounded(figures[mode]) for mode in MODES} for figures in per_round],
    }


def per_round_mode(per_round: list[dict[str, dict[str, Any]]], mode: str) -> list[dict[str, Any]]:
    return [figures[mode] for figures in per_round]


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}
