"""Azurite's queue service for `--queue`: installed as the tests install it (scripts/ensure-azurite),
in memory, on loopback, with the relay's queue and its -poison queue created."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from .errors import StartError

ROOT = Path(__file__).resolve().parent.parent
AZURITE_QUEUE = ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-queue"
ENSURE_AZURITE = ROOT / "scripts" / "ensure-azurite"
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key (public, documented by Microsoft).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# --skipApiVersionCheck: the Python storage SDK speaks a newer API version than Azurite 3.35 knows.
OPTIONS = ("--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry", "--silent")
START_SECONDS = 30.0


def connection_string(port: int, scheme: str = "http") -> str:
    """An Azurite connection string for the queue service on `port`."""
    return (
        f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint={scheme}://127.0.0.1:{port}/{ACCOUNT};"
    )


def command(port: int, *extra: str) -> list[str]:
    """The azurite-queue command line for loopback port `port`."""
    return [str(AZURITE_QUEUE), "--queueHost", "127.0.0.1", "--queuePort", str(port), *OPTIONS, *extra]


def ensure_installed() -> None:
    """Install Azurite into .tools/ with scripts/ensure-azurite (a no-op once it is there)."""
    try:
        subprocess.run([str(ENSURE_AZURITE)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = (getattr(exc, "stderr", None) or b"").decode(errors="replace").strip().splitlines()
        why = detail[-1] if detail else str(exc)
        raise StartError(
            f"--queue needs Azurite, which scripts/ensure-azurite could not install: {why}"
        ) from None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_queues(connection: str, name: str) -> None:
    """Create `name` and `name-poison` (the relay never creates its queue; the host would create
    the poison queue on first use, created here so that it can be looked at from the start)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import QueueClient

    for queue in (name, f"{name}-poison"):
        client = QueueClient.from_connection_string(connection, queue, connection_timeout=5, read_timeout=5)
        with client, contextlib.suppress(ResourceExistsError):
            client.create_queue()


class QueueService:
    """One azurite-queue process on a free loopback port, in memory, its log in a temporary folder."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.workdir = tempfile.mkdtemp(prefix="relay-azurite-")
        self.log = Path(self.workdir, "azurite.log")
        with self.log.open("wb") as output:  # a file, not a pipe: a full pipe would block Azurite
            self.process = subprocess.Popen(
                command(self.port), cwd=self.workdir, stdout=output, stderr=output
            )

    @property
    def connection_string(self) -> str:
        """Shared-key access to the development account."""
        return connection_string(self.port)

    def wait_listening(self) -> None:
        """Return once Azurite accepts connections; StartError if it exits or takes too long."""
        deadline = time.monotonic() + START_SECONDS
        while self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise StartError(
                        f"Azurite did not listen on port {self.port} in {START_SECONDS:g} s"
                    ) from None
                time.sleep(0.1)
        lines = self.log.read_text(errors="replace").strip().splitlines()
        raise StartError(
            f"Azurite exited with {self.process.returncode}" + (f": {lines[-1]}" if lines else "")
        )

    def stop(self) -> None:
        """Terminate Azurite (kill it if it lingers) and remove its folder."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(queue_name: str) -> QueueService:
    """Install if needed, start, and create `queue_name` and its poison queue."""
    ensure_installed()
    service = QueueService()
    try:
        service.wait_listening()
        create_queues(service.connection_string, queue_name)
    except BaseException:
        service.stop()
        raise
    return service


@contextlib.asynccontextmanager
async def queue_service(queue_name: str) -> AsyncIterator[str]:
    """Azurite with the relay's queues for the block; yields the connection string."""
    service = await asyncio.to_thread(start, queue_name)
    try:
        yield service.connection_string
    finally:
        await asyncio.to_thread(service.stop)
