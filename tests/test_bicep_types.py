"""scripts/check-bicep-types: the templates checked against Azure's own resource type definitions.

The real infra/ passes; each broken copy fails with the line that names its mistake. The check runs
as scripts/test runs it: the script, its own virtualenv, a directory argument.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
CHECK = REPO / "scripts" / "check-bicep-types"


def run_check(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK), *map(str, args)], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "infra"
    shutil.copytree(INFRA, target)
    return target


def edit(root: Path, file: str, old: str, new: str) -> None:
    path = root / file
    text = path.read_text()
    assert old in text, f"{file} no longer holds {old!r}: pick another mutation"
    path.write_text(text.replace(old, new, 1))


def test_the_templates_pass():
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    summary = r"check-bicep-types: OK: \d+ resources in \d+ files, [1-9]\d* module calls"
    assert re.search(summary, result.stdout), result.stdout
    used = {
        f"{m[1]}@{m[2]}"
        for f in INFRA.rglob("*.bicep")
        for m in re.finditer(r"^resource \w+ '([\w./]+)@([\w-]+)'", f.read_text(), re.M)
    }
    assert f"{len(used)} resource types" in result.stdout  # every type the templates declare was looked up


# (what the copy gets wrong, file, old text, new text, the line the check must print)
BROKEN = [
    (
        "an unknown property",
        "modules/function.bicep",
        "httpsOnly: true",
        "httpsOnlyy: true",
        r"site \(Microsoft\.Web/sites@2024-04-01\): "
        r"properties\.httpsOnlyy: no such property \(did you mean 'httpsOnly'\?\)",
    ),
    (
        "an unknown nested property",
        "modules/storage.bicep",
        "deleteRetentionPolicy: {",
        "deleteRetentionPolicies: {",
        r"blobService .*: properties\.deleteRetentionPolicies: no such property",
    ),
    (
        "a bad enum value",
        "modules/storage.bicep",
        "publicAccess: 'None'",
        "publicAccess: 'Private'",
        r"properties\.publicAccess: 'Private' is not one of the allowed values: 'Container', 'Blob', 'None'",
    ),
    (
        "a value outside an extensible enum",
        "modules/storage.bicep",
        "name: 'Standard_LRS'",
        "name: 'Standard_LRSS'",
        r"storage \(Microsoft\.Storage/storageAccounts@2023-05-01\): "
        r"sku\.name: 'Standard_LRSS' is not one of the allowed values: 'Standard_LRS', ",
    ),
    (
        "a value of the wrong kind",
        "modules/storage.bicep",
        "days: 7",
        "days: '7'",
        r"properties\.deleteRetentionPolicy\.days: expects integer, got string '7'",
    ),
    (
        "a module parameter typo",
        "main.bicep",
        "identityPrincipalId: identity.outputs.principalId",
        "identityPrincipalID: identity.outputs.principalId",
        r"main\.bicep:\d+ module \w+ \(modules/\w+\.bicep\): params\.identityPrincipalID: "
        r"the module has no such parameter \(did you mean 'identityPrincipalId'\?\)",
    ),
    (
        "a read-only property",
        "modules/function.bicep",
        "httpsOnly: true",
        "httpsOnly: true\n    defaultHostName: 'relay.azurewebsites.net'",
        r"site \(Microsoft\.Web/sites@2024-04-01\): properties\.defaultHostName: read-only \(Azure sets it\)",
    ),
    (
        "a wrong API version",
        "modules/function.bicep",
        "Microsoft.Web/sites@2024-04-01",
        "Microsoft.Web/sites@2024-04-11",
        r"no type definition for Microsoft\.Web/sites@2024-04-11 in "
        r"scripts/bicep_types/data/microsoft\.web/2024-04-11\.json: "
        r"check the type name and API version, or add",
    ),
    (
        "a property read that does not exist",
        "modules/keyvault.bicep",
        "vault.properties.vaultUri",
        "vault.properties.vaultUrl",
        r"vault\.properties\.vaultUrl: reads properties\.vaultUrl: "
        r"no such property \(did you mean 'vaultUri'\?\)",
    ),
    (
        "a module output that does not exist",
        "main.bicep",
        "storage.outputs.queueName",
        "storage.outputs.queue",
        r"main\.bicep: storage\.outputs\.queue: modules/storage\.bicep has no such output",
    ),
    (
        "a literal passed to a module that its resource refuses",
        "main.bicep",
        "param zoneRedundant bool = false",
        "param zoneRedundant bool = 'no'",
        r"plan \(Microsoft\.Web/serverfarms@2024-04-01\): "
        r"properties\.zoneRedundant: expects boolean, got string 'no'",
    ),
    (
        "a name the type's pattern refuses",
        "main.bicep",
        "param deliveryQueueName string = 'pending-events'",
        "param deliveryQueueName string = 'Pending_Events'",
        r"deliveryQueue \(Microsoft\.Storage/storageAccounts/queueServices/queues@2023-05-01\): "
        r"name: 'Pending_Events' does not match the pattern",
    ),
    (
        "a default outside @allowed",
        "main.bicep",
        "param principalType string = 'User'",
        "param principalType string = 'Users'",
        r"main\.bicep: param principalType default: 'Users' is not one of the parameter's @allowed values",
    ),
    (
        "an existing resource that sets properties",
        "modules/function.bicep",
        "resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {",
        "resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {\n  kind: 'StorageV2'",
        r"storage \(Microsoft\.Storage/storageAccounts@2023-05-01\): "
        r"kind: an existing resource sets only name, scope and parent",
    ),
    (
        "a parameters file naming no parameter",
        "main.parameters.json",
        '"cijOrgId"',
        '"cijOrgID"',
        r"main\.parameters\.json: cijOrgID: main\.bicep has no such parameter \(did you mean 'cijOrgId'\?\)",
    ),
]


@pytest.mark.parametrize(("mistake", "file", "old", "new", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_copy_fails_and_says_why(copy, mistake, file, old, new, expected):
    edit(copy, file, old, new)
    result = run_check(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(expected, result.stdout), result.stdout
    assert "check-bicep-types: FAILED" in result.stderr


def test_a_missing_required_module_parameter_fails(copy):
    edit(copy, "main.bicep", "    identityPrincipalId: identity.outputs.principalId\n", "")
    result = run_check(copy)
    assert result.returncode == 1
    expected = r"params\.identityPrincipalId: required by the module, not passed"
    assert re.search(expected, result.stdout), result.stdout


def test_a_file_that_cannot_be_parsed_fails(copy):
    edit(copy, "modules/storage.bicep", "resource storage ", "resource storage = ")
    result = run_check(copy)
    assert result.returncode == 1
    assert "modules/storage.bicep: cannot parse" in result.stdout


def test_a_directory_without_resources_fails(tmp_path):
    result = run_check(tmp_path)
    assert result.returncode == 1
    assert "no resources found" in result.stderr


# --------------------------------------------------------------------------------------------
# Adding a definition: copied out of a bicep-types-az checkout, trimmed to what the type reaches.


def fake_checkout(root: Path) -> Path:
    """A bicep-types-az layout with one types.json holding two resource types and an unrelated type."""
    types = [
        {"$type": "StringType"},
        {"$type": "StringLiteralType", "value": "Hot"},
        {"$type": "StringLiteralType", "value": "Cool"},
        {"$type": "UnionType", "elements": [{"$ref": "#/1"}, {"$ref": "#/2"}]},
        {"$type": "ObjectType", "name": "Unrelated", "properties": {}},
        {
            "$type": "ObjectType",
            "name": "Contoso.Things/widgets",
            "properties": {
                "name": {"type": {"$ref": "#/0"}, "flags": 9, "description": "The name"},
                "tier": {"type": {"$ref": "#/3"}, "flags": 0},
                "serial": {"type": {"$ref": "#/0"}, "flags": 2},
                "description": {"type": {"$ref": "#/0"}, "flags": 0, "description": "A property so named"},
            },
        },
        {"$type": "ResourceType", "name": "Contoso.Things/widgets@2030-01-01", "body": {"$ref": "#/5"},
         "readableScopes": 8, "writableScopes": 8, "functions": {"listKeys": {"$ref": "#/4"}}},
        {"$type": "ObjectType", "name": "Contoso.Things/gadgets", "properties": {
            "name": {"type": {"$ref": "#/0"}, "flags": 9}}},
        {"$type": "ResourceType", "name": "Contoso.Things/gadgets@2030-01-01", "body": {"$ref": "#/7"},
         "readableScopes": 8, "writableScopes": 8},
    ]  # fmt: skip
    folder = root / "generated" / "things" / "contoso.things" / "2030-01-01"
    folder.mkdir(parents=True)
    (folder / "types.json").write_text(json.dumps(types))
    return root


def test_definitions_are_added_trimmed_and_then_checked(tmp_path, monkeypatch):
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(REPO / "scripts" / "bicep_types"))
    azure_types = importlib.import_module("azure_types")
    checkout, data = fake_checkout(tmp_path / "checkout"), tmp_path / "data"

    path = azure_types.vendor(checkout, "Contoso.Things/widgets@2030-01-01", data)
    azure_types.vendor(checkout, "Contoso.Things/gadgets@2030-01-01", data)
    stored = json.loads(path.read_text())
    assert path == data / "contoso.things" / "2030-01-01.json"
    assert not any(t.get("name") == "Unrelated" for t in stored)  # only what the resource reaches
    assert '"description": "' not in json.dumps(stored) and "functions" not in json.dumps(stored)

    library = azure_types.Library(data)
    for name in ("Contoso.Things/widgets@2030-01-01", "contoso.things/GADGETS@2030-01-01"):
        body = library.resource(name).to(library.resource(name).node["body"])
        assert body.node["properties"]["name"]["flags"] == 9
    widget_body = library.resource("Contoso.Things/widgets@2030-01-01").node["body"]
    properties = library.resource("Contoso.Things/widgets@2030-01-01").to(widget_body).node["properties"]
    assert set(properties) == {"name", "tier", "serial", "description"}  # a property named description stays
    widget = library.resource("Contoso.Things/widgets@2030-01-01")
    tier = widget.to(widget.to(widget.node["body"]).node["properties"]["tier"]["type"])
    assert [tier.to(e).node["value"] for e in tier.node["elements"]] == ["Hot", "Cool"]
    with pytest.raises(azure_types.MissingDefinition, match=r"Contoso\.Things/widgets@2031-01-01"):
        library.resource("Contoso.Things/widgets@2031-01-01")
    with pytest.raises(azure_types.MissingDefinition, match="wrong API version"):
        azure_types.vendor(checkout, "Contoso.Things/sprockets@2030-01-01", data)
    sys.modules.pop("azure_types", None)


def test_every_stored_definition_is_whole():
    """Each data file is a list of types whose references all point inside it."""
    files = sorted((REPO / "scripts" / "bicep_types" / "data").rglob("*.json"))
    assert files
    for path in files:
        types = json.loads(path.read_text())
        refs = [int(r) for r in re.findall(r'"\$ref":\s*"#/(\d+)"', path.read_text())]
        assert refs and max(refs) < len(types), path
        assert any(t["$type"] == "ResourceType" for t in types), path


def test_a_child_resource_declared_inside_its_parent_is_checked(copy):
    edit(
        copy,
        "modules/storage.bicep",
        "resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {\n",
        "resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {\n"
        "  resource extra 'queues' = {\n    name: 'extra'\n"
        "    properties: {\n      metadat: {}\n    }\n  }\n",
    )
    result = run_check(copy)
    assert result.returncode == 1
    expected = (
        r"queueService__extra \(Microsoft\.Storage/storageAccounts/queueServices/queues@2023-05-01\): "
        r"properties\.metadat: no such property \(did you mean 'metadata'\?\)"
    )
    assert re.search(expected, result.stdout), result.stdout
