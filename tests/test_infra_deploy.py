"""What makes a first deployment fail, caught before it is tried: each rule of
tests/infra_rules_deploy.py (and the deployment's setting defaults) bites on a copy of infra/ broken
the way a real template went wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared import settings as relay_settings
from tests.infra_model import MAIN, copy_infra, edit, load
from tests.infra_rules import check_app_setting_values, check_parameters_file, check_setting_defaults
from tests.infra_rules_deploy import (
    FLEX_REJECTED_SITE_CONFIG,
    POISON_SUFFIX,
    check_azd_service_tag,
    check_flex_site_config,
    check_location,
    check_queue_name,
    decorator,
)


@pytest.fixture
def copy(tmp_path) -> Path:
    return copy_infra(tmp_path)


def site_config_with(text: str, line: str) -> str:
    return text.replace("      minTlsVersion: '1.2'\n", f"      {line}\n      minTlsVersion: '1.2'\n", 1)


@pytest.mark.parametrize(
    "line",
    [
        "ftpsState: 'Disabled'",
        "use32BitWorkerProcess: false",
        "netFrameworkVersion: 'v8.0'",
        "linuxFxVersion: 'Python|3.11'",
        "functionAppScaleLimit: 100",
    ],
)
def test_a_site_config_property_flex_refuses_is_reported(copy, line):
    edit(copy, "modules/function.bicep", lambda text: site_config_with(text, line))
    name = line.split(":")[0]
    assert any(f"siteConfig.{name}, which Flex Consumption" in p for p in check_flex_site_config(load(copy)))


def test_the_rejected_list_names_what_the_flex_error_names():
    """The four properties of the platform's error message (Site.SiteConfig.FtpsState, ...)."""
    lowered = {name.lower() for name in FLEX_REJECTED_SITE_CONFIG}
    assert {"ftpsstate", "use32bitworkerprocess", "netframeworkversion"} <= lowered
    assert "functionsruntimescalemonitoringenabled" in lowered


def test_the_service_tag_on_the_plan_too_is_reported(copy):
    """The tag as it used to be passed: on the whole module, so on the plan as well as the site."""
    edit(
        copy,
        "modules/function.bicep",
        lambda text: text.replace(
            "  name: planName\n  location: location\n  tags: tags\n",
            "  name: planName\n  location: location\n"
            "  tags: union(tags, {\n    'azd-service-name': serviceName\n  })\n",
        ),
    )
    problems = check_azd_service_tag(load(copy))
    assert any(
        "only the function app may carry the azd-service-name tag" in p and "plan" in p for p in problems
    )


def test_the_service_tag_given_to_the_whole_module_is_reported(copy):
    edit(
        copy,
        MAIN,
        lambda text: text.replace(
            "    tags: tags\n    serviceName: serviceName\n",
            "    tags: union(tags, {\n      'azd-service-name': serviceName\n    })\n"
            "    serviceName: serviceName\n",
        ),
    )
    problems = check_azd_service_tag(load(copy))
    assert any("modules/function.bicep:plan" in p for p in problems), problems


def test_a_service_tag_naming_another_service_is_reported(copy):
    edit(copy, MAIN, lambda text: text.replace("var serviceName = 'relay'", "var serviceName = 'api'"))
    assert "the function app's azd-service-name tag must name the service in azure.yaml" in (
        check_azd_service_tag(load(copy))
    )


def test_any_region_allowed_is_reported(copy):
    edit(copy, MAIN, lambda text: re.sub(r"@allowed\(\[\n(  '[a-z0-9]+'\n)+\]\)\n", "", text, count=1))
    assert any("@allowed only the regions" in p for p in check_location(load(copy)))


def test_a_canary_region_is_reported(copy):
    edit(copy, MAIN, lambda text: text.replace("  'eastus2'\n", "  'eastus2'\n  'eastus2euap'\n", 1))
    assert any("eastus2euap" in p for p in check_location(load(copy)))


def test_a_second_region_list_is_reported(copy):
    edit(
        copy,
        "modules/identity.bicep",
        lambda text: text.replace(
            "param location string\n", "@allowed([\n  'westeurope'\n])\nparam location string\n"
        ),
    )
    assert any("repeats the Flex region list" in p for p in check_location(load(copy)))


def test_the_region_list_offers_the_usual_flex_regions():
    regions = decorator(load().doc(MAIN)["parameters"]["location"], "allowed")
    assert {"westeurope", "northeurope", "eastus", "eastus2", "swedencentral"} <= set(regions)
    assert len(regions) == len(set(regions))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "@maxLength(56)\n@description('Name of the storage queue",
            "@description('Name of the storage queue",
        ),
        ("@maxLength(56)\n", "@maxLength(63)\n"),
        ("@minLength(3)\n@maxLength(56)\n", "@maxLength(56)\n"),
        (
            "param deliveryQueueName string = 'pending-events'",
            "param deliveryQueueName string = 'Pending_Events'",
        ),
    ],
)
def test_a_queue_name_whose_poison_queue_cannot_exist_is_reported(copy, old, new):
    edit(copy, MAIN, lambda text: text.replace(old, new, 1))
    assert check_queue_name(load(copy)) != []


def test_the_bicep_bounds_are_the_relay_s():
    """main.bicep's @maxLength and shared/settings.py's validation accept the same lengths."""
    param = load().doc(MAIN)["parameters"]["deliveryQueueName"]
    longest = decorator(param, "max_length")
    assert longest + len(POISON_SUFFIX) == 63
    assert relay_settings._QUEUE_NAME.fullmatch("q" * longest)
    assert not relay_settings._QUEUE_NAME.fullmatch("q" * (longest + 1))
    assert relay_settings._QUEUE_NAME.fullmatch("q" * decorator(param, "min_length"))


def test_the_table_endpoint_setting_removed_is_reported(copy):
    edit(
        copy,
        "modules/function.bicep",
        lambda text: text.replace(
            "storage.properties.primaryEndpoints.table", "storage.properties.primaryEndpoints.blob"
        ),
    )
    assert "AzureWebJobsStorage__tableServiceUri must be the storage account's table endpoint" in (
        check_app_setting_values(load(copy))
    )


@pytest.mark.parametrize(
    ("old", "new", "setting"),
    [
        ("param deviceRateBurst int = 120", "param deviceRateBurst int = 100", "DEVICE_RATE_BURST"),
        ("param appCheckMode string = 'off'", "param appCheckMode string = 'enforce'", "APP_CHECK_MODE"),
        ("param appCheckAppIds string = ''", "param appCheckAppIds string = 'ios'", "APP_CHECK_APP_IDS"),
    ],
)
def test_a_deployment_default_other_than_the_relay_s_is_reported(copy, old, new, setting):
    edit(copy, MAIN, lambda text: text.replace(old, new, 1))
    assert any(p.startswith(f"{setting} is ") for p in check_setting_defaults(load(copy)))


def test_an_sdk_log_level_other_than_the_relay_s_default_is_reported(copy):
    edit(copy, "modules/function.bicep", lambda text: text.replace("value: 'WARNING'", "value: 'INFO'"))
    assert any(p.startswith("AZURE_SDK_LOG_LEVEL is 'INFO'") for p in check_setting_defaults(load(copy)))


def test_an_app_check_parameter_not_wired_to_azd_is_reported(copy):
    edit(copy, "main.parameters.json", lambda text: text.replace("${AZURE_APP_CHECK_MODE=off}", "off"))
    assert any(
        "must map appCheckMode to an azd environment value" in p for p in check_parameters_file(load(copy))
    )


def test_a_parameter_main_does_not_declare_is_reported(copy):
    edit(copy, "main.parameters.json", lambda text: text.replace('"appCheckAppIds"', '"appCheckAppId"'))
    problems = check_parameters_file(load(copy))
    assert "main.parameters.json maps appCheckAppId, which main.bicep does not declare" in problems
