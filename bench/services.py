"""The benchmark's services: the CIJ stand-in and the Key Vault + identity fakes, each in its own
process, on cores of their own when there are two or more."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
ORG_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
CLIENT_ID = "a1b2c3d4-0000-4000-8000-00000000c11d"


async def spawn(module: str, *args: str) -> tuple[asyncio.subprocess.Process, str]:
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


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Close the service's stdin (it exits then); kill it if it has not gone within 5 s."""
    if proc.stdin is not None:
        proc.stdin.close()
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
    """The upstream (CIJ stand-in) and the vault + identity fakes, started and stopped together."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.control: aiohttp.ClientSession | None = None
        self.original_cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self.cores = split_cores()

    async def start(self, server_pem: str) -> Services:
        """Start both services, pin them (and this process) to their cores."""
        proc, port = await spawn("bench.upstream", "--port", "0")
        self.procs.append(proc)
        self.upstream_url = f"http://127.0.0.1:{int(port)}/"
        proc, line = await spawn(
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
        assert self.control is not None
        query = "&".join(name for name, wanted in (("reset=1", reset), ("ids=1", ids)) if wanted)
        url = self.upstream_url + "_stats" + (f"?{query}" if query else "")
        async with self.control.get(url) as resp:
            return await resp.json()

    async def vault_reads(self) -> dict[str, int]:
        """Key Vault GETs per secret so far."""
        assert self.control is not None
        async with self.control.get(self.vault["stats_url"]) as resp:
            return (await resp.json())["kv_reads"]

    async def kv_reads_since(self, before: dict[str, int]) -> dict[str, int]:
        """Key Vault GETs per secret since `before` (an earlier `vault_reads()`)."""
        after = await self.vault_reads()
        return {name: after.get(name, 0) - before.get(name, 0) for name in after}

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

    def placement(self) -> dict[str, list[int] | None]:
        """The cores the measurements and the services ran on (None: nothing pinned)."""
        mine, theirs = self.cores or (None, None)
        return {
            "measured_on_cores": sorted(mine) if mine else None,
            "services_on_cores": sorted(theirs) if theirs else None,
        }

    async def stop(self) -> None:
        """Stop both services and give this process its cores back."""
        if self.control is not None:
            await self.control.close()
        for proc in self.procs:
            await stop(proc)
        if self.original_cores:
            os.sched_setaffinity(0, self.original_cores)
