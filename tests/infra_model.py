"""Reading the Bicep templates in infra/ without the Bicep CLI: pycep-parser (the parser checkov
uses) parses each file, and references are followed through parameters, variables, module outputs
and resources to where a value really comes from. Also the helpers that break copies of infra/."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[1]

INFRA = REPO / "infra"
MAIN = "main.bicep"

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


# --------------------------------------------------------------------------------------------
# Broken copies: the checks are shown to bite on copies of infra/ with one thing changed.


def copy_infra(tmp_path: Path) -> Path:
    """A copy of infra/ with azure.yaml beside it, as in the repository."""
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


# Edits that make a template unreadable: (file, old text, new text).
SYNTAX_ERRORS = [
    ("modules/keyvault.bicep", "resource vault 'Microsoft", "resource vault = 'Microsoft"),
    (
        "modules/storage.bicep",
        "    allowBlobPublicAccess: false\n",
        "    allowBlobPublicAccess: false\n  }\n",
    ),
    ("main.bicep", "targetScope = 'subscription'", "targetScope == 'subscription'"),
]
