"""Run the dev server (`python -m devserver`) as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fakes.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
_EMULATOR = re.compile(r"CIJ emulator on http://127\.0\.0\.1:(\d+)/")


class DevServer:
    """`python -m devserver` with the given environment; stdout and stderr go to temporary files.

    Use as a context manager: entering waits until the relay accepts connections, leaving stops it
    (SIGINT, then SIGKILL). Without CIJ_PUBLIC_ENDPOINT / KEY_VAULT_URL the embedded emulator runs
    and `emulator_url` points at it.
    """

    def __init__(
        self,
        env: dict[str, str | None] | None = None,
        log_level: str = "INFO",
        args: tuple[str, ...] = (),
        host: str = "127.0.0.1",
    ) -> None:
        self.env = dict(env or {})
        self.host = host  # where the relay is reached (a loopback address; --host is passed in args)
        self.log_level = log_level
        self.args = args
        self.port = 0
        self.emulator_port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="relay-devserver-")
        self.stdout_path = os.path.join(self._dir, "stdout.txt")
        self.stderr_path = os.path.join(self._dir, "stderr.txt")
        # A local.settings.json of its own, empty: a developer's file in the repository is not read.
        self.settings_path = os.path.join(self._dir, "local.settings.json")
        with open(self.settings_path, "w") as settings:
            settings.write('{"Values": {}}')

    @property
    def url(self) -> str:
        """The functions' base URL, e.g. http://127.0.0.1:PORT/api."""
        return f"http://{self.host}:{self.port}/api"

    @property
    def emulator_url(self) -> str:
        """The embedded CIJ emulator's base URL (ending in `/`)."""
        assert self.emulator_port is not None, "the dev server runs without its emulator"
        return f"http://127.0.0.1:{self.emulator_port}/"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def peak_rss_bytes(self) -> int:
        """The server process's peak resident set size so far (VmHWM)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def output(self) -> str:
        """Everything the server printed and logged so far."""
        text = []
        for path in (self.stdout_path, self.stderr_path):
            with open(path, encoding="utf-8", errors="replace") as stream:
                text.append(stream.read())
        return "\n".join(text)

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def start(self, timeout: float = 20.0) -> DevServer:
        """Start on a free port (retrying if another process grabbed it) and wait until it serves."""
        for _ in range(3):
            self.port = free_port()
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "devserver",
                        "--port",
                        str(self.port),
                        "--emulator-port",
                        "0",
                        "--settings",
                        self.settings_path,
                        *self.args,
                        "--log-level",
                        self.log_level,
                    ],
                    cwd=ROOT,
                    env=self._environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            if self._wait_ready(timeout):
                return self
            self.stop()
        raise AssertionError(f"the dev server did not start:\n{self.output()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.process is not None
        banner = f"CIJ relay on http://{self.host}:{self.port}/api/events"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            text = self.output()
            if banner in text:
                match = _EMULATOR.search(text)
                self.emulator_port = int(match.group(1)) if match else None
                with socket.create_connection((self.host, self.port), timeout=2):
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Interrupt the server (as Ctrl+C would) and reap it; kill it if it does not exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_devserver(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m devserver ARGS` to completion (for starts that must fail), output captured as text."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "devserver", *args],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
