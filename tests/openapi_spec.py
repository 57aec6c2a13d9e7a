"""openapi.yaml as the contract tests read it: the spec, its schemas as validators, and the
routes function_app declares."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from tests.conftest import INDEXED

ROOT = Path(__file__).resolve().parent.parent
SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
HOST = json.loads((ROOT / "host.json").read_text())
GUID = "9b2d7f0e-5c1a-4e8b-9f3d-2a6c8e0b4d17"


def resolve(node: Any) -> Any:
    """`node` with every local `$ref` inlined (the spec has no recursive references)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = SPEC
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(target)
        return {key: resolve(value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item) for item in node]
    return node


def validator(schema: dict[str, Any]) -> jsonschema_rs.Draft4Validator:
    """A JSON Schema validator for an OpenAPI 3.0 schema object (ECMA regex, Unicode classes)."""
    return jsonschema_rs.Draft4Validator(copy.deepcopy(resolve(schema)))


def http_triggers() -> dict[tuple[str, str], Any]:
    """(METHOD, /path) -> trigger, for every HTTP trigger function_app declares."""
    routes = {}
    for function in INDEXED:
        trigger = function.get_trigger()
        if trigger.type == "httpTrigger":
            for method in trigger.methods:
                routes[(str(getattr(method, "value", method)).upper(), f"/{trigger.route}")] = trigger
    return routes


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, /path) -> operation object, for every operation in the spec."""
    return {
        (method.upper(), path): operation
        for path, item in SPEC["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    }


def response_validator(
    path: str, method: str, status: int, content_type: str
) -> jsonschema_rs.Draft4Validator:
    """The validator for the body of one documented answer."""
    response = resolve(SPEC["paths"][path][method]["responses"][str(status)])
    return validator(response["content"][content_type]["schema"])
