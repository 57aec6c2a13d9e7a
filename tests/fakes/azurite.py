"""Azurite's queue service (the Azure Storage emulator, from npm) on a loopback port for the tests.

Installed into .tools/azurite by scripts/ensure-azurite; the tests that need it fail when it is not.
Started as the dev server's `--queue` starts it (devserver/azurite.py: the command, the account).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devserver.azurite import ACCOUNT, AZURITE_QUEUE, connection_string
from devserver.azurite import command as azurite_command
from tests.fakes.servers import free_port


class Azurite:
    """One azurite-queue process, in memory, on a free loopback port; HTTPS when given `--cert`."""

    def __init__(self, *extra_args: str) -> None:
        self.extra_args = extra_args
        self.scheme = "https" if "--cert" in extra_args else "http"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir = ""

    @property
    def connection_string(self) -> str:
        """Shared-key access to the development account."""
        return connection_string(self.port, self.scheme)

    @property
    def queue_service_uri(self) -> str:
        """What `AzureWebJobsStorage__queueServiceUri` holds for this account."""
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT}"

    def start(self, timeout: float = 30) -> Azurite:
        """Start the queue service and wait until its port accepts connections."""
        if not os.access(AZURITE_QUEUE, os.X_OK):
            pytest.fail("Azurite is not installed: run scripts/ensure-azurite (needs node and npm)")
        self.port = free_port()
        self._workdir = tempfile.mkdtemp(prefix="azurite-")
        command = azurite_command(self.port, *self.extra_args)
        log = Path(self._workdir, "azurite.log")
        with log.open("wb") as output:  # a file, not a pipe: a full pipe would block Azurite
            self.process = subprocess.Popen(command, cwd=self._workdir, stdout=output, stderr=output)
        give_up = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                error = log.read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"azurite-queue exited with {code}: {error}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > give_up:
                    self.stop()
                    raise RuntimeError(
                        f"azurite-queue did not listen on port {self.port} in {timeout}s"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the process (killing it if it lingers) and remove its folder."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = ""


@pytest.fixture(scope="session", name="azurite")
def azurite_fixture() -> Iterator[Azurite]:
    """Azurite's queue service for the whole session (import `azurite_fixture` to use `azurite`)."""
    server = Azurite().start()
    yield server
    server.stop()


def use_fallback_queue(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> str:
    """Point the relay's DELIVERY_FALLBACK=queue at a fresh queue name in `azurite` (not created)."""
    name = f"pending-{uuid.uuid4().hex[:20]}"
    monkeypatch.setenv("DELIVERY_FALLBACK", "queue")
    monkeypatch.setenv("DELIVERY_QUEUE_NAME", name)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    return name
