"""Shared fixtures: loopback fakes of Key Vault (HTTPS + bearer challenge), the managed-identity
endpoint, CIJ and Firebase App Check's JWKS, environments that point the relay at them, and
in-process function calls."""

from __future__ import annotations

import os
import sys
import tempfile

import trustme

# aiohttp builds its default SSL context when imported: the test CA must be trusted before that.
assert "aiohttp" not in sys.modules, "tests/conftest.py must run before aiohttp is imported"
CA = trustme.CA()
CA_FILE = os.path.join(tempfile.mkdtemp(prefix="relay-ca-"), "ca.pem")
CA.cert_pem.write_to_path(CA_FILE)
os.environ["SSL_CERT_FILE"] = CA_FILE
# Nothing in the tests may reach a real Azure resource or a configured CIJ.
from tests.fakes import scrub_real_targets  # noqa: E402

scrub_real_targets()

import functools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import uuid  # noqa: E402
from collections.abc import AsyncIterator, Callable, Iterator  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import azure.functions as func  # noqa: E402
import pytest  # noqa: E402

import function_app  # noqa: E402
from shared import relay  # noqa: E402
from tests.fakes.cij import FakeCIJ  # noqa: E402
from tests.fakes.identity import FakeManagedIdentity  # noqa: E402
from tests.fakes.jwks import JWKS_PATH, PROJECT_NUMBER, FakeJwks  # noqa: E402
from tests.fakes.keyvault import FakeKeyVault  # noqa: E402
from tests.fakes.servers import Served  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_module(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m <args>` in a child process from the repository root, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


ORG_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
CLIENT_ID = "a1b2c3d4-0000-4000-8000-00000000c11d"


# get_functions() validates and may be called once per FunctionApp: index the app here, once.
INDEXED = function_app.app.get_functions()
FUNCTIONS = {
    getattr(f.get_trigger(), "route", None) or f.get_function_name(): f.get_user_function() for f in INDEXED
}


def new_event(**overrides: Any) -> dict[str, Any]:
    """A valid open event with a fresh TrackingId; its device token is registered as sensitive."""
    # Each event from its own device, as from a fleet of phones (no device nears its rate limit).
    token = uuid.uuid4().hex * 2
    event = {"TrackingId": str(uuid.uuid4()), "DeviceToken": token, "PushNotificationStatus": 1}
    event.update(overrides)
    token = event.get("DeviceToken")
    if isinstance(token, str) and len(token) >= 8:
        sensitive(token)
    return event


def canonical(event: dict[str, Any], status: int = 1) -> dict[str, Any]:
    """What CIJ receives for `event` (a valid one, sent with a status meaning `status`)."""
    return {
        "TrackingId": event["TrackingId"],
        "DeviceToken": event["DeviceToken"],
        "PushNotificationStatus": status,
    }


def server_ssl_context() -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 issued by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CA.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def call(
    route: str,
    body: bytes | dict | list | None = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    """Invoke the function serving `route` in-process, as the Functions host would; the response
    body is checked for leaks when the test ends."""
    if isinstance(body, dict | list):
        body = json.dumps(body).encode()
    request = func.HttpRequest(
        method,
        f"http://127.0.0.1:7071/api/{route}",
        headers={"Content-Type": "application/json", **(headers or {})},
        body=body or b"",
    )
    response = await FUNCTIONS[route](request)
    text = response.get_body().decode("utf-8", "replace")
    TEXT_SOURCES.append(lambda: text)
    return response


def problem(response: func.HttpResponse) -> dict[str, Any]:
    """The decoded problem+json body of an error response."""
    assert response.mimetype == "application/problem+json"
    return json.loads(response.get_body())


@pytest.fixture(autouse=True)
async def fresh_relay() -> AsyncIterator[None]:
    """Every test builds its own relay (settings, caches, session) and closes it afterwards."""
    await relay.reset()
    yield
    await relay.reset()


@asynccontextmanager
async def serving(fake: FakeCIJ) -> AsyncIterator[FakeCIJ]:
    """Serve a fake CIJ on loopback for the block (`fake.url`, `fake.served`); its address is
    registered as sensitive, since the relay must never reveal the endpoint it calls."""
    served = await Served(fake.app()).start()
    fake.url = served.url  # type: ignore[attr-defined]
    fake.served = served  # type: ignore[attr-defined]
    sensitive(served.url, f"127.0.0.1:{served.port}")
    try:
        yield fake
    finally:
        await served.stop()


@pytest.fixture
async def cij() -> AsyncIterator[FakeCIJ]:
    async with serving(FakeCIJ(ORG_ID)) as fake:
        yield fake


@pytest.fixture
async def identity() -> AsyncIterator[FakeManagedIdentity]:
    fake = FakeManagedIdentity()
    served = await Served(fake.app).start()
    fake.url = f"{served.url}msi/token"  # type: ignore[attr-defined]
    yield fake
    await served.stop()


@pytest.fixture
async def keyvault(cij: FakeCIJ, identity: FakeManagedIdentity) -> AsyncIterator[FakeKeyVault]:
    fake = FakeKeyVault(
        {"cij-org-id": ORG_ID, "cij-public-endpoint": cij.url},  # type: ignore[attr-defined]
        lambda: identity.issued,
    )
    served = Served(fake.app, server_ssl_context())
    await served.start()
    fake.port = served.port
    fake.url = served.url  # type: ignore[attr-defined]
    yield fake
    await served.stop()


@pytest.fixture
def kv_env(
    monkeypatch: pytest.MonkeyPatch, keyvault: FakeKeyVault, identity: FakeManagedIdentity
) -> FakeKeyVault:
    """The relay as deployed: target in Key Vault, read with a user-assigned managed identity."""
    monkeypatch.setenv("KEY_VAULT_URL", keyvault.url)  # type: ignore[attr-defined]
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.url)  # type: ignore[attr-defined]
    monkeypatch.setenv("IDENTITY_HEADER", identity.header_secret)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("CIJ_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "3")
    return keyvault


@pytest.fixture
def static_env(monkeypatch: pytest.MonkeyPatch, cij: FakeCIJ) -> FakeCIJ:
    """The relay as run locally: target from CIJ_ORG_ID / CIJ_PUBLIC_ENDPOINT."""
    monkeypatch.setenv("CIJ_ORG_ID", ORG_ID)
    monkeypatch.setenv("CIJ_PUBLIC_ENDPOINT", cij.url)  # type: ignore[attr-defined]
    monkeypatch.setenv("CIJ_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("FORWARD_TIMEOUT_SECONDS", "3")
    return cij


@pytest.fixture
async def jwks() -> AsyncIterator[FakeJwks]:
    """Firebase's JWKS endpoint on loopback, publishing `key-1`."""
    fake = FakeJwks("key-1")
    served = await Served(fake.app()).start()
    fake.url = served.url.rstrip("/") + JWKS_PATH
    yield fake
    await served.stop()


@pytest.fixture
def app_check(static_env: FakeCIJ, jwks: FakeJwks, monkeypatch: pytest.MonkeyPatch) -> FakeJwks:
    """The relay in enforce mode for PROJECT_NUMBER, reading its keys from the fake JWKS."""
    monkeypatch.setenv("APP_CHECK_MODE", "enforce")
    monkeypatch.setenv("APP_CHECK_PROJECT_NUMBER", PROJECT_NUMBER)
    monkeypatch.setenv("APP_CHECK_JWKS_URL", jwks.url)
    return jwks


# Log hygiene, for every test: no log record (at any level, any logger) and no response body may
# hold a device token, the org ID or a CIJ endpoint that the test used.

SENSITIVE: set[str] = {ORG_ID}
"""What the running test must never log or answer with; reset for each test."""
TEXT_SOURCES: list[Callable[[], str]] = []
"""More text the running test produced (response bodies, a dev server's output), checked at its end."""


def sensitive(*values: str) -> None:
    """Add strings the running test must never log or answer with (tokens, org IDs, endpoints)."""
    SENSITIVE.update(value for value in values if value)


@functools.lru_cache(maxsize=1 << 16)
def _pattern(secret: str) -> re.Pattern[str]:
    """`secret` as a pattern, compiled once (a test may register thousands: one per device)."""
    return re.compile(re.escape(secret) + (r"(?!\d)" if secret[-1].isdigit() else ""))


def leaks(text: str) -> list[str]:
    """The sensitive strings found in `text` (a `host:port` does not match a longer port)."""
    return [secret for secret in SENSITIVE if _pattern(secret).search(text)]


@pytest.fixture(autouse=True)
def no_sensitive_data_in_logs(caplog: pytest.LogCaptureFixture):
    """Capture every log record at DEBUG; fail the test if a record or body leaks a sensitive string."""
    SENSITIVE.clear()
    SENSITIVE.add(ORG_ID)
    TEXT_SOURCES.clear()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="cij_relay")
    yield
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    found = {}
    for record in records:
        for secret in leaks(formatter.format(record)):
            found[secret] = f"log record from {record.name}: {record.getMessage()[:300]!r}"
    for source in TEXT_SOURCES:
        text = source()
        for secret in leaks(text):
            found[secret] = f"response body or process output: {text[:300]!r}"
    if found:
        pytest.fail("sensitive data leaked:\n" + "\n".join(f"{s!r} in {w}" for s, w in found.items()))


@pytest.fixture(autouse=True)
def azure_sdk_records_checked_too(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests run the relay with AZURE_SDK_LOG_LEVEL=DEBUG, so the leak check above also reads every
    Azure SDK record (deployed, the relay keeps those loggers at WARNING)."""
    monkeypatch.setenv("AZURE_SDK_LOG_LEVEL", "DEBUG")
    yield
    logging.getLogger("azure").setLevel(logging.NOTSET)
