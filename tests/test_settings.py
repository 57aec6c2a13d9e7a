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
        {"DELIVERY_QUEUE_NAME": "Pending-Events"},
        {"DELIVERY_QUEUE_NAME": "pending--events"},
        {"DELIVERY_QUEUE_NAME": "-pending"},
        {"DELIVERY_QUEUE_NAME": "p" * 57},  # "<name>-poison" would exceed 63
        {"CIRCUIT_FAILURE_THRESHOLD": "21"},
        {"CIRCUIT_PROBE_SECONDS": "0"},
        {"REDELIVERY_MAX_DELAY_MINUTES": "0"},
        {"REDELIVERY_MAX_AGE_HOURS": "169"},
        {"APP_CHECK_MODE": "strict"},
        {"APP_CHECK_MODE": "enforce"},  # needs a project number
        {"APP_CHECK_PROJECT_NUMBER": "my-project"},
        {"APP_CHECK_JWKS_URL": "http://keys.example.com/jwks"},
        {"DEVICE_RATE_PER_MINUTE": "-1"},
        {"DEVICE_RATE_BURST": "0"},
        {"AZURE_SDK_LOG_LEVEL": "chatty"},
    ],
)
def test_invalid_values_raise_config_error_naming_the_setting(env):
    with pytest.raises(ConfigError, match=next(iter(env)).split("_")[0]):
        load(env)


def test_new_settings_defaults_and_parsing():
    s = load({})
    assert (s.circuit_failure_threshold, s.circuit_probe_seconds) == (10, 5)
    assert (s.redelivery_max_delay, s.redelivery_max_age) == (30 * 60, 72 * 3600)
    assert (s.app_check_mode, s.app_check_project_number, s.app_check_app_ids) == ("off", None, ())
    assert s.app_check_jwks_url == "https://firebaseappcheck.googleapis.com/v1/jwks"
    assert (s.device_rate_per_minute, s.device_rate_burst, s.azure_sdk_log_level) == (60, 120, "WARNING")
    s = load(
        {
            "DELIVERY_QUEUE_NAME": "p" * 56,
            "APP_CHECK_MODE": "Enforce",
            "APP_CHECK_PROJECT_NUMBER": "123456789012",
            "APP_CHECK_APP_IDS": "1:123456789012:ios:abc, 1:123456789012:android:def,",
            "APP_CHECK_JWKS_URL": "http://127.0.0.1:8123/v1/jwks",
            "REDELIVERY_MAX_DELAY_MINUTES": "0.05",
            "REDELIVERY_MAX_AGE_HOURS": "0.01",
            "DEVICE_RATE_PER_MINUTE": "0",
            "AZURE_SDK_LOG_LEVEL": "info",
        }
    )
    assert s.app_check_mode == "enforce" and s.app_check_project_number == "123456789012"
    assert s.app_check_app_ids == ("1:123456789012:ios:abc", "1:123456789012:android:def")
    assert s.redelivery_max_delay == 3 and s.redelivery_max_age == 36
    assert s.device_rate_per_minute == 0 and s.azure_sdk_log_level == "INFO"


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


def test_the_settings_table_in_docs_lists_every_setting_with_its_default():
    """docs/settings.md is THE settings table: one row per setting, the defaults as settings.py has them."""
    import re
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs" / "settings.md").read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", page, re.M))
    assert sorted(rows) == sorted(s.name for s in SETTINGS)
    for setting in SETTINGS:
        documented = rows[setting.name].strip()
        assert documented == ("unset" if setting.default is None else f"`{setting.default}`"), setting.name
