"""The Bicep templates in infra/ pass every rule of tests/infra_rules*.py, and the app settings they
set agree with the SETTINGS table in shared/settings.py (no Bicep CLI needed: pycep-parser reads
them). tests/test_infra_broken.py shows that each rule fails on a copy of infra/ broken for it."""

from __future__ import annotations

import re

import pytest

from shared import settings as relay_settings
from tests.infra_model import INFRA, MAIN, REPO, Template, azure_yaml_service, load
from tests.infra_rules import (
    ALL_CHECKS,
    PLATFORM_SETTINGS,
    app_settings,
    check_settings_drift,
    env_from_templates,
)
from tests.infra_rules_deploy import decorator


@pytest.fixture(scope="module")
def template() -> Template:
    return load()


def test_every_bicep_file_parses_and_is_reached_from_main(template):
    on_disk = {str(p.relative_to(INFRA).as_posix()) for p in INFRA.rglob("*.bicep")}
    assert on_disk == set(template.files), "every .bicep file must be used by main.bicep"


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_templates_pass(template, check):
    assert check(template) == []


def test_app_settings_agree_with_the_code(template):
    """Drift: the SETTINGS table in shared/settings.py and the names the templates set."""
    assert check_settings_drift(template) == []
    names = set(app_settings(template))
    assert {s.name for s in relay_settings.SETTINGS if s.needed_in_azure} <= names
    assert names <= relay_settings.SETTING_NAMES | PLATFORM_SETTINGS


def test_app_settings_load_in_the_relay(template):
    """The literal values the templates set pass the relay's own validation."""
    loaded = relay_settings.load(env_from_templates(template))
    assert loaded.delivery_fallback == "queue"
    assert loaded.delivery_queue_name == relay_settings._DEFAULTS["DELIVERY_QUEUE_NAME"]
    assert loaded.key_vault_url and loaded.queue_service_uri
    assert loaded.storage_connection_string is None


def test_per_instance_concurrency_is_a_documented_parameter(template):
    param = template.doc(MAIN)["parameters"]["httpPerInstanceConcurrency"]
    description = next(d["argument"] for d in param["decorators"] if d["type"] == "description")
    assert param["default"] == 64
    assert "UPSTREAM_MAX_CONNECTIONS" in description


def test_azure_yaml_declares_one_python_function_service():
    text = (REPO / "azure.yaml").read_text()
    assert azure_yaml_service() == "relay"
    for line in ("project: .", "host: function", "language: python"):
        assert re.search(rf"^\s+{re.escape(line)}\s*$", text, re.M), line


def test_app_check_rate_limit_and_sdk_log_settings_are_deployed_with_the_relay_s_defaults(template):
    names = set(app_settings(template))
    assert {
        "APP_CHECK_MODE",
        "APP_CHECK_PROJECT_NUMBER",
        "APP_CHECK_APP_IDS",
        "DEVICE_RATE_PER_MINUTE",
        "DEVICE_RATE_BURST",
        "AZURE_SDK_LOG_LEVEL",
        "AzureWebJobsStorage__tableServiceUri",
    } <= names
    loaded = relay_settings.load(env_from_templates(template))
    assert (loaded.app_check_mode, loaded.app_check_project_number, loaded.app_check_app_ids) == (
        "off",
        None,
        (),
    )
    assert (loaded.device_rate_per_minute, loaded.device_rate_burst) == (60, 120)
    assert loaded.azure_sdk_log_level == "WARNING"


def test_every_app_check_mode_the_template_offers_is_one_the_relay_accepts(template):
    modes = decorator(template.doc(MAIN)["parameters"]["appCheckMode"], "allowed")
    assert modes == ["off", "monitor", "enforce"]
    for mode in modes:
        env = {"CIJ_ORG_ID": "x", "APP_CHECK_MODE": mode, "APP_CHECK_PROJECT_NUMBER": "1234567890"}
        assert relay_settings.load(env).app_check_mode == mode
