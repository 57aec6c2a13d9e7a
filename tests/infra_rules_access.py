"""Rules for who and what may reach the relay's data: storage, Key Vault and Application Insights
hardening, the identity's role assignments, the secret parameters, and outputs that must leak nothing.
Each returns a list of problems; an empty list means the templates pass."""

from __future__ import annotations

import re

from shared import settings as relay_settings
from tests.infra_model import (
    APP_INSIGHTS,
    CONTAINER,
    MAIN,
    QUEUE,
    ROLE_ASSIGNMENT,
    SECRET,
    STORAGE,
    VAULT,
    WORKSPACE,
    Template,
    dotted,
    follow,
    get_ci,
    identifiers,
    is_identity,
)

# Role name -> (built-in role definition ID, type of the resource it must be scoped to).
IDENTITY_ROLES = {
    "Storage Blob Data Owner": ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", STORAGE),
    "Storage Queue Data Contributor": ("974c5e8b-45b9-4653-ba55-5f855dd0fb88", STORAGE),
    "Storage Table Data Contributor": ("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", STORAGE),
    "Monitoring Metrics Publisher": ("3913510d-42f4-4e42-8a64-420c390055eb", APP_INSIGHTS),
    "Key Vault Secrets User": ("4633458b-17de-408a-b874-0445c86b69e6", VAULT),
}

# The deployment's secret inputs: they may only reach Key Vault secrets.
SECRET_PARAMS = ("cijOrgId", "cijPublicEndpoint")

REQUIRED_OUTPUTS = (
    "AZURE_LOCATION",
    "AZURE_TENANT_ID",
    "RESOURCE_GROUP",
    "AZURE_FUNCTION_APP_NAME",
    "FUNCTION_APP_URL",
    "AZURE_KEY_VAULT_NAME",
    "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID",
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
