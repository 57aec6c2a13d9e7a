"""Azure's resource type definitions (the bicep-types-az `types.json` format), loaded by name@version.

The definitions the check uses live in `data/<namespace>/<api-version>.json`, one file per
namespace and API version, in the `types.json` format the Bicep compiler reads: a list of types
that refer to each other as {"$ref": "#/<index>"}. Only the resource types the templates use are
kept, with the types they reach; `vendor` copies them from a checkout of Azure/bicep-types-az.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404 - git, to read a bicep-types-az clone
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

DATA = Path(__file__).resolve().parent / "data"

# Property flags (bicep-types ObjectTypePropertyFlags).
REQUIRED, READ_ONLY, WRITE_ONLY, DEPLOY_TIME_CONSTANT = 1, 2, 4, 8


class MissingDefinition(Exception):
    """No definition of a resource type at an API version is available to the check."""


@dataclass(frozen=True)
class Ref:
    """A type inside one definitions file."""

    file: TypesFile
    index: int

    @property
    def node(self) -> dict[str, Any]:
        """The type's JSON object."""
        return self.file.types[self.index]

    @property
    def kind(self) -> str:
        """Its `$type`: ObjectType, StringLiteralType, UnionType, ..."""
        return self.node["$type"]

    def to(self, link: dict[str, str]) -> Ref:
        """The type a {"$ref": "#/n"} inside this file points at."""
        return Ref(self.file, index_of(link))


@dataclass(eq=False)
class TypesFile:
    """One definitions file: its types, and its resource types by lower-case name@version."""

    path: Path
    types: list[dict[str, Any]]

    def resources(self) -> dict[str, int]:
        """Index of every ResourceType, by lower-case `Namespace/type@version`."""
        return {t["name"].lower(): i for i, t in enumerate(self.types) if t["$type"] == "ResourceType"}


def index_of(link: dict[str, str]) -> int:
    """n for {"$ref": "#/n"}."""
    ref = link["$ref"]
    if not ref.startswith("#/"):
        raise ValueError(f"unsupported reference {ref!r} (only references inside the same file)")
    return int(ref[2:])


def split(type_name: str) -> tuple[str, str]:
    """('Microsoft.Web/sites', '2024-04-01') for 'Microsoft.Web/sites@2024-04-01'."""
    name, at, version = type_name.partition("@")
    if not at or "/" not in name or not version:
        raise MissingDefinition(f"{type_name!r} is not Namespace/type@api-version")
    return name, version


def data_path(type_name: str, root: Path = DATA) -> Path:
    """The file that holds (or would hold) the definition of `type_name`."""
    name, version = split(type_name)
    return root / name.split("/", 1)[0].lower() / f"{version.lower()}.json"


class Library:
    """The vendored definitions, loaded on demand, one file per namespace and API version."""

    def __init__(self, root: Path = DATA) -> None:
        self.root = root
        self._files: dict[Path, TypesFile | None] = {}

    def _file(self, path: Path) -> TypesFile | None:
        if path not in self._files:
            self._files[path] = TypesFile(path, json.loads(path.read_text())) if path.exists() else None
        return self._files[path]

    def resource(self, type_name: str) -> Ref:
        """The ResourceType entry of `Namespace/type@version`; MissingDefinition if none is vendored."""
        path = data_path(type_name, self.root)
        file = self._file(path)
        index = file.resources().get(type_name.lower()) if file else None
        if file is None or index is None:
            shown = path.relative_to(DATA.parents[2]) if path.is_relative_to(DATA.parents[2]) else path
            raise MissingDefinition(
                f"no type definition for {type_name} in {shown}: "
                "check the type name and API version, or add the definition with "
                "scripts/check-bicep-types --add-from <checkout of Azure/bicep-types-az>"
            )
        return Ref(file, index)


# --------------------------------------------------------------------------------------------
# Vendoring: copy a resource type, and every type it reaches, out of bicep-types-az.


def _links(node: Any) -> list[dict[str, str]]:
    """Every {"$ref": ...} inside a type's JSON (its properties, elements, item type, ...)."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return [node]
        return [link for value in node.values() for link in _links(value)]
    if isinstance(node, list):
        return [link for value in node for link in _links(value)]
    return []


def _renumbered(node: Any, numbers: dict[int, int]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return {"$ref": f"#/{numbers[index_of(node)]}"}
        return {key: _renumbered(value, numbers) for key, value in node.items()}
    if isinstance(node, list):
        return [_renumbered(value, numbers) for value in node]
    return node


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        # a description is text; a property *named* description (a dict) stays
        return {
            k: _without_descriptions(v)
            for k, v in node.items()
            if k != "description" or not isinstance(v, str)
        }
    if isinstance(node, list):
        return [_without_descriptions(v) for v in node]
    return node


def closure(types: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """The resource type at `start` and every type it reaches, renumbered from 0 (functions and
    descriptions dropped)."""
    resource = {k: v for k, v in types[start].items() if k != "functions"}
    order, seen, pending = [start], {start}, [link for link in _links(resource)]
    while pending:
        index = index_of(pending.pop())
        if index not in seen:
            seen.add(index)
            order.append(index)
            pending.extend(_links(types[index]))
    numbers = {old: new for new, old in enumerate(order)}
    return [
        _without_descriptions(_renumbered(resource if old == start else types[old], numbers)) for old in order
    ]


def _sources(checkout: Path, namespace: str, version: str) -> list[tuple[str, str]]:
    """(path, text) of each generated/<provider>/<namespace>/<version>/types.json in a checkout of
    bicep-types-az, or in a clone without a work tree (read with git)."""
    pattern = f"generated/*/{namespace}/{version}/types.json"
    if (checkout / "generated").is_dir():
        return [(str(p), p.read_text()) for p in sorted(checkout.glob(pattern))]
    git = ["git", "--git-dir", str(checkout)]
    listed = subprocess.run(  # noqa: S603 - git with fixed arguments
        [*git, "ls-tree", "-r", "--name-only", "HEAD", "generated/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [
        (
            path,
            subprocess.run([*git, "show", f"HEAD:{path}"], capture_output=True, text=True, check=True).stdout,  # noqa: S603
        )
        for path in listed
        if PurePosixPath(path).match(pattern)
    ]


def find_source(checkout: Path, type_name: str) -> tuple[str, list[dict[str, Any]], int]:
    """The bicep-types-az file defining `type_name`: generated/<provider>/<namespace>/<version>/types.json."""
    name, version = split(type_name)
    for path, text in _sources(checkout, name.split("/", 1)[0].lower(), version.lower()):
        types = json.loads(text)
        for index, node in enumerate(types):
            if node["$type"] == "ResourceType" and node["name"].lower() == type_name.lower():
                return path, types, index
    raise MissingDefinition(f"{type_name} is not defined in {checkout}/generated (wrong API version?)")


def vendor(checkout: Path, type_name: str, root: Path = DATA) -> Path:
    """Add `type_name`'s definition (trimmed to what it reaches) to the vendored data; its file."""
    _, types, index = find_source(checkout, type_name)
    added = closure(types, index)
    path = data_path(type_name, root)
    existing: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    if type_name.lower() in TypesFile(path, existing).resources():
        return path
    offset = len(existing)
    shifted = _renumbered(added, {i: i + offset for i in range(len(added))})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing + shifted, separators=(",", ":")) + "\n")
    return path
