"""shared/settings.py: defaults, parsing and validation of every setting."""

from __future__ import annotations

import pytest

from shared.settings import SETTINGS, ConfigError, load


def test_defaults_apply_to_an_empty_environment():
    s = load({})
    assert (s.key_vault_url, s.org_id_secret_name, s.endpoint_secret_name) == (
        None,
        "cij-org-id",
        "cij-public-endpoint",
    )
    assert s.allowed_hosts == ("*.dynamics.com",)
    assert (s.secret_cache_ttl, s.forward_timeout, s.max_connections, s.batch_concurrency) == (
        600,
        10,
        100,
        10,
    )
    assert (s.delivery_fallback, s.delivery_queue_name) == ("none", "pending-events")


def test_values_are_parsed_and_blank_means_default():
    s = load(
        {
            "CIJ_ALLOWED_HOSTS": " *.Dynamics.com , public-eur.mkt.dynamics.com ,",
            "FORWARD_TIMEOUT_SECONDS": "2.5",
            "SECRET_CACHE_TTL_SECONDS": "",
            "KEY_VAULT_URL": "https://kv.vault.azure.net/",
        }
    )
    assert s.allowed_hosts == ("*.dynamics.com", "public-eur.mkt.dynamics.com")
    assert s.forward_timeout == 2.5 and s.secret_cache_ttl == 600
    assert s.key_vault_url == "https://kv.vault.azure.net/"


@pytest.mark.parametrize(
    "env",
    [
        {"FORWARD_TIMEOUT_SECONDS": "soon"},
        {"FORWARD_TIMEOUT_SECONDS": "0"},
        {"UPSTREAM_MAX_CONNECTIONS": "1.5"},
        {"BATCH_CONCURRENCY": "0"},
        {"SECRET_CACHE_TTL_SECONDS": "-1"},
        {"DELIVERY_FALLBACK": "kafka"},
        {"CIJ_ALLOWED_HOSTS": " , "},
        {"KEY_VAULT_URL": "http://kv.vault.azure.net/"},
        {"DELIVERY_FALLBACK": "queue"},
    ],
)
def test_invalid_values_raise_config_error_naming_the_setting(env):
    with pytest.raises(ConfigError, match=next(iter(env)).split("_")[0]):
        load(env)


def test_queue_fallback_needs_a_queue():
    assert (
        load(
            {
                "DELIVERY_FALLBACK": "QUEUE",
                "AzureWebJobsStorage__queueServiceUri": "https://st.queue.core.windows.net",
            }
        ).delivery_fallback
        == "queue"
    )


def test_every_setting_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in readme, setting.name
