"""The infra rules bite: each copy of infra/ broken in one way (a role assignment removed, a secret
in an output, a syntax error, an app setting the code does not know...) is reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra_model import SYNTAX_ERRORS, BicepSyntaxError, copy_infra, edit, load, remove_resource
from tests.infra_rules import (
    check_app_setting_values,
    check_function_app,
    check_layout,
    check_settings_drift,
    check_site_hardening,
)
from tests.infra_rules_access import (
    IDENTITY_ROLES,
    check_key_vault,
    check_monitoring,
    check_outputs,
    check_roles,
    check_secure_params,
    check_storage,
)


@pytest.fixture
def copy(tmp_path) -> Path:
    return copy_infra(tmp_path)


@pytest.mark.parametrize(
    ("file", "symbol", "role"),
    [
        ("modules/storage.bicep", "blobDataOwner", "Storage Blob Data Owner"),
        ("modules/storage.bicep", "queueDataContributor", "Storage Queue Data Contributor"),
        ("modules/storage.bicep", "tableDataContributor", "Storage Table Data Contributor"),
        ("modules/monitoring.bicep", "metricsPublisher", "Monitoring Metrics Publisher"),
        ("modules/keyvault.bicep", "secretsUser", "Key Vault Secrets User"),
    ],
)
def test_missing_role_assignment_is_reported(copy, file, symbol, role):
    edit(copy, file, lambda text: remove_resource(text, symbol))
    problems = check_roles(load(copy))
    assert any(p.startswith(role) for p in problems), problems


def test_role_on_the_resource_group_instead_of_the_vault_is_reported(copy):
    edit(
        copy,
        "modules/keyvault.bicep",
        lambda text: text.replace(
            "  name: guid(vault.id, identityPrincipalId, keyVaultSecretsUser)\n  scope: vault\n",
            "  name: guid(vault.id, identityPrincipalId, keyVaultSecretsUser)\n",
        ),
    )
    assert any("Key Vault Secrets User must be scoped" in p for p in check_roles(load(copy)))


@pytest.mark.parametrize(
    ("file", "output"),
    [
        ("main.bicep", "output LEAKED string = cijOrgId"),
        ("modules/keyvault.bicep", "output leaked string = cijPublicEndpoint"),
        ("modules/keyvault.bicep", "output leaked string = orgIdSecret.properties.value"),
        ("modules/storage.bicep", "output leaked string = storage.listKeys().keys[0].value"),
        ("modules/monitoring.bicep", "output leaked string = appInsights.properties.ConnectionString"),
    ],
)
def test_output_exposing_a_secret_is_reported(copy, file, output):
    edit(copy, file, lambda text: text + output + "\n")
    problems = check_outputs(load(copy))
    assert any("leaked" in p.lower() for p in problems), problems


def test_secure_decorator_removed_is_reported(copy):
    edit(
        copy,
        "main.bicep",
        lambda text: text.replace(
            "@secure()\n@minLength(1)\n@description('CIJ organization",
            "@minLength(1)\n@description('CIJ organization",
        ),
    )
    problems = check_secure_params(load(copy))
    assert "parameter cijOrgId must be @secure()" in problems


def test_secret_in_an_app_setting_is_reported(copy):
    edit(
        copy,
        "modules/function.bicep",
        lambda text: text.replace(
            "param keyVaultUri string\n", "param keyVaultUri string\n@secure()\nparam cijOrgId string\n"
        ).replace(
            "      appSettings: [\n",
            "      appSettings: [\n        {\n          name: 'CIJ_ORG_ID'\n"
            "          value: cijOrgId\n        }\n",
        ),
    )
    edit(
        copy,
        "main.bicep",
        lambda text: text.replace(
            "    keyVaultUri: keyVault.outputs.uri\n",
            "    keyVaultUri: keyVault.outputs.uri\n    cijOrgId: cijOrgId\n",
        ),
    )
    t = load(copy)
    assert "app setting CIJ_ORG_ID carries a secret" in check_app_setting_values(t)
    assert "CIJ_ORG_ID must not be set in Azure" in check_settings_drift(t)


def test_unknown_or_missing_app_setting_is_reported(copy):
    edit(
        copy,
        "modules/function.bicep",
        lambda text: text.replace("          name: 'KEY_VAULT_URL'\n", "          name: 'KEYVAULT_URL'\n"),
    )
    problems = check_settings_drift(load(copy))
    assert any(p.startswith("KEY_VAULT_URL is needed in Azure") for p in problems), problems
    assert any(p.startswith("KEYVAULT_URL is set by the templates") for p in problems), problems


def test_flex_rejected_setting_is_reported(copy):
    edit(
        copy,
        "modules/function.bicep",
        lambda text: text.replace(
            "      appSettings: [\n",
            "      appSettings: [\n        {\n          name: 'FUNCTIONS_WORKER_RUNTIME'\n"
            "          value: 'python'\n        }\n",
        ),
    )
    assert "FUNCTIONS_WORKER_RUNTIME must not be set in Azure" in check_settings_drift(load(copy))


def test_per_instance_concurrency_removed_is_reported(copy):
    edit(
        copy,
        "modules/function.bicep",
        lambda text: re.sub(r"\n        triggers: \{\n.*?\n        \}\n", "\n", text, flags=re.S),
    )
    assert any("perInstanceConcurrency" in p for p in check_function_app(load(copy)))


@pytest.mark.parametrize(
    ("file", "old", "new", "check", "expected"),
    [
        ("modules/function.bicep", "httpsOnly: true", "httpsOnly: false", check_site_hardening, "httpsOnly"),
        ("modules/function.bicep", "version: '3.11'", "version: '3.10'", check_function_app, "python 3.11"),
        ("modules/function.bicep", "name: 'FC1'", "name: 'Y1'", check_function_app, "FC1"),
        (
            "modules/function.bicep",
            "type: 'UserAssignedIdentity'",
            "type: 'StorageAccountConnectionString'",
            check_function_app,
            "UserAssignedIdentity",
        ),
        (
            "modules/storage.bicep",
            "allowSharedKeyAccess: false",
            "allowSharedKeyAccess: true",
            check_storage,
            "allowSharedKeyAccess",
        ),
        (
            "modules/keyvault.bicep",
            "enablePurgeProtection: true",
            "enablePurgeProtection: false",
            check_key_vault,
            "enablePurgeProtection",
        ),
        (
            "modules/monitoring.bicep",
            "DisableLocalAuth: true",
            "DisableLocalAuth: false",
            check_monitoring,
            "local",
        ),
        ("modules/keyvault.bicep", "name: 'cij-org-id'", "name: 'cij-orgid'", check_key_vault, "cij-org-id"),
    ],
)
def test_weakened_property_is_reported(copy, file, old, new, check, expected):
    edit(copy, file, lambda text: text.replace(old, new))
    problems = check(load(copy))
    assert any(expected in p for p in problems), problems


def test_registry_module_is_reported(copy):
    edit(
        copy,
        "main.bicep",
        lambda text: text.replace(
            "module identity 'modules/identity.bicep' = {",
            "module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {",
        ),
    )
    t = load(copy)
    assert any("module identity comes from a registry" in p for p in check_layout(t))
    # The identity can no longer be followed, so none of its roles can be verified.
    assert len([p for p in check_roles(t) if "is not assigned" in p]) == len(IDENTITY_ROLES)


@pytest.mark.parametrize(("file", "old", "new"), SYNTAX_ERRORS)
def test_syntax_error_fails_to_parse(copy, file, old, new):
    edit(copy, file, lambda text: text.replace(old, new, 1))
    with pytest.raises(BicepSyntaxError):
        load(copy)
