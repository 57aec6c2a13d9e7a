"""Structural tests of the Bicep templates in infra/ (no Bicep CLI needed: pycep-parser reads them).

The checks are plain functions returning a list of problems, so the same functions that pass on
infra/ are shown to fail on broken copies of it (a role assignment removed, a secret in an output,
a syntax error, an app setting the code does not know...). The drift test ties the app settings the
templates set to the SETTINGS table in shared/settings.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from pycep import BicepParser

from shared import settings as relay_settings

REPO = Path(__file__).resolve().parents[1]

INFRA = REPO / "infra"
MAIN = "main.bicep"
CHECK_BICEP = REPO / "scripts" / "check-bicep"

SITE = "Microsoft.Web/sites"
PLAN = "Microsoft.Web/serverfarms"
IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities"
STORAGE = "Microsoft.Storage/storageAccounts"
QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
VAULT = "Microsoft.KeyVault/vaults"
SECRET = "Microsoft.KeyVault/vaults/secrets"
APP_INSIGHTS = "Microsoft.Insights/components"
WORKSPACE = "Microsoft.OperationalInsights/workspaces"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
PUBLISHING_POLICY = "Microsoft.Web/sites/basicPublishingCredentialsPolicies"

# Role name -> (built-in role definition ID, type of the resource it must be scoped to).
IDENTITY_ROLES = {
    "Storage Blob Data Owner": ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", STORAGE),
    "Storage Queue Data Contributor": ("974c5e8b-45b9-4653-ba55-5f855dd0fb88", STORAGE),
    "Monitoring Metrics Publisher": ("3913510d-42f4-4e42-8a64-420c390055eb", APP_INSIGHTS),
    "Key Vault Secrets User": ("4633458b-17de-408a-b874-0445c86b69e6", VAULT),
}

# The deployment's secret inputs: they may only reach Key Vault secrets.
SECRET_PARAMS = ("cijOrgId", "cijPublicEndpoint")

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

# Never set in Azure: key-based storage, the CIJ values outside Key Vault, and the settings that
# Flex Consumption rejects (functionAppConfig replaces them).
FORBIDDEN_IN_AZURE = frozenset(
    {
        "AzureWebJobsStorage",
        "CIJ_ORG_ID",
        "CIJ_PUBLIC_ENDPOINT",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
    }
)

REQUIRED_OUTPUTS = (
    "AZURE_LOCATION",
    "AZURE_TENANT_ID",
    "RESOURCE_GROUP",
    "AZURE_FUNCTION_APP_NAME",
    "FUNCTION_APP_URL",
    "AZURE_KEY_VAULT_NAME",
)

# Tokens that must never appear in an output: key listing functions and connection strings.
LEAKY_TOKENS = frozenset(
    {
        "connectionstring",
        "connectionstrings",
        "instrumentationkey",
        "primarykey",
        "secondarykey",
        "primarymasterkey",
        "accountkey",
    }
)

_PARSER = BicepParser()


class BicepSyntaxError(Exception):
    """A template the parser (the same one checkov uses) cannot read."""


# --------------------------------------------------------------------------------------------
# Loading: main.bicep and every local module it pulls in.


@dataclass(frozen=True)
class Call:
    """One `module` statement: who calls which file with which params."""

    caller: str
    symbol: str
    module: str
    params: dict


@dataclass
class Template:
    root: Path
    files: dict[str, dict]
    calls: list[Call]
    registry_modules: list[str]

    def doc(self, file: str) -> dict:
        return self.files[file]

    def call_of(self, module_file: str) -> Call | None:
        return next((c for c in self.calls if c.module == module_file), None)

    def module_file(self, file: str, symbol: str) -> str | None:
        return next((c.module for c in self.calls if c.caller == file and c.symbol == symbol), None)

    def resources(self, rtype: str | None = None) -> list[tuple[str, str, dict]]:
        """(file, symbol, body) of every declared (not `existing`) resource, optionally of one type."""
        found = []
        for file, doc in self.files.items():
            for symbol, res in doc.get("resources", {}).items():
                if res.get("existing") or (rtype and res["type"] != rtype):
                    continue
                found.append((file, symbol, body(res)))
        return found

    def one(self, rtype: str) -> tuple[str, str, dict]:
        found = self.resources(rtype)
        assert len(found) == 1, f"expected exactly one {rtype}, found {len(found)}"
        return found[0]


def parse(path: Path) -> dict:
    try:
        return _PARSER.parse(file_path=path)
    except Exception as exc:  # lark's UnexpectedInput family, pycep's ValueError for invalid text
        raise BicepSyntaxError(f"{path}: {type(exc).__name__}: {exc}") from exc


def load(root: Path = INFRA) -> Template:
    files: dict[str, dict] = {}
    calls: list[Call] = []
    registry: list[str] = []
    pending = [MAIN]
    while pending:
        file = pending.pop()
        if file in files:
            continue
        files[file] = doc = parse(root / file)
        for symbol, module in doc.get("modules", {}).items():
            if module["type"] != "local":
                registry.append(f"{file}: module {symbol} comes from a registry ({module['detail']['full']})")
                continue
            target = str(PurePosixPath(file).parent / module["detail"]["path"])
            target = str(PurePosixPath(*[p for p in PurePosixPath(target).parts if p != "."]))
            calls.append(Call(file, symbol, target, module["config"].get("params", {})))
            pending.append(target)
    return Template(root, files, calls, registry)


def body(res: dict) -> dict:
    """A resource's body; conditional resources (`= if (...) {`) nest it one level deeper."""
    config = res["config"]
    return config["config"] if "condition" in config else config


def unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def get_ci(mapping: dict, key: str) -> Any:
    """ARM property names are case-insensitive."""
    return next((v for k, v in mapping.items() if unquote(k).lower() == key.lower()), None)


# --------------------------------------------------------------------------------------------
# Following references through params, variables, module outputs and resources.


@dataclass(frozen=True)
class Ref:
    """Where a value ends up: a resource property, a literal, or a parameter nobody sets."""

    file: str
    symbol: str | None = None
    rtype: str | None = None
    path: str = ""
    literal: Any = None
    param: str | None = None

    def is_resource(self, rtype: str, path: str) -> bool:
        return self.rtype == rtype and self.path == path


def dotted(value: Any) -> str | None:
    """`a.b.c` for a plain reference or property access; None for any other expression."""
    if isinstance(value, str):
        return value
    op = value.get("operator") if isinstance(value, dict) else None
    if op and op["type"] == "property_accessor":
        left, right = dotted(op["operands"]["operand_1"]), dotted(op["operands"]["operand_2"])
        if left and right:
            return f"{left}.{right}"
    return None


def follow(t: Template, file: str, value: Any, depth: int = 0) -> Ref:
    if depth > 25:
        raise RecursionError(f"reference loop at {file}: {value!r}")
    text = dotted(value)
    if text is None:
        return Ref(file, literal=value)
    if text.startswith("${") and text.endswith("}") and text.count("${") == 1:
        text = text[2:-1]
    doc = t.doc(file)
    head, _, rest = text.partition(".")
    if head in doc.get("parameters", {}) and not rest:
        call = t.call_of(file)
        if call and head in call.params:
            return follow(t, call.caller, call.params[head], depth + 1)
        default = doc["parameters"][head]["default"]
        if default is None:
            return Ref(file, param=head)
        return follow(t, file, default, depth + 1)
    if head in doc.get("variables", {}) and not rest:
        return follow(t, file, doc["variables"][head]["value"], depth + 1)
    if head in doc.get("modules", {}) and rest.startswith("outputs."):
        module = t.module_file(file, head)
        if module is None:  # a registry module: nothing to follow
            return Ref(file, literal=text)
        name, _, tail = rest[len("outputs.") :].partition(".")
        ref = follow(t, module, t.doc(module)["outputs"][name]["value"], depth + 1)
        return replace(ref, path=f"{ref.path}.{tail}".strip(".")) if tail else ref
    if head in doc.get("resources", {}):
        res = doc["resources"][head]
        if rest == "name":  # known at compile time
            return follow(t, file, body(res)["name"], depth + 1)
        return Ref(file, head, res["type"], rest)
    return Ref(file, literal=text)


def identifiers(value: Any) -> set[str]:
    """Every identifier-like token in a value: references, function names, interpolations."""
    tokens: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            tokens |= identifiers(key) | identifiers(item)
    elif isinstance(value, list):
        for item in value:
            tokens |= identifiers(item)
    elif isinstance(value, str):
        tokens |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", value))
    return tokens


def is_identity(ref: Ref, prop: str) -> bool:
    return ref.is_resource(IDENTITY, prop)


# --------------------------------------------------------------------------------------------
# The checks. Each returns a list of problems; an empty list means the templates pass.


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


def azure_yaml_service(infra: Path = INFRA) -> str:
    """The service azure.yaml (beside the infra folder) deploys."""
    text = (infra.parent / "azure.yaml").read_text()
    services = text.split("services:", 1)[1]
    return re.search(r"^\s+([A-Za-z0-9_-]+):\s*$", services, re.M).group(1)


def find_key(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            if unquote(k) == key:
                return v
            found = find_key(v, key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


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

    service = find_key(follow(t, file, site.get("tags")).literal, "azd-service-name")
    if service is None or follow(t, MAIN, service).literal != azure_yaml_service(t.root):
        problems.append("the function app's azd-service-name tag must name the service in azure.yaml")
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
        (site_config, "ftpsState", "Disabled"),
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


def check_storage(t: Template) -> list[str]:
    problems: list[str] = []
    _, _, account = t.one(STORAGE)
    props = account["properties"]
    for key, want in (
        ("allowSharedKeyAccess", False),
        ("allowBlobPublicAccess", False),
        ("minimumTlsVersion", "TLS1_2"),
        ("supportsHttpsTrafficOnly", True),
    ):
        if props.get(key) != want:
            problems.append(f"storage {key} is {props.get(key)!r}, not {want!r}")
    queues = [follow(t, f, res["name"]).literal for f, _, res in t.resources(QUEUE)]
    wanted_queue = relay_settings._DEFAULTS["DELIVERY_QUEUE_NAME"]
    if queues != [wanted_queue]:
        problems.append(f"expected the storage queue {wanted_queue!r}, found {queues}")
    for _, _, res in t.resources(CONTAINER):
        if res.get("properties", {}).get("publicAccess", "None") != "None":
            problems.append(f"blob container {res['name']} must not be public")
    return problems


def check_key_vault(t: Template) -> list[str]:
    problems: list[str] = []
    _, _, vault = t.one(VAULT)
    props = vault["properties"]
    for key in ("enableRbacAuthorization", "enableSoftDelete", "enablePurgeProtection"):
        if props.get(key) is not True:
            problems.append(f"key vault {key} must be true")
    if props.get("accessPolicies"):
        problems.append("key vault must use RBAC only, no access policies")
    secrets = {}
    for f, _, res in t.resources(SECRET):
        secrets[follow(t, f, res["name"]).literal] = follow(t, f, res.get("properties", {}).get("value"))
    wanted = {
        relay_settings._DEFAULTS["CIJ_ORG_ID_SECRET_NAME"]: "cijOrgId",
        relay_settings._DEFAULTS["CIJ_ENDPOINT_SECRET_NAME"]: "cijPublicEndpoint",
    }
    if set(secrets) != set(wanted):
        problems.append(f"key vault secrets are {sorted(secrets)}, the relay reads {sorted(wanted)}")
    for name, param in wanted.items():
        ref = secrets.get(name)
        if ref is not None and (ref.file, ref.param) != (MAIN, param):
            problems.append(f"secret {name} must be set from the @secure() parameter {param}")
    return problems


def check_monitoring(t: Template) -> list[str]:
    problems: list[str] = []
    file, _, component = t.one(APP_INSIGHTS)
    props = component["properties"]
    if get_ci(props, "DisableLocalAuth") is not True:
        problems.append("Application Insights must disable local (instrumentation key) auth")
    workspace = dotted(get_ci(props, "WorkspaceResourceId")) or ""
    if not follow(t, file, workspace.rsplit(".", 1)[0]).rtype == WORKSPACE:
        problems.append("Application Insights must be workspace-based (Log Analytics)")
    return problems


def role_assignments(t: Template) -> list[dict]:
    found = []
    for file, symbol, res in t.resources(ROLE_ASSIGNMENT):
        props = res.get("properties", {})
        role_fn = props.get("roleDefinitionId", {}).get("function", {})
        role = follow(t, file, role_fn.get("parameters", {}).get("resource_name_1")).literal
        found.append(
            {
                "where": f"{file}:{symbol}",
                "role": role if role_fn.get("type") == "subscription_resource_id" else None,
                "principal": follow(t, file, props.get("principalId")),
                "principal_type": props.get("principalType"),
                "scope": follow(t, file, res.get("scope")) if res.get("scope") else None,
                "guid_name": isinstance(res.get("name"), dict)
                and res["name"].get("function", {}).get("type") == "guid",
            }
        )
    return found


def check_roles(t: Template) -> list[str]:
    problems: list[str] = []
    assignments = role_assignments(t)
    to_identity = [a for a in assignments if is_identity(a["principal"], "properties.principalId")]
    for name, (role_id, scope_type) in IDENTITY_ROLES.items():
        matching = [a for a in to_identity if a["role"] == role_id]
        if not matching:
            problems.append(f"{name} ({role_id}) is not assigned to the relay's identity")
            continue
        for a in matching:
            if a["scope"] is None or a["scope"].rtype != scope_type or a["scope"].path:
                problems.append(f"{name} must be scoped on the {scope_type} resource ({a['where']})")
            if a["principal_type"] != "ServicePrincipal":
                problems.append(f"{name} needs principalType ServicePrincipal ({a['where']})")
            if not a["guid_name"]:
                problems.append(f"{name} assignment name must be a guid(...) ({a['where']})")
    allowed = {role_id for role_id, _ in IDENTITY_ROLES.values()}
    for a in to_identity:
        if a["role"] not in allowed:
            problems.append(f"the relay's identity gets an unexpected role {a['role']} ({a['where']})")
    return problems


def check_secure_params(t: Template) -> list[str]:
    problems: list[str] = []
    main_params = t.doc(MAIN)["parameters"]
    for name in SECRET_PARAMS:
        param = main_params.get(name)
        if param is None:
            problems.append(f"main.bicep lacks the parameter {name}")
            continue
        if not any(d["type"] == "secure" for d in param["decorators"]):
            problems.append(f"parameter {name} must be @secure()")
    for file, doc in t.files.items():
        for name, param in doc.get("parameters", {}).items():
            if any(d["type"] == "secure" for d in param["decorators"]) and param["default"] is not None:
                problems.append(f"{file}: @secure() parameter {name} must have no default")
    for call in t.calls:
        module_params = t.doc(call.module)["parameters"]
        for name, value in call.params.items():
            ref = follow(t, call.caller, value)
            if ref.param in SECRET_PARAMS and ref.file == MAIN:
                if not any(d["type"] == "secure" for d in module_params.get(name, {}).get("decorators", [])):
                    problems.append(
                        f"{call.module}: parameter {name} receives {ref.param} but is not @secure()"
                    )
    return problems


def secret_symbols(t: Template, file: str) -> set[str]:
    """Names in `file` that hold a secret: @secure() params and Key Vault secret resources."""
    doc = t.doc(file)
    names = {
        n for n, p in doc.get("parameters", {}).items() if any(d["type"] == "secure" for d in p["decorators"])
    }
    names |= {s for s, r in doc.get("resources", {}).items() if r["type"] == SECRET}
    return names


def check_outputs(t: Template) -> list[str]:
    problems: list[str] = []
    for file, doc in t.files.items():
        secrets = secret_symbols(t, file)
        for name, output in doc.get("outputs", {}).items():
            if any(d["type"] == "secure" for d in output["decorators"]):
                continue  # a @secure() output is not recorded in the deployment history
            tokens = identifiers(output["value"])
            leaks = sorted(tokens & secrets)
            leaks += sorted(
                tok for tok in tokens if tok.lower() in LEAKY_TOKENS or re.match(r"list[A-Z]", tok)
            )
            if leaks:
                problems.append(f"{file}: output {name} exposes {', '.join(leaks)}")
    missing = [name for name in REQUIRED_OUTPUTS if name not in t.doc(MAIN).get("outputs", {})]
    if missing:
        problems.append(f"main.bicep lacks the outputs azd needs: {missing}")
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


def env_from_templates(t: Template) -> dict[str, str]:
    """The app settings as the relay would see them, deployment-time values replaced by stand-ins."""
    env = {}
    for name, ref in app_settings(t).items():
        if isinstance(ref.literal, str) and "${" not in ref.literal:
            env[name] = ref.literal
        elif name.endswith(("Uri", "URL")):
            env[name] = "https://deployment-time.example/"
        else:
            env[name] = "deployment-time-value"
    return env


def check_parameters_file(t: Template) -> list[str]:
    problems: list[str] = []
    values = json.loads((t.root / "main.parameters.json").read_text())["parameters"]
    for name, param in t.doc(MAIN)["parameters"].items():
        if param["default"] is None and name not in values:
            problems.append(f"main.parameters.json does not map the required parameter {name}")
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


# --------------------------------------------------------------------------------------------
# The templates in infra/ pass every check.


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


def test_every_checkov_skip_has_a_reason():
    for path in INFRA.rglob("*.bicep"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"//checkov:skip=CKV2?_AZURE_\d+: \S.{15,}", line), f"{path}: {line.strip()}"


def test_azure_yaml_declares_one_python_function_service():
    text = (REPO / "azure.yaml").read_text()
    assert azure_yaml_service() == "relay"
    for line in ("project: .", "host: function", "language: python"):
        assert re.search(rf"^\s+{re.escape(line)}\s*$", text, re.M), line


# --------------------------------------------------------------------------------------------
# The checks bite: broken copies of infra/ are caught.


@pytest.fixture
def copy(tmp_path) -> Path:
    target = tmp_path / "infra"
    shutil.copytree(INFRA, target)
    (tmp_path / "azure.yaml").write_text((REPO / "azure.yaml").read_text())
    return target


def remove_resource(text: str, symbol: str) -> str:
    start = text.index(f"resource {symbol} ")
    depth, i = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return text[:start] + text[i:]


def edit(root: Path, file: str, change) -> None:
    path = root / file
    new = change(path.read_text())
    assert new != path.read_text(), "the mutation changed nothing"
    path.write_text(new)


@pytest.mark.parametrize(
    ("file", "symbol", "role"),
    [
        ("modules/storage.bicep", "blobDataOwner", "Storage Blob Data Owner"),
        ("modules/storage.bicep", "queueDataContributor", "Storage Queue Data Contributor"),
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
        (
            "modules/function.bicep",
            "ftpsState: 'Disabled'",
            "ftpsState: 'AllAllowed'",
            check_site_hardening,
            "ftpsState",
        ),
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


SYNTAX_ERRORS = [
    ("modules/keyvault.bicep", "resource vault 'Microsoft", "resource vault = 'Microsoft"),
    (
        "modules/storage.bicep",
        "    allowBlobPublicAccess: false\n",
        "    allowBlobPublicAccess: false\n  }\n",
    ),
    ("main.bicep", "targetScope = 'subscription'", "targetScope == 'subscription'"),
]


@pytest.mark.parametrize(("file", "old", "new"), SYNTAX_ERRORS)
def test_syntax_error_fails_to_parse(copy, file, old, new):
    edit(copy, file, lambda text: text.replace(old, new, 1))
    with pytest.raises(BicepSyntaxError):
        load(copy)


def run_check_bicep(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_BICEP), str(directory)], capture_output=True, text=True, timeout=900, check=False
    )


def test_check_bicep_fails_on_a_file_checkov_cannot_parse(copy):
    """checkov itself exits 0 here; the script must read parsing_errors and fail."""
    file, old, new = SYNTAX_ERRORS[0]
    edit(copy, file, lambda text: text.replace(old, new, 1))
    result = run_check_bicep(copy)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "parsing_errors=1" in result.stdout
    assert "could not parse" in result.stderr


def test_check_bicep_fails_on_a_failed_check(copy):
    edit(copy, "modules/function.bicep", lambda text: text.replace("httpsOnly: true", "httpsOnly: false"))
    result = run_check_bicep(copy)
    assert result.returncode != 0, result.stdout + result.stderr
    assert re.search(r"FAILED\s+CKV_AZURE_\d+\s+Microsoft\.Web/sites\.site", result.stdout), result.stdout
    assert "parsing_errors=0" in result.stdout
