"""shared/keyvault.py: the real Azure SDK against loopback Key Vault and managed-identity endpoints."""

from __future__ import annotations

import pytest

from shared.keyvault import KeyVaultSource
from shared.settings import load
from shared.target import TargetResolver, TargetUnavailable
from tests.conftest import CLIENT_ID, ORG_ID


@pytest.fixture
async def source(kv_env):
    s = KeyVaultSource(kv_env.url, "cij-org-id", "cij-public-endpoint")
    yield s
    await s.close()


async def test_reads_both_secrets_through_the_bearer_challenge_with_the_managed_identity(
    source, kv_env, identity, cij
):
    assert await source.read() == (ORG_ID, cij.url)
    assert kv_env.reads == {"cij-org-id": 1, "cij-public-endpoint": 1}
    assert identity.requests and all(r["client_id"] == CLIENT_ID for r in identity.requests)
    assert identity.requests[0]["resource"] == f"https://0.0.1:{kv_env.port}"  # scope from the challenge


async def test_custom_secret_names_are_used(kv_env):
    kv_env.secrets.update({"org": ORG_ID, "endpoint": "https://public-eur.mkt.dynamics.com"})
    s = KeyVaultSource(kv_env.url, "org", "endpoint")
    try:
        assert await s.read() == (ORG_ID, "https://public-eur.mkt.dynamics.com")
    finally:
        await s.close()


@pytest.mark.parametrize("fault", ["forbidden", "down"])
async def test_vault_errors_surface_as_exceptions(source, kv_env, fault):
    kv_env.fault = fault
    with pytest.raises(Exception) as info:
        await source.read()
    assert getattr(info.value, "status_code", None) in (403, 503)


def resolve(source: KeyVaultSource):
    """What the relay does with the source: resolve the target through the cache."""
    return TargetResolver(source, load({"CIJ_ALLOWED_HOSTS": "127.0.0.1"})).get()


async def test_missing_secret_is_target_unavailable(source, kv_env):
    del kv_env.secrets["cij-org-id"]
    with pytest.raises(TargetUnavailable, match="404"):
        await resolve(source)


async def test_a_hanging_vault_is_cut_off(source, kv_env, monkeypatch):
    monkeypatch.setattr("shared.target.READ_TIMEOUT_SECONDS", 0.5)
    kv_env.fault = "hang"
    with pytest.raises(TargetUnavailable, match="TimeoutError"):
        await resolve(source)
