"""Check every resource and module call in a directory of Bicep files against Azure's resource types.

    check.py [DIR]                     # default: infra/
    check.py --add-from CHECKOUT [DIR] # first copy the definitions DIR needs from Azure/bicep-types-az

Fails on: a resource type or API version with no definition, a property path the type does not
have (set, or read as `symbol.properties...`), a read-only property that is set, a literal value
that is not one the type allows (enums, literal unions, scalar kinds, integer bounds), a module
parameter the module does not declare or a required one not passed, a value outside a module
parameter's @allowed list, and a module output that does not exist. Values are followed through
variables, parameters (@allowed, the values callers pass, defaults) and conditional expressions;
anything computed at deployment time is not judged.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

from azure_types import READ_ONLY, REQUIRED, Library, MissingDefinition, Ref, vendor
from pycep.transformer import BicepElement
from templates import Templates, allowed_values, body, load, unquote

# Keys of a resource body that are Bicep's, not the resource type's.
BICEP_KEYS = {"parent", "scope", "dependsOn", "depends_on"}
EXISTING_KEYS = {"name", "scope", "parent"}
SCALARS = {"StringType": str, "IntegerType": int, "BooleanType": bool}
# A plain `${symbol.a.b}` inside an interpolated string.
INTERPOLATED = re.compile(r"\$\{\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\s*\}")


def show(value: Any) -> str:
    """A short rendering of a literal for messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return repr(value) if not isinstance(value, bool) else str(value).lower()


def kind_of(value: Any) -> str:
    """The Bicep kind of a literal, for messages."""
    for kind, types in (("bool", bool), ("int", int), ("string", str), ("object", dict), ("array", list)):
        if isinstance(value, types):
            return kind
    return "null"


def suggestion(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or [
        k for k in known if k.lower() == name.lower()
    ]
    return f" (did you mean {close[0]!r}?)" if close else ""


def literals(ref: Ref) -> list[Any]:
    """The literal values a union of literals allows (empty if it holds other types)."""
    if ref.kind == "StringLiteralType":
        return [ref.node["value"]]
    if ref.kind == "UnionType":
        return [v for element in ref.node["elements"] for v in literals(ref.to(element))]
    return []


def members(
    ref: Ref, value: dict[str, Any], t: Templates, file: str, path: str
) -> tuple[dict, Ref | None, list]:
    """(properties, type of other keys or None, problems) of an object type for the value given."""
    node = ref.node
    if ref.kind == "ObjectType":
        extra = ref.to(node["additionalProperties"]) if node.get("additionalProperties") else None
        return dict(node.get("properties", {})), extra, []
    # DiscriminatedObjectType: the discriminator's value chooses the element.
    properties, problems = dict(node.get("baseProperties", {})), []
    elements = {name: ref.to(link) for name, link in node["elements"].items()}
    given = next((v for k, v in value.items() if unquote(k) == node["discriminator"]), None)
    chosen = t.candidates(file, given) if given is not None else None
    names = [v for _, v in chosen] if chosen else []
    if names and all(isinstance(n, str) for n in names):
        for name in names:
            if name in elements:
                properties.update(elements[name].node.get("properties", {}))
            else:
                problems.append(
                    f"{path}.{node['discriminator']}: {name!r} is not one of the allowed values: "
                    + ", ".join(repr(e) for e in elements)
                )
    else:
        for element in elements.values():
            properties.update(element.node.get("properties", {}))
    return properties, None, problems


class Checker:
    """Walks the templates, comparing each value with its type; collects problems as text lines."""

    def __init__(self, templates: Templates, library: Library) -> None:
        self.t = templates
        self.library = library
        self.problems: list[str] = list(templates.unreadable)
        self.resources = 0
        self.types: set[str] = set()

    # ---- values against types

    def value(self, ref: Ref, value: Any, file: str, path: str) -> list[str]:
        """Problems of an expression in `file` against a type; nothing when its value is not known."""
        found = self.t.candidates(file, value)
        if found is None:
            return []
        problems: list[str] = []
        for origin, literal in found:
            for problem in self.literal(ref, literal, origin, path):
                if problem not in problems:
                    problems.append(problem)
        return problems

    def literal(self, ref: Ref, value: Any, file: str, path: str) -> list[str]:
        """Problems of one literal (object and array literals checked member by member)."""
        kind, node = ref.kind, ref.node
        if value is None or kind == "AnyType":
            return []
        if isinstance(value, dict) and "loop_type" in value and "config" in value:
            return []  # a for-expression yields an array: its items are checked by ArrayType below
        if kind in ("ObjectType", "DiscriminatedObjectType"):
            if not isinstance(value, dict):
                return [f"{path}: expects an object, got {show(value)}"]
            return self.object(ref, value, file, path)
        if kind == "ArrayType":
            if isinstance(value, dict) and "loop_type" in value:
                return self.value(ref.to(node["itemType"]), body(value), file, f"{path}[]")
            if not isinstance(value, list):
                return [f"{path}: expects an array, got {show(value)}"]
            return [
                p
                for i, item in enumerate(value)
                for p in self.value(ref.to(node["itemType"]), item, file, f"{path}[{i}]")
            ]
        if kind == "StringLiteralType":
            return (
                []
                if value == node["value"]
                else [f"{path}: {show(value)} is not the allowed value {node['value']!r}"]
            )
        if kind == "UnionType":
            elements = [ref.to(e) for e in node["elements"]]
            allowed = literals(ref)
            # An "extensible" enum (literals plus any string) still accepts only its documented values here:
            # a value Azure added later belongs with the API version that documents it.
            if isinstance(value, str) and allowed:
                elements = [e for e in elements if e.kind != "StringType"]
            if any(not self.literal(e, value, file, path) for e in elements):
                return []
            if allowed:
                return [
                    f"{path}: {show(value)} is not one of the allowed values: "
                    + ", ".join(map(repr, allowed))
                ]
            return [f"{path}: {show(value)} matches none of the types this property accepts"]
        if kind in SCALARS:
            expected = SCALARS[kind]
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                return [f"{path}: expects {kind[:-4].lower()}, got {kind_of(value)} {show(value)}"]
            return self.bounds(node, value, path)
        if kind == "NullType":
            return [f"{path}: expects null, got {show(value)}"]
        return []

    @staticmethod
    def bounds(node: dict[str, Any], value: Any, path: str) -> list[str]:
        if isinstance(value, str):
            if "minLength" in node and len(value) < node["minLength"]:
                return [f"{path}: {show(value)} is shorter than {node['minLength']} characters"]
            if "maxLength" in node and len(value) > node["maxLength"]:
                return [f"{path}: {show(value)} is longer than {node['maxLength']} characters"]
            pattern = python_pattern(node.get("pattern"))
            if pattern is not None and not pattern.search(value):
                return [f"{path}: {show(value)} does not match the pattern {node['pattern']}"]
            return []
        if "minValue" in node and value < node["minValue"]:
            return [f"{path}: {value} is below the minimum ({node['minValue']})"]
        if "maxValue" in node and value > node["maxValue"]:
            return [f"{path}: {value} is above the maximum ({node['maxValue']})"]
        return []

    def object(
        self, ref: Ref, value: dict[str, Any], file: str, path: str, skip: set[str] = frozenset()
    ) -> list[str]:
        properties, extra, problems = members(ref, value, self.t, file, path)
        by_lower = {name.lower(): name for name in properties}
        given = set()
        for raw_key, item in value.items():
            key = unquote(raw_key)
            if key in skip:
                continue
            where = f"{path}.{key}" if path else key
            name = key if key in properties else by_lower.get(key.lower())
            if name is None:
                if extra is not None:
                    problems += self.value(extra, item, file, where)
                else:
                    problems.append(f"{where}: no such property{suggestion(key, list(properties))}")
                continue
            given.add(name)
            flags = properties[name].get("flags", 0)
            if flags & READ_ONLY and not flags & REQUIRED:
                problems.append(f"{where}: read-only (Azure sets it), cannot be set")
                continue
            problems += self.value(ref.to(properties[name]["type"]), item, file, where)
        for name, prop in properties.items():
            if prop.get("flags", 0) & REQUIRED and name not in given and name not in skip:
                problems.append(f"{path + '.' if path else ''}{name}: required, not set")
        return problems

    # ---- reading a resource's properties: symbol.properties.x.y

    def read_path(self, ref: Ref, parts: list[str]) -> str | None:
        """Why `parts` cannot be read from a value of type `ref`, or None if it can (or may)."""
        if not parts or ref.kind == "AnyType":
            return None
        head, rest = parts[0], parts[1:]
        if ref.kind == "UnionType":
            reasons = [self.read_path(ref.to(e), parts) for e in ref.node["elements"]]
            return None if None in reasons else reasons[0]
        if ref.kind not in ("ObjectType", "DiscriminatedObjectType"):
            return f"{head}: a {ref.kind.removesuffix('Type').lower()} has no properties"
        node = ref.node
        if ref.kind == "ObjectType":
            properties = node.get("properties", {})
        else:
            properties = dict(node.get("baseProperties", {}))
            for link in node["elements"].values():
                properties.update(ref.to(link).node.get("properties", {}))
        name = next((n for n in properties if n.lower() == head.lower()), None)
        if name is None:
            if node.get("additionalProperties"):
                return self.read_path(ref.to(node["additionalProperties"]), rest)
            return f"{head}: no such property{suggestion(head, list(properties))}"
        reason = self.read_path(ref.to(properties[name]["type"]), rest)
        return f"{head}.{reason}" if reason else None

    def reads(self, file: str, value: Any, found: list[tuple[str, list[str]]]) -> None:
        """Collect every `symbol.a.b` chain in a value: (symbol, [a, b])."""
        if isinstance(value, dict):
            operator = value.get("operator") if set(value) == {"operator"} else None
            if operator and operator.get("type") == "property_accessor":
                chain = flatten(value)
                if chain:
                    found.append((chain[0], chain[1:]))
                    return
            for item in value.values():
                self.reads(file, item, found)
        elif isinstance(value, list):
            for item in value:
                self.reads(file, item, found)
        elif isinstance(value, str) and "${" in value:  # pycep leaves interpolations as text
            for chain in INTERPOLATED.findall(value):
                symbol, *parts = chain.split(".")
                found.append((symbol, parts))

    # ---- the templates

    def resource_type(self, type_name: str, where: str) -> Ref | None:
        try:
            resource = self.library.resource(type_name)
        except MissingDefinition as exc:
            self.problems.append(f"{where}: {exc}")
            return None
        self.types.add(type_name)
        return resource

    def run(self) -> list[str]:
        self.parameters_file()
        for file, doc in self.t.files.items():
            for symbol, res in doc.get("resources", {}).items():
                self.resource(file, symbol, res)
            for call in self.t.calls:
                if call.caller == file:
                    self.call(call)
            self.check_reads(file, doc)
            for name, param in doc.get("parameters", {}).items():
                if param.get("default") is not None:
                    found = self.param_value(param, param["default"], file, f"param {name} default")
                    self.problems += [f"{file}: {p}" for p in found]
        return self.problems

    def resource(self, file: str, symbol: str, res: dict[str, Any]) -> None:
        self.resources += 1
        type_name = f"{res['type']}@{res['api_version']}"
        where = f"{file}:{res.get('__start_line__', '?')} {symbol} ({type_name})"
        resource = self.resource_type(type_name, where)
        if resource is None:
            return
        config = body(res["config"])
        if not isinstance(config, dict):
            return
        if res.get("existing"):
            self.problems += [
                f"{where}: {key}: an existing resource sets only name, scope and parent"
                for key in map(unquote, config)
                if key not in EXISTING_KEYS
            ]
            return
        if resource.node.get("writableScopes", 1) == 0 or resource.node.get("flags", 0) & 1:
            self.problems.append(f"{where}: this type can only be read (declare it `existing`)")
        problems = self.object(resource.to(resource.node["body"]), config, file, "", skip=BICEP_KEYS)
        self.problems += [f"{where}: {p}" for p in problems]

    def call(self, call: Any) -> None:
        where = f"{call.caller}:{call.line} module {call.symbol} ({call.module})"
        module = self.t.files.get(call.module)
        if module is None:
            if call.module not in {u.split(":", 1)[0] for u in self.t.unreadable}:
                self.problems.append(f"{where}: no such module file")
            return
        if not isinstance(call.params, dict):
            return
        declared = module.get("parameters", {})
        passed = {unquote(k): v for k, v in call.params.items()}
        for name, value in passed.items():
            if name not in declared:
                self.problems.append(
                    f"{where}: params.{name}: the module has no such parameter"
                    f"{suggestion(name, list(declared))}"
                )
                continue
            self.problems += [
                f"{where}: {p}"
                for p in self.param_value(declared[name], value, call.caller, f"params.{name}")
            ]
        for name, param in declared.items():
            optional = param.get("default") is not None or str(param.get("type", "")).endswith("?")
            if name not in passed and not optional:
                self.problems.append(f"{where}: params.{name}: required by the module, not passed")

    def parameters_file(self) -> None:
        """main.parameters.json (azd deploys with it) sets only main.bicep's parameters, to fitting values."""
        path, main = self.t.root / "main.parameters.json", self.t.files.get("main.bicep")
        if not path.exists() or main is None:
            return
        declared = main.get("parameters", {})
        for name, entry in json.loads(path.read_text()).get("parameters", {}).items():
            if name not in declared:
                hint = suggestion(name, list(declared))
                self.problems.append(f"main.parameters.json: {name}: main.bicep has no such parameter{hint}")
                continue
            value = entry.get("value") if isinstance(entry, dict) else None
            if isinstance(value, str) and "${" in value:
                continue  # azd fills it in from the environment
            found = self.param_value(declared[name], value, "main.bicep", name)
            self.problems += [f"main.parameters.json: {p}" for p in found]

    def param_value(self, param: dict[str, Any], value: Any, file: str, path: str) -> list[str]:
        found = self.t.candidates(file, value)
        if found is None:
            return []
        problems, allowed, declared = [], allowed_values(param), str(param.get("type", ""))
        for _, literal in found:
            if literal is None:
                continue
            if allowed is not None and literal not in allowed:
                problems.append(f"{path}: {show(literal)} is not one of the parameter's @allowed values")
            expected = {"string": str, "int": int, "bool": bool, "object": dict, "array": list}.get(declared)
            if expected and (
                not isinstance(literal, expected) or (expected is int and isinstance(literal, bool))
            ):
                problems.append(f"{path}: declared {declared}, got {kind_of(literal)} {show(literal)}")
        return problems

    def check_reads(self, file: str, doc: dict[str, Any]) -> None:
        found: list[tuple[str, list[str]]] = []
        for section in ("resources", "modules", "outputs", "variables"):
            for item in doc.get(section, {}).values():
                self.reads(file, item, found)
        resources, modules = doc.get("resources", {}), doc.get("modules", {})
        for symbol, parts in found:
            if symbol in resources:
                res = resources[symbol]
                type_name = f"{res['type']}@{res['api_version']}"
                try:
                    resource = self.library.resource(type_name)
                except MissingDefinition:
                    continue  # reported with the resource
                reason = self.read_path(resource.to(resource.node["body"]), parts)
                if reason:
                    self.problems.append(f"{file}: {symbol}.{'.'.join(parts)}: reads {reason} ({type_name})")
            elif symbol in modules and parts[:1] == ["outputs"] and len(parts) > 1:
                target = self.t.module_of(file, symbol)
                outputs = self.t.files.get(target, {}).get("outputs", {}) if target else None
                if outputs is not None and target in self.t.files and parts[1] not in outputs:
                    self.problems.append(
                        f"{file}: {symbol}.outputs.{parts[1]}: {target} has no such output"
                        f"{suggestion(parts[1], list(outputs))}"
                    )


def python_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """A type's .NET regular expression for Python's re; None if it has none or re cannot read it."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


def flatten(value: Any) -> list[str] | None:
    """[symbol, a, b] for `symbol.a.b`; None for any other expression."""
    if isinstance(value, BicepElement):
        return [str(value)]
    operator = value.get("operator") if isinstance(value, dict) and set(value) == {"operator"} else None
    if not operator or operator.get("type") != "property_accessor":
        return None
    # pycep nests `a.b.c` either way round: a.(b.c) or (a.b).c
    left, right = flatten(operator["operands"]["operand_1"]), flatten(operator["operands"]["operand_2"])
    return left + right if left is not None and right is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "directory", nargs="?", type=Path, default=Path(__file__).resolve().parents[2] / "infra"
    )
    parser.add_argument(
        "--add-from", type=Path, metavar="CHECKOUT", help="a checkout of Azure/bicep-types-az"
    )
    args = parser.parse_args(argv)
    templates = load(args.directory)
    if args.add_from:
        wanted = {
            f"{r['type']}@{r['api_version']}"
            for doc in templates.files.values()
            for r in doc.get("resources", {}).values()
        }
        for type_name in sorted(wanted):
            print(f"check-bicep-types: {type_name} -> {vendor(args.add_from, type_name)}")
    checker = Checker(templates, Library())
    problems = checker.run()
    for problem in problems:
        print(problem)
    summary = (
        f"{checker.resources} resources in {len(templates.files)} files, "
        f"{len(templates.calls)} module calls, {len(checker.types)} resource types ({args.directory})"
    )
    if problems:
        print(f"check-bicep-types: FAILED: {len(problems)} problem(s); {summary}", file=sys.stderr)
        return 1
    if not checker.resources:
        print(f"check-bicep-types: FAILED: no resources found; {summary}", file=sys.stderr)
        return 1
    print(f"check-bicep-types: OK: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
