"""Rules for the function app: the layout azd expects, the Flex Consumption site and plan, its
hardening, and its app settings (tied to the SETTINGS table in shared/settings.py by the drift check).
Each returns a list of problems; an empty list means the templates pass."""

from __future__ import annotations

import json
import re

from shared import settings as relay_settings
from tests.infra_model import (
    MAIN,
    PLAN,
    PUBLISHING_POLICY,
    SECRET,
    SITE,
    STORAGE,
    VAULT,
    Ref,
    Template,
    body,
    dotted,
    follow,
    is_identity,
    unquote,
)
from tests.infra_rules_access import (
    SECRET_PARAMS,
    check_key_vault,
    check_monitoring,
    check_outputs,
    check_roles,
    check_secure_params,
    check_storage,
)
from tests.infra_rules_deploy import (
    check_azd_service_tag,
    check_flex_site_config,
    check_location,
    check_queue_name,
)

# App settings read by the Functions host or platform rather than by the relay's code.
PLATFORM_SETTINGS = frozenset(
    {
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
    }
)

# Never set in Azure: key-based storage, the CIJ values outside Key Vault, and the settings Flex
# Consumption refuses (FUNCTIONS_WORKER_RUNTIME) or has deprecated (functionAppConfig and the
# deployment container replace them).
FORBIDDEN_IN_AZURE = frozenset(
    {
        "AzureWebJobsStorage",
        "CIJ_ORG_ID",
        "CIJ_PUBLIC_ENDPOINT",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTOVERVNET",
        "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
        "WEBSITE_VNET_ROUTE_ALL",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    }
)

# The relay's settings the deployment sets on purpose to something other than the relay's default.
DEPLOYMENT_CHOICES = frozenset({"DELIVERY_FALLBACK"})

# main.bicep parameters an operator sets with `azd env set <name>` (main.parameters.json).
AZD_ENV_PARAMS = ("cijOrgId", "cijPublicEndpoint", "appCheckMode", "appCheckProjectNumber", "appCheckAppIds")


def check_layout(t: Template) -> list[str]:
    problems = list(t.registry_modules)
    main = t.doc(MAIN)
    if main["globals"].get("scope", {}).get("value") != "subscription":
        problems.append("main.bicep must target the subscription (it creates the resource group)")
    if not any(r["type"] == "Microsoft.Resources/resourceGroups" for r in main["resources"].values()):
        problems.append("main.bicep creates no resource group")
    token = main.get("variables", {}).get("resourceToken")
    if not token or "unique_string" not in json.dumps(token):
        problems.append("resource names need a resourceToken built with uniqueString()")
    tags = main.get("variables", {}).get("tags", {}).get("value", {})
    if "'azd-env-name'" not in tags:
        problems.append("the tags variable lacks azd-env-name")
    return problems


def check_function_app(t: Template) -> list[str]:
    problems: list[str] = []
    file, _, site = t.one(SITE)
    props = site["properties"]
    if site.get("kind") != "functionapp,linux":
        problems.append(f"function app kind is {site.get('kind')!r}, not 'functionapp,linux'")

    plan_ref = follow(t, file, dotted(props.get("serverFarmId")).rsplit(".", 1)[0])
    plan = body(t.doc(plan_ref.file)["resources"][plan_ref.symbol]) if plan_ref.rtype == PLAN else {}
    if plan.get("sku") != {"name": "FC1", "tier": "FlexConsumption"}:
        problems.append(f"plan sku is {plan.get('sku')}, not FC1 / FlexConsumption")
    if plan.get("properties", {}).get("reserved") is not True:
        problems.append("plan must be Linux (reserved: true)")

    app_config = props.get("functionAppConfig", {})
    if app_config.get("runtime") != {"name": "python", "version": "3.11"}:
        problems.append(f"runtime is {app_config.get('runtime')}, not python 3.11")

    identity = site.get("identity", {})
    if identity.get("type") != "UserAssigned":
        problems.append(f"identity type is {identity.get('type')!r}, not UserAssigned")
    keys = list(identity.get("userAssignedIdentities", {}))
    if len(keys) != 1 or not is_identity(follow(t, file, unquote(keys[0])), "id"):
        problems.append("the function app must carry exactly the user-assigned identity")

    storage = app_config.get("deployment", {}).get("storage", {})
    auth = storage.get("authentication", {})
    if storage.get("type") != "blobContainer" or "primaryEndpoints.blob" not in str(storage.get("value")):
        problems.append("deployment storage must be a blob container of the storage account")
    if auth.get("type") != "UserAssignedIdentity":
        problems.append(
            f"deployment storage authentication is {auth.get('type')!r}, not UserAssignedIdentity"
        )
    if not is_identity(follow(t, file, auth.get("userAssignedIdentityResourceId")), "id"):
        problems.append("deployment storage must authenticate with the user-assigned identity")

    scale = app_config.get("scaleAndConcurrency", {})
    for key in ("maximumInstanceCount", "instanceMemoryMB"):
        ref = follow(t, file, scale.get(key))
        if not isinstance(scale.get(key), str) or not isinstance(ref.literal, int):
            problems.append(f"scaleAndConcurrency.{key} must come from a parameter with a default")
    concurrency = scale.get("triggers", {}).get("http", {}).get("perInstanceConcurrency")
    value = follow(t, file, concurrency).literal if concurrency is not None else None
    pool = int(relay_settings._DEFAULTS["UPSTREAM_MAX_CONNECTIONS"])
    if not isinstance(value, int) or not 1 < value <= pool:
        problems.append(
            f"triggers.http.perInstanceConcurrency must be set explicitly, above Python's "
            f"default of 1 and within the UPSTREAM_MAX_CONNECTIONS pool of {pool}; got {value!r}"
        )
    return problems


def check_site_hardening(t: Template) -> list[str]:
    problems: list[str] = []
    file, symbol, site = t.one(SITE)
    props = site["properties"]
    site_config = props.get("siteConfig", {})
    expected = [
        (props, "httpsOnly", True),
        (site_config, "minTlsVersion", "1.2"),
        (site_config, "scmMinTlsVersion", "1.2"),
        (site_config, "remoteDebuggingEnabled", False),
        (site_config, "http20Enabled", True),
    ]
    for where, key, want in expected:
        if where.get(key) != want:
            problems.append(f"function app {key} is {where.get(key)!r}, not {want!r}")
    policies = {
        res["name"]: res
        for f, _, res in t.resources(PUBLISHING_POLICY)
        if f == file and res.get("parent") == symbol
    }
    for name in ("ftp", "scm"):
        if policies.get(name, {}).get("properties", {}).get("allow") is not False:
            problems.append(f"basic publishing credentials for {name} must be disabled (allow: false)")
    return problems


def app_settings(t: Template) -> dict[str, Ref]:
    """App setting name -> where its value comes from."""
    file, _, site = t.one(SITE)
    settings: dict[str, Ref] = {}
    for item in site["properties"].get("siteConfig", {}).get("appSettings", []):
        settings[item["name"]] = follow(t, file, item["value"])
    for f, _, res in t.resources("Microsoft.Web/sites/config"):
        if res.get("name") == "appsettings":
            settings.update({unquote(k): follow(t, f, v) for k, v in res.get("properties", {}).items()})
    return settings


def check_settings_drift(t: Template) -> list[str]:
    problems: list[str] = []
    names = set(app_settings(t))
    needed = {s.name for s in relay_settings.SETTINGS if s.needed_in_azure}
    for name in sorted(needed - names):
        problems.append(f"{name} is needed in Azure (shared/settings.py) but the templates do not set it")
    for name in sorted(names - relay_settings.SETTING_NAMES - PLATFORM_SETTINGS):
        problems.append(f"{name} is set by the templates but read neither by the relay nor by the platform")
    for name in sorted(names & FORBIDDEN_IN_AZURE):
        problems.append(f"{name} must not be set in Azure")
    return problems


def check_app_setting_values(t: Template) -> list[str]:
    problems: list[str] = []
    settings = app_settings(t)
    for name, ref in settings.items():
        if ref.param in SECRET_PARAMS or ref.rtype == SECRET:
            problems.append(f"app setting {name} carries a secret")
    if not is_identity(settings.get("AZURE_CLIENT_ID", Ref("")), "properties.clientId"):
        problems.append("AZURE_CLIENT_ID must be the user-assigned identity's client ID")
    if not is_identity(settings.get("AzureWebJobsStorage__clientId", Ref("")), "properties.clientId"):
        problems.append("AzureWebJobsStorage__clientId must be the user-assigned identity's client ID")
    if settings.get("AzureWebJobsStorage__credential", Ref("")).literal != "managedidentity":
        problems.append("AzureWebJobsStorage__credential must be managedidentity")
    for name, endpoint in (
        ("AzureWebJobsStorage__blobServiceUri", "blob"),
        ("AzureWebJobsStorage__queueServiceUri", "queue"),
        ("AzureWebJobsStorage__tableServiceUri", "table"),
    ):
        if not settings.get(name, Ref("")).is_resource(STORAGE, f"properties.primaryEndpoints.{endpoint}"):
            problems.append(f"{name} must be the storage account's {endpoint} endpoint")
    if not settings.get("KEY_VAULT_URL", Ref("")).is_resource(VAULT, "properties.vaultUri"):
        problems.append("KEY_VAULT_URL must be the vault's URI")
    auth = settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", Ref("")).literal
    match = re.fullmatch(r"ClientId=\$\{(\w+)\};Authorization=AAD", auth or "")
    file, _, _ = t.one(SITE)
    if not match or not is_identity(follow(t, file, match.group(1)), "properties.clientId"):
        problems.append(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING must be "
            "'ClientId=<identity client ID>;Authorization=AAD'"
        )
    if settings.get("DELIVERY_FALLBACK", Ref("")).literal != "queue":
        problems.append("DELIVERY_FALLBACK must be queue")
    return problems


def known_text(t: Template, ref: Ref) -> str | None:
    """An app setting's value when the templates fix it (a literal, a parameter's default, or
    string() of one); None when it is only known at deployment time."""
    value = ref.literal
    if isinstance(value, dict) and value.get("function", {}).get("type") == "string":
        (arg,) = value["function"]["parameters"].values()
        inner = follow(t, ref.file, arg).literal
        return str(inner) if isinstance(inner, int | str) and not isinstance(inner, bool) else None
    if isinstance(value, str) and "${" not in value:
        return value
    return None


def env_from_templates(t: Template) -> dict[str, str]:
    """The app settings as the relay would see them, deployment-time values replaced by stand-ins."""
    env = {}
    for name, ref in app_settings(t).items():
        text = known_text(t, ref)
        if text is not None:
            env[name] = text
        elif name.endswith(("Uri", "URL")):
            env[name] = "https://deployment-time.example/"
        else:
            env[name] = "deployment-time-value"
    return env


def check_setting_defaults(t: Template) -> list[str]:
    """Unless the operator changes a parameter, the relay runs with its own defaults."""
    problems = []
    for name, ref in sorted(app_settings(t).items()):
        if name not in relay_settings.SETTING_NAMES or name in DEPLOYMENT_CHOICES:
            continue
        text = known_text(t, ref)
        if text is not None and (text or None) != relay_settings._DEFAULTS[name]:
            problems.append(
                f"{name} is {text!r} in the templates but {relay_settings._DEFAULTS[name]!r} in "
                "shared/settings.py; change the default in both places or neither"
            )
    return problems


def check_parameters_file(t: Template) -> list[str]:
    problems: list[str] = []
    values = json.loads((t.root / "main.parameters.json").read_text())["parameters"]
    declared = t.doc(MAIN)["parameters"]
    for name, param in declared.items():
        if param["default"] is None and name not in values:
            problems.append(f"main.parameters.json does not map the required parameter {name}")
    for name in sorted(set(values) - set(declared)):
        problems.append(f"main.parameters.json maps {name}, which main.bicep does not declare")
    for name in AZD_ENV_PARAMS:
        value = str(values.get(name, {}).get("value", ""))
        if not re.fullmatch(r"\$\{AZURE_[A-Z0-9_]+(=[^}]*)?\}", value):
            problems.append(
                f"main.parameters.json must map {name} to an azd environment value ${{AZURE_...}}"
            )
    for name in SECRET_PARAMS:
        value = values.get(name, {}).get("value", "")
        match = re.fullmatch(r"\$\{([A-Z0-9_]+)\}", str(value))
        if not match:
            problems.append(
                f"main.parameters.json must map {name} to an azd environment value, not a literal"
            )
        elif match.group(1) in relay_settings.SETTING_NAMES:
            problems.append(f"{name} maps to {match.group(1)}, an app setting name that local runs export")
    return problems


ALL_CHECKS = (
    check_layout,
    check_flex_site_config,
    check_azd_service_tag,
    check_location,
    check_queue_name,
    check_setting_defaults,
    check_function_app,
    check_site_hardening,
    check_storage,
    check_key_vault,
    check_monitoring,
    check_roles,
    check_secure_params,
    check_outputs,
    check_settings_drift,
    check_app_setting_values,
    check_parameters_file,
)
