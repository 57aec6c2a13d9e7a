"""The Bicep files of a directory as pycep-parser reads them, and the literal values an expression can take.

pycep keeps an identifier (a reference to a param, variable, resource, ...) as `BicepElement`, a
`str` subclass, and a string literal as a plain `str`: that is how references and literals are told
apart below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pycep import BicepParser
from pycep.transformer import BicepElement

_PARSER = BicepParser(add_line_numbers=True)

Candidates = list[tuple[str, Any]] | None
"""(file, literal) pairs an expression can evaluate to, or None when that is not known statically."""


@dataclass(frozen=True)
class Call:
    """One `module` statement of a local module."""

    caller: str
    symbol: str
    module: str
    params: Any
    line: int


@dataclass
class Templates:
    """Every .bicep file under a directory, by its path relative to that directory."""

    root: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def calls_of(self, module: str) -> list[Call]:
        """The module statements that call `module`."""
        return [call for call in self.calls if call.module == module]

    def module_of(self, file: str, symbol: str) -> str | None:
        """The file a module symbol of `file` refers to (None for registry modules)."""
        return next((c.module for c in self.calls if c.caller == file and c.symbol == symbol), None)

    def candidates(self, file: str, value: Any, depth: int = 0) -> Candidates:
        """The literal values `value` (an expression in `file`) can take, if they are known."""
        if depth > 30:
            return None
        if isinstance(value, BicepElement):
            return self._symbol(file, str(value), depth)
        if isinstance(value, dict):
            if set(value) == {"operator"}:
                operator = value["operator"]
                if operator.get("type") == "conditional":
                    both = [
                        self.candidates(file, operator["operands"][k], depth + 1)
                        for k in ("true_value", "false_value")
                    ]
                    return None if None in both else [c for found in both for c in found]  # type: ignore[union-attr]
                return None
            if set(value) == {"function"}:
                return None
            return [(file, value)]  # an object literal (or a for-expression, handled by the checker)
        if isinstance(value, str) and "${" in value:
            return None  # an interpolated string
        return [(file, value)]

    def _symbol(self, file: str, name: str, depth: int) -> Candidates:
        doc = self.files[file]
        if name in doc.get("variables", {}):
            return self.candidates(file, doc["variables"][name]["value"], depth + 1)
        param = doc.get("parameters", {}).get(name)
        if param is None:
            return None  # a resource, module, loop variable or function: not a literal
        allowed = allowed_values(param)
        if allowed is not None:
            return [(file, v) for v in allowed]
        calls = self.calls_of(file)
        found: list[tuple[str, Any]] = []
        for call in calls:
            passed = call.params.get(name) if isinstance(call.params, dict) else None
            if passed is not None:
                values = self.candidates(call.caller, passed, depth + 1)
            elif param.get("default") is not None:
                values = self.candidates(file, param["default"], depth + 1)
            else:
                continue  # not passed and no default: reported as a missing parameter
            if values is None:
                return None
            found += values
        if not calls:
            if param.get("default") is None:
                return None  # set at deployment (main.parameters.json, azd)
            return self.candidates(file, param["default"], depth + 1)
        return found


def unquote(key: str) -> str:
    """An object key without the quotes Bicep needs for keys like 'odata.type'."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def allowed_values(param: dict[str, Any]) -> list[Any] | None:
    """The values of a parameter's @allowed decorator, if it has one."""
    for decorator in param.get("decorators") or []:
        if isinstance(decorator, dict) and decorator.get("type") == "allowed":
            return list(decorator["argument"])
    return None


def body(config: Any) -> Any:
    """A resource's or module's body, without `if (...)` and `[for ...]` wrappers."""
    while (
        isinstance(config, dict) and "config" in config and ("loop_type" in config or "condition" in config)
    ):
        config = config["config"]
    return config


def load(root: Path) -> Templates:
    """Parse every .bicep file under `root`; files pycep cannot read are listed in `unreadable`."""
    templates = Templates(root)
    for path in sorted(root.rglob("*.bicep")):
        file = path.relative_to(root).as_posix()
        try:
            templates.files[file] = _PARSER.parse(file_path=path)
        except Exception as exc:  # lark's UnexpectedInput family, pycep's ValueError for invalid text
            templates.unreadable.append(
                f"{file}: cannot parse: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            )
    for file, doc in templates.files.items():
        for symbol, module in doc.get("modules", {}).items():
            if module.get("type") != "local":
                continue
            target = PurePosixPath(file).parent / module["detail"]["path"]
            parts: list[str] = []
            for part in target.parts:
                if part == "..":
                    parts.pop() if parts else parts.append(part)
                elif part != ".":
                    parts.append(part)
            params = (
                body(module["config"]).get("params", {}) if isinstance(body(module["config"]), dict) else None
            )
            templates.calls.append(
                Call(file, symbol, "/".join(parts), params, module.get("__start_line__", 0))
            )
    return templates
